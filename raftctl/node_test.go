package raftctl

import (
	"errors"
	"math/rand"
	"reflect"
	"testing"
	"time"

	"github.com/steward-dev/steward/failover"
)

func TestSingleNodeBootstrapsAppliesAndServesState(t *testing.T) {
	n := startNode(t, testConfig("solo", t.TempDir()))
	if n.HasState() {
		t.Fatalf("a fresh data dir reports existing state")
	}
	if err := n.Bootstrap([]Server{{ID: "solo", Address: n.Addr(), Voter: true}}); err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	waitLeader(t, n)
	if got := n.State(); got != "leader" {
		t.Fatalf("State() = %q, want leader", got)
	}
	// The new leader's no-op entry is committed but never reaches the FSM;
	// waiting for the commit index must still return.
	eventually(t, 5*time.Second, "the leader's no-op to commit", func() bool { return n.Stats().CommitIndex >= 2 })
	if st := n.Stats(); st.AppliedIndex >= st.CommitIndex {
		t.Fatalf("expected the FSM index below the commit index before any command: %+v", st)
	}
	if err := n.WaitApplied(ctxTimeout(t, 5*time.Second), n.Stats().CommitIndex); err != nil {
		t.Fatalf("WaitApplied(commit index) with only a no-op pending: %v", err)
	}

	if _, err := n.Apply(bootstrapCommand("solo")); err != nil {
		t.Fatalf("Apply(bootstrap): %v", err)
	}
	select {
	case <-n.Changes():
	default:
		t.Fatalf("no change signal after the bootstrap command")
	}
	n.Read(func(c *failover.Cluster) {
		if !c.Bootstrapped || len(c.Partitions) != 16 || c.Members["solo"].Status != failover.StatusAlive {
			t.Fatalf("state after bootstrap: bootstrapped=%v partitions=%d members=%v", c.Bootstrapped, len(c.Partitions), c.Members)
		}
	})

	// The model refuses a second bootstrap: the error comes back to the
	// caller and the state stays as it was.
	before := n.Snapshot()
	if _, err := n.Apply(bootstrapCommand("other")); !errors.Is(err, failover.ErrAlreadyBootstrapped) {
		t.Fatalf("second bootstrap command: %v, want ErrAlreadyBootstrapped", err)
	}
	if !reflect.DeepEqual(n.Snapshot(), before) {
		t.Fatalf("a refused command changed the state")
	}
	// Garbage is refused before it reaches the log.
	if _, err := n.ApplyEncoded([]byte{42, 1, 2}); !errors.Is(err, ErrUnknownEncoding) {
		t.Fatalf("ApplyEncoded(garbage) = %v, want ErrUnknownEncoding", err)
	}
	// Bootstrapping a node with state is a no-op, not an error.
	if err := n.Bootstrap([]Server{{ID: "solo", Address: n.Addr(), Voter: true}}); err != nil {
		t.Fatalf("second Bootstrap: %v", err)
	}

	st := n.Stats()
	if st.State != "leader" || st.Term == 0 || st.AppliedIndex == 0 || st.AppliedIndex > st.CommitIndex || st.LastContact != 0 {
		t.Fatalf("Stats() = %+v", st)
	}
	if err := n.WaitCaughtUp(ctxTimeout(t, 5*time.Second)); err != nil {
		t.Fatalf("WaitCaughtUp on the leader: %v", err)
	}

	// Snapshot returns a copy: changing it does not touch the node's state.
	cp := n.Snapshot()
	cp.Partitions[0].Primary = "mallory"
	n.Read(func(c *failover.Cluster) {
		if c.Partitions[0].Primary == "mallory" {
			t.Fatalf("Snapshot shares memory with the live state")
		}
	})

	if err := n.Shutdown(); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := n.Shutdown(); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if got := n.State(); got != "shutdown" {
		t.Fatalf("State() after Shutdown = %q", got)
	}
	if _, err := n.Apply(upsertCommand("late", 9)); !errors.Is(err, ErrShutdown) {
		t.Fatalf("Apply after Shutdown = %v, want ErrShutdown", err)
	}
	if err := n.WaitCaughtUp(ctxTimeout(t, time.Second)); !errors.Is(err, ErrShutdown) {
		t.Fatalf("WaitCaughtUp after Shutdown = %v, want ErrShutdown", err)
	}
}

func TestConfigValidation(t *testing.T) {
	cases := map[string]func(*Config){
		"no server ID":          func(c *Config) { c.ServerID = "" },
		"no data dir":           func(c *Config) { c.DataDir = "" },
		"bad bind address":      func(c *Config) { c.BindAddr = "localhost" },
		"unspecified bind":      func(c *Config) { c.BindAddr = "0.0.0.0:0" },
		"unspecified advertise": func(c *Config) { c.AdvertiseAddr = "0.0.0.0:7000" },
		"lease above heartbeat": func(c *Config) { c.LeaderLeaseTimeout = 2 * c.HeartbeatTimeout },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig("x", t.TempDir())
			mutate(cfg)
			if n, err := New(cfg); err == nil {
				n.Shutdown()
				t.Fatalf("New accepted a config with %s", name)
			}
		})
	}
}

func TestAdvertisedPortZeroMeansTheBoundPort(t *testing.T) {
	cfg := testConfig("adv", t.TempDir())
	cfg.InMemory = true
	cfg.AdvertiseAddr = "127.0.0.1:0"
	n := startNode(t, cfg)
	if n.Addr() == "127.0.0.1:0" {
		t.Fatalf("advertised port 0 instead of the bound port")
	}
}

// Three agents of a new cluster each bootstrap with the same list, in
// whatever order they learned it: one cluster, one leader, three voters.
func TestThreeNodesBootstrapOneClusterAndForwardWrites(t *testing.T) {
	nodes := make([]*Node, 3)
	for i, id := range []string{"n1", "n2", "n3"} {
		cfg := testConfig(id, t.TempDir())
		nodes[i] = startNode(t, cfg)
	}
	servers := serversOf(nodes...)
	for _, n := range nodes {
		shuffled := append([]Server(nil), servers...)
		rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if err := n.Bootstrap(shuffled); err != nil {
			t.Fatalf("Bootstrap on %s: %v", n.ID(), err)
		}
	}
	leader := waitLeader(t, nodes...)
	for _, n := range nodes {
		conf, err := n.Configuration()
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(conf, sortedServers(servers)) {
			t.Fatalf("configuration on %s = %+v, want %+v", n.ID(), conf, sortedServers(servers))
		}
	}

	// A follower refuses writes; the agent forwards the encoded command to
	// the leader, which applies it.
	cmd := bootstrapCommand("n1", "n2", "n3")
	f := followers(leader, nodes...)[0]
	if _, err := f.Apply(cmd); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("Apply on follower = %v, want ErrNotLeader", err)
	}
	data, err := EncodeCommand(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leader.ApplyEncoded(data); err != nil {
		t.Fatalf("ApplyEncoded on leader: %v", err)
	}
	want := leader.Snapshot()
	for _, n := range nodes {
		if err := n.WaitCaughtUp(ctxTimeout(t, 5*time.Second)); err != nil {
			t.Fatalf("WaitCaughtUp on %s: %v", n.ID(), err)
		}
		if got := n.Snapshot(); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s serves a different state than the leader", n.ID())
		}
	}

	// A fourth agent joins as a non-voter, catches up, and is promoted.
	n4 := startNode(t, testConfig("n4", t.TempDir()))
	if err := f.AddNonvoter("n4", n4.Addr()); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("AddNonvoter on a follower = %v, want ErrNotLeader", err)
	}
	if err := leader.AddNonvoter("n4", n4.Addr()); err != nil {
		t.Fatalf("AddNonvoter: %v", err)
	}
	if err := n4.WaitApplied(ctxTimeout(t, 5*time.Second), leader.Stats().AppliedIndex); err != nil {
		t.Fatalf("n4 did not catch up: %v", err)
	}
	if !reflect.DeepEqual(n4.Snapshot(), want) {
		t.Fatalf("the new non-voter serves a different state")
	}
	if s := serverOf(t, leader, "n4"); s.Voter {
		t.Fatalf("n4 joined as a voter")
	}
	if err := leader.Promote("n4"); err != nil {
		t.Fatalf("Promote: %v", err)
	}
	if s := serverOf(t, leader, "n4"); !s.Voter || s.Address != n4.Addr() {
		t.Fatalf("after Promote n4 is %+v", s)
	}
	if err := leader.Promote("n4"); err != nil {
		t.Fatalf("Promote of a voter: %v", err)
	}
	if err := leader.Promote("nobody"); !errors.Is(err, ErrUnknownServer) {
		t.Fatalf("Promote(nobody) = %v, want ErrUnknownServer", err)
	}
	if err := leader.Demote("n4"); err != nil {
		t.Fatalf("Demote: %v", err)
	}
	if s := serverOf(t, leader, "n4"); s.Voter {
		t.Fatalf("n4 is still a voter after Demote")
	}
}

// A follower restarts from its data dir (on a new port): it resumes the same
// cluster without bootstrapping, the leader records its new address, and it
// serves the state only once caught up, including writes it missed.
func TestRestartedFollowerResumesFromItsDataDir(t *testing.T) {
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	nodes := make([]*Node, 3)
	for i, id := range []string{"r1", "r2", "r3"} {
		nodes[i] = startNode(t, testConfig(id, dirs[i]))
	}
	for _, n := range nodes {
		if err := n.Bootstrap(serversOf(nodes...)); err != nil {
			t.Fatal(err)
		}
	}
	leader := waitLeader(t, nodes...)
	if _, err := leader.Apply(bootstrapCommand("r1", "r2", "r3")); err != nil {
		t.Fatal(err)
	}

	var idx int
	for i, n := range nodes {
		if n != leader {
			idx = i
			break
		}
	}
	old := nodes[idx]
	if err := old.WaitCaughtUp(ctxTimeout(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := old.Shutdown(); err != nil {
		t.Fatal(err)
	}
	// A write the follower misses while it is down.
	if _, err := leader.Apply(upsertCommand("r4", 5)); err != nil {
		t.Fatal(err)
	}

	back := startNode(t, testConfig(old.ID(), dirs[idx]))
	if !back.HasState() {
		t.Fatalf("restarted node reports no existing state")
	}
	if err := leader.AddNonvoter(back.ID(), back.Addr()); err != nil {
		t.Fatalf("address update: %v", err)
	}
	if s := serverOf(t, leader, back.ID()); !s.Voter || s.Address != back.Addr() {
		t.Fatalf("after the address update the server is %+v, want a voter at %s", s, back.Addr())
	}
	if err := back.WaitCaughtUp(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatalf("WaitCaughtUp after restart: %v", err)
	}
	if got, want := back.Snapshot(), leader.Snapshot(); !reflect.DeepEqual(got, want) {
		t.Fatalf("restarted follower serves a different state")
	}
	back.Read(func(c *failover.Cluster) {
		if _, ok := c.Members["r4"]; !ok {
			t.Fatalf("restarted follower lacks the write it missed")
		}
	})
	if id, _ := back.Leader(); id != leader.ID() {
		t.Fatalf("restarted follower follows %q, want %q", id, leader.ID())
	}
}

// A forced snapshot compacts the log; a restart restores from it (before any
// leader exists) and replays the entries after it.
func TestRestartRestoresFromASnapshot(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig("snap", dir)
	cfg.TrailingLogs = 0 // compact everything the snapshot covers
	n := startNode(t, cfg)
	if err := n.Bootstrap([]Server{{ID: "snap", Address: n.Addr(), Voter: true}}); err != nil {
		t.Fatal(err)
	}
	waitLeader(t, n)
	if _, err := n.Apply(bootstrapCommand("snap", "peer")); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Apply(upsertCommand("m1", 2)); err != nil {
		t.Fatal(err)
	}
	if err := n.TakeSnapshot(); err != nil {
		t.Fatalf("TakeSnapshot: %v", err)
	}
	snapIndex := n.Stats().AppliedIndex
	if first, err := n.logs.FirstIndex(); err != nil || first != 0 && first <= snapIndex {
		t.Fatalf("log not compacted by the snapshot: first index %d (%v), snapshot at %d", first, err, snapIndex)
	}
	if _, err := n.Apply(upsertCommand("m2", 3)); err != nil {
		t.Fatal(err)
	}
	want := n.Snapshot()
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}

	again := startNode(t, cfg)
	if !again.HasState() {
		t.Fatalf("HasState() = false after restart")
	}
	// raft restores the newest snapshot inside New, before any election.
	if got := again.Stats().AppliedIndex; got < snapIndex {
		t.Fatalf("applied index right after restart %d, want at least the snapshot's %d", got, snapIndex)
	}
	again.Read(func(c *failover.Cluster) {
		if _, ok := c.Members["m1"]; !ok {
			t.Fatalf("state right after restart lacks the snapshot's member m1")
		}
	})
	waitLeader(t, again)
	if err := again.WaitCaughtUp(ctxTimeout(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := again.Snapshot(); !reflect.DeepEqual(got, want) {
		t.Fatalf("state after restart differs from before")
	}
}

func sortedServers(in []Server) []Server {
	out := append([]Server(nil), in...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j].ID < out[i].ID {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func serverOf(t *testing.T, n *Node, id string) Server {
	t.Helper()
	conf, err := n.Configuration()
	if err != nil {
		t.Fatal(err)
	}
	s, ok := findServer(conf, id)
	if !ok {
		t.Fatalf("%s is not in the configuration %+v", id, conf)
	}
	return s
}
