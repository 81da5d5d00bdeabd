package e2e

// Network faults between the nodes of one e2e cluster: partitions, heals
// and packet loss, made with nftables rules in a table of the test's own.
//
// API:
//
//	c := newCluster(t)
//	nf := newNetFaults(t, c)        // BEFORE adding nodes: every node added
//	                                // afterwards (agent and its kvapp) runs on
//	                                // its own 127.0.x.y and as its own uid
//	nodes := formCluster(t, c, 5)   // or formAppCluster, addAppNode, c.add
//	nf.Isolate(nodes[3], nodes[4])  // cut {3,4} off from the other nodes of c,
//	                                // both directions; calls accumulate
//	nf.IsolateTCP(nodes[2])         // the same for TCP only: UDP still passes
//	nf.Cut(a, b)                    // cut the nodes of a off from those of b only
//	nf.Heal()                       // remove every fault
//	nf.Loss(nodes[2], 80, lossBoth) // drop 80 % of the packets between node 2
//	                                // and the others: lossIncoming,
//	                                // lossOutgoing or lossBoth
//	err := nf.reach(from, to)       // nil if from's uid can fetch to's status
//
// Call them from the test goroutine (they fail the test with t.Fatal). The
// test process itself (uid 0) is never cut: it keeps reaching every node's
// API and app, and the webhook proxies on 127.0.0.1 stay reachable from
// every agent. A fault covers the nodes the cluster has when it is made.
// A node's processes run as its uid: a dir one of them must write (an
// app's data dir) is made with n.OwnDir(path) (localcluster.Placement.OwnDir). Each
// test binary takes its own block of addresses and uids, so that two runs
// at once on one machine do not cut each other's nodes.
//
// How: on loopback an outgoing TCP connection takes source 127.0.0.1
// unless its socket is bound, so rules on the source address would miss
// most traffic. A packet's sender is therefore its socket's uid (meta
// skuid) and its receiver the node owning the destination address, or, for
// the reply packets of a connection (which go back to 127.0.0.1), the node
// whose uid opened the connection: a conntrack mark set on each
// connection's first packet names it. Lost packets are marked on output
// and dropped on input, so that senders see no error, as on a network.
//
// The table (inet steward_e2e_<pid>_<n>) is deleted by t.Cleanup, which
// also runs after a panic in the test goroutine; a table left by a test
// binary that died (a -timeout panic runs no cleanup) is deleted by the
// next newNetFaults once its pid is gone. Needs root and the nft command
// (.ci/run installs nftables).

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/steward-dev/steward/localcluster"
)

// lossDirection says which of a node's packets Loss drops.
type lossDirection int

const (
	lossIncoming lossDirection = iota + 1 // packets other nodes send it
	lossOutgoing                          // packets it sends other nodes
	lossBoth
)

// netFaults is the nftables table of one test and the cluster it acts on.
type netFaults struct {
	t     testing.TB
	c     *cluster
	table string

	mu sync.Mutex
}

// lostMark is the packet mark of the packets a fault drops: they are
// marked on output and dropped on input, so that the sender sees its send
// succeed as on a real network (a drop on output fails the send with
// EPERM).
const lostMark = 0x57e4d0

// placed counts the addresses and uids handed out in this process, so that
// no two nodes (even of different tests) share one; other processes use
// other blocks (placementBase).
var placed atomic.Int64

// tables counts the netFaults tables made in this process.
var tables atomic.Int64

// newNetFaults creates the test's nftables table for cluster c and makes
// every node added to c from now on run on its own loopback address and
// uid. It fails the test if nft is missing or the table cannot be made.
func newNetFaults(t testing.TB, c *cluster) *netFaults {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		t.Fatalf("network-fault tests need nftables' nft command, which is missing (%v): install it, e.g. apt-get install -y nftables", err)
	}
	if len(c.nodes) > 0 {
		t.Fatalf("newNetFaults must come before the cluster's first node: %s already runs on %s", c.nodes[0].ID, c.nodes[0].Host)
	}
	deleteStaleTables(t)
	nf := &netFaults{t: t, c: c, table: fmt.Sprintf("steward_e2e_%d_%d", os.Getpid(), tables.Add(1))}
	nf.nft(fmt.Sprintf(`table inet %[1]s {
	chain owners {
		type filter hook output priority mangle; policy accept;
	}
	chain faults {
		type filter hook output priority filter; policy accept;
	}
	chain lose {
		type filter hook input priority filter; policy accept;
		meta mark %[2]d drop
	}
}`, nf.table, lostMark))
	t.Cleanup(func() {
		if t.Failed() {
			if out, err := exec.Command("nft", "list", "table", "inet", nf.table).CombinedOutput(); err == nil {
				t.Logf("---- nftables at the end ----\n%s", out)
			}
		}
		if out, err := exec.Command("nft", "delete", "table", "inet", nf.table).CombinedOutput(); err != nil {
			t.Errorf("deleting nftables table %s: %v: %s", nf.table, err, out)
		}
	})
	// The nodes' uids must reach their data dirs inside the test's private
	// temp dir (the agent creates nothing there: see node.start).
	for _, d := range []string{c.dir, filepath.Dir(c.dir)} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	c.faults = nf
	return nf
}

// staleTable matches the tables newNetFaults makes; the number is the pid.
var staleTable = regexp.MustCompile(`^table inet (steward_e2e_(\d+)_\d+)$`)

// deleteStaleTables deletes the tables of test binaries that are gone.
func deleteStaleTables(t testing.TB) {
	out, err := exec.Command("nft", "list", "tables").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list tables (network-fault tests need root): %v: %s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		m := staleTable.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[2])
		if pid == os.Getpid() || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue
		}
		if out, err := exec.Command("nft", "delete", "table", "inet", m[1]).CombinedOutput(); err != nil {
			t.Fatalf("deleting the stale table %s of gone pid %d: %v: %s", m[1], pid, err, out)
		}
		t.Logf("deleted the stale nftables table %s of gone pid %d", m[1], pid)
	}
}

// place hands out the next address and uid, and marks the connections
// that uid opens so that their replies can be matched.
func (nf *netFaults) place() localcluster.Placement {
	base, err := placementBase()
	if err != nil {
		nf.t.Fatal(err)
	}
	n := int(placed.Add(1) - 1)
	if n >= placementBlock {
		nf.t.Fatalf("more than %d nodes placed in one test binary", placementBlock)
	}
	i := base + n
	pl := localcluster.Placement{Host: fmt.Sprintf("127.0.%d.%d", i/250, 2+i%250), UID: 20002 + i}
	nf.nft(fmt.Sprintf("add rule inet %s owners ct state new meta skuid %d ct mark set %d", nf.table, pl.UID, pl.UID))
	return pl
}

// placementBlock is how many placements one test binary may hand out.
const placementBlock = 1000

// placementBase is the first placement of this test binary: a block of
// placementBlock addresses and uids that it holds until it exits. Test
// binaries that run at the same time on one machine (developers' focused
// runs) must not share one: the rules of one's faults, which match uids
// and addresses, would cut the other's nodes too.
var placementBase = sync.OnceValues(claimPlacementBlock)

// placementLock is the open, locked file that holds this binary's block;
// closing it (or exiting) frees the block.
var placementLock *os.File

// claimPlacementBlock takes the first free one of 64 blocks (the addresses
// 127.0.x.y run out beyond), with an exclusive flock on a file per block,
// which the kernel releases when the process dies however it dies.
func claimPlacementBlock() (int, error) {
	const blocks = 64
	for k := 0; k < blocks; k++ {
		slot := (os.Getpid() + k) % blocks
		path := filepath.Join(os.TempDir(), fmt.Sprintf("steward-e2e-placement-%d.lock", slot))
		f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return 0, err
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			continue
		}
		placementLock = f
		return slot * placementBlock, nil
	}
	return 0, fmt.Errorf("all %d blocks of node addresses are held by other test binaries", blocks)
}

// Isolate cuts all traffic, both ways, between the given nodes and the
// other nodes of the cluster. The given nodes still reach each other.
func (nf *netFaults) Isolate(group ...*node) {
	nf.t.Helper()
	in, out := nf.split(group)
	if len(in) == 0 || len(out) == 0 {
		nf.t.Fatalf("Isolate: %d nodes against %d: nothing to cut", len(in), len(out))
	}
	nf.nft(nf.dropRules(in, out, "") + nf.dropRules(out, in, ""))
}

// Cut cuts all traffic, both ways, between the nodes of a and those of b;
// each still reaches every other node.
func (nf *netFaults) Cut(a, b []*node) {
	nf.t.Helper()
	for _, n := range append(append([]*node{}, a...), b...) {
		if n.UID == 0 {
			nf.t.Fatalf("%s runs on %s as the test's user: add it after newNetFaults", n.ID, n.Host)
		}
	}
	nf.nft(nf.dropRules(a, b, "") + nf.dropRules(b, a, ""))
}

// IsolateTCP cuts TCP, both ways, between the given nodes and the other
// nodes of the cluster, and lets UDP through: a firewall that lets
// memberlist's UDP probes pass and stops raft, the agents' probes and
// memberlist's TCP push-pull.
func (nf *netFaults) IsolateTCP(group ...*node) {
	nf.t.Helper()
	in, out := nf.split(group)
	if len(in) == 0 || len(out) == 0 {
		nf.t.Fatalf("IsolateTCP: %d nodes against %d: nothing to cut", len(in), len(out))
	}
	tcp := "meta l4proto tcp"
	nf.nft(nf.dropRules(in, out, tcp) + nf.dropRules(out, in, tcp))
}

// Loss drops percent % (1-100) of the packets between n and the other
// nodes of the cluster, at random, in the given direction.
func (nf *netFaults) Loss(n *node, percent int, dir lossDirection) {
	nf.t.Helper()
	if percent < 1 || percent > 100 {
		nf.t.Fatalf("Loss: %d %% is not a percentage from 1 to 100", percent)
	}
	in, out := nf.split([]*node{n})
	if len(out) == 0 {
		nf.t.Fatalf("Loss: %s has no other node to lose packets with", n.ID)
	}
	random := fmt.Sprintf("numgen random mod 100 < %d", percent)
	if percent == 100 {
		random = ""
	}
	var rules string
	if dir == lossOutgoing || dir == lossBoth {
		rules += nf.dropRules(in, out, random)
	}
	if dir == lossIncoming || dir == lossBoth {
		rules += nf.dropRules(out, in, random)
	}
	if rules == "" {
		nf.t.Fatalf("Loss: unknown direction %d", dir)
	}
	nf.nft(rules)
}

// Heal removes every fault (partitions and losses).
func (nf *netFaults) Heal() {
	nf.t.Helper()
	nf.nft("flush chain inet " + nf.table + " faults")
}

// split returns the nodes of the group and the cluster's other nodes; it
// fails the test for a node not placed by nf.
func (nf *netFaults) split(group []*node) (in, out []*node) {
	nf.t.Helper()
	chosen := map[*node]bool{}
	for _, n := range group {
		if n.UID == 0 {
			nf.t.Fatalf("%s runs on %s as the test's user: add it after newNetFaults", n.ID, n.Host)
		}
		chosen[n] = true
	}
	for _, n := range nf.c.nodes {
		if chosen[n] {
			in = append(in, n)
		} else if n.UID != 0 {
			out = append(out, n)
		}
	}
	return in, out
}

// dropRules drops the packets nodes in from send to nodes in to (with the
// extra match, if any): to their addresses, and the replies on
// connections the to nodes opened.
func (nf *netFaults) dropRules(from, to []*node, extra string) string {
	var fromUIDs, toUIDs, toHosts []string
	for _, n := range from {
		fromUIDs = append(fromUIDs, strconv.Itoa(n.UID))
	}
	for _, n := range to {
		toUIDs = append(toUIDs, strconv.Itoa(n.UID))
		toHosts = append(toHosts, n.Host)
	}
	set := func(xs []string) string { return "{ " + strings.Join(xs, ", ") + " }" }
	return fmt.Sprintf("add rule inet %[1]s faults meta skuid %[2]s ip daddr %[3]s %[5]s meta mark set %[6]d\n"+
		"add rule inet %[1]s faults meta skuid %[2]s ct direction reply ct mark %[4]s %[5]s meta mark set %[6]d\n",
		nf.table, set(fromUIDs), set(toHosts), set(toUIDs), extra, lostMark)
}

// nft runs an nft script, failing the test if nft refuses it.
func (nf *netFaults) nft(script string) {
	nf.t.Helper()
	nf.mu.Lock()
	defer nf.mu.Unlock()
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		nf.t.Fatalf("nft: %v: %s\nscript:\n%s", err, out, script)
	}
}

// reach fetches to's status as from's uid, with the agent's own client
// (`agent status`): nil if from can reach to within two seconds.
func (nf *netFaults) reach(from, to *node) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, agentBin, "status", "-json", "-http-addr", to.APIAddr())
	from.RunAs(cmd)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s -> %s: %v: %s", from.ID, to.ID, err, strings.TrimSpace(string(out)))
	}
	if !strings.Contains(string(out), `"node_id"`) {
		return fmt.Errorf("%s -> %s: no status in %q", from.ID, to.ID, out)
	}
	return nil
}

func TestNetFaultsCutAndHealTrafficBetweenNodes(t *testing.T) {
	c := newCluster(t)
	nf := newNetFaults(t, c)
	nodes := formCluster(t, c, 3, "-partitions", "8")
	a, b, cut := nodes[0], nodes[1], nodes[2]
	if a.Host == b.Host || a.UID == b.UID || a.UID == 0 {
		t.Fatalf("nodes share a placement: %+v %+v", a.Placement, b.Placement)
	}
	mustReach := func(from, to *node) {
		t.Helper()
		if err := nf.reach(from, to); err != nil {
			t.Fatal(err)
		}
	}
	mustNotReach := func(from, to *node) {
		t.Helper()
		if err := nf.reach(from, to); err == nil {
			t.Fatalf("%s reaches %s through the fault", from.ID, to.ID)
		}
	}
	mustReach(a, cut)
	mustReach(cut, b)

	nf.Isolate(cut)
	mustNotReach(a, cut)
	mustNotReach(cut, b)
	mustReach(a, b)
	if _, err := cut.Status(); err != nil {
		t.Fatalf("the test itself must still reach the cut-off node: %v", err)
	}
	// Gossip is cut too: the others fail the node.
	eventually(t, 30*time.Second, "the isolated node failed on the others", func() error {
		for _, n := range []*node{a, b} {
			if st, err := n.MemberStatus(cut.ID); err != nil || st != "failed" {
				return fmt.Errorf("%s sees %s as %q (%v)", n.ID, cut.ID, st, err)
			}
		}
		return nil
	})

	nf.Heal()
	mustReach(a, cut)
	mustReach(cut, b)

	// Loss: all of b's outgoing packets lost cuts its TCP both ways (the
	// replies of connections others open are lost too), never the test's.
	nf.Loss(b, 100, lossOutgoing)
	mustNotReach(b, a)
	mustNotReach(a, b)
	mustReach(a, cut)
	if _, err := b.Status(); err != nil {
		t.Fatalf("the test itself must still reach the lossy node: %v", err)
	}
	nf.Heal()
	mustReach(a, b)
}
