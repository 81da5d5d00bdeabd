package e2e

// Where an idle agent's CPU goes: Linux perf samples the leader and one
// non-voter of an idle cluster, and the benchmark prints each one's share
// of its own samples by what ran: Go's scheduler and its monitor thread,
// the garbage collector, raft, memberlist, Steward's code, the kernel's
// network stack. Issue 17 asks for the leader's idle cost to be found
// (and kept in view by a benchmark); these are the figures of
// docs/benchmarks.md, "Where an idle agent's CPU goes".

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// idleProfileCategories are the named parts of an idle agent's CPU, each
// a function whose inclusive share ("children" in perf) is read from the
// profile. They overlap where one runs inside another (the network stack
// runs inside raft's and memberlist's sends); each is a share of all the
// process's samples.
var idleProfileCategories = []struct{ name, symbol string }{
	{"Go's monitor thread (sysmon)", "runtime.sysmon"},
	{"Go's scheduler looking for work", "runtime.findRunnable"},
	{"garbage collection (background)", "runtime.gcBgMarkWorker"},
	{"raft heartbeats sent", "github.com/hashicorp/raft.(*Raft).heartbeat"},
	{"raft replication sent", "github.com/hashicorp/raft.(*Raft).replicate.func1"},
	{"raft port served (leases, relays, pings)", "github.com/steward-dev/steward/raftctl.(*Node).handleControl"},
	{"the agent's own loops (lease renewals, health, ...)", "github.com/steward-dev/steward/agent.(*Agent).goLoop.func1"},
	{"lease renewals sent", "github.com/steward-dev/steward/agent.(*Agent).renewLease"},
	{"memberlist probes", "github.com/hashicorp/memberlist.(*Memberlist).probe"},
	{"memberlist packets received", "github.com/hashicorp/memberlist.(*Memberlist).packetListen"},
	{"memberlist gossip", "github.com/hashicorp/memberlist.(*Memberlist).gossip"},
	{"all system calls", "entry_SYSCALL_64_after_hwframe"},
}

// BenchmarkIdleProfile starts an idle cluster like BenchmarkIdleCPU's
// (25 agents, or STEWARD_BENCH_AGENTS; the local profile, or
// STEWARD_BENCH_PROFILE; 1,024 partitions, RF 3), leaves it alone for
// idleQuiet, then records the leader and the last agent started (a
// non-voter) with `perf record -g` for idleWindow, and prints each
// category's share. The perf.data files stay in STEWARD_BENCH_PERF_DIR
// (default: a new directory under /tmp, printed) for `perf report -i`.
// It needs perf (Debian's linux-perf) and root, and is skipped without
// perf: it measures, it asserts nothing.
func BenchmarkIdleProfile(b *testing.B) {
	if _, err := exec.LookPath("perf"); err != nil {
		b.Skip("perf is not installed (Debian package linux-perf)")
	}
	dir := os.Getenv("STEWARD_BENCH_PERF_DIR")
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "steward-idle-profile-"); err != nil {
			b.Fatal(err)
		}
	}
	n := scaleAgents(b, 25)
	for i := 0; i < b.N; i++ {
		c := newBenchCluster(b)
		nodes, leader := startBalanced(b, c, agentBin, n, benchProfile(b))
		nonvoter := nodes[len(nodes)-1]
		// Not a synchronisation: the quiet period is part of the
		// measurement (start-up work is not counted).
		time.Sleep(idleQuiet)
		targets := []struct {
			role string
			nd   *node
		}{{"leader", leader}, {"non-voter", nonvoter}}
		var recs []*exec.Cmd
		var files []string
		var stderrs []*bytes.Buffer
		for _, t := range targets {
			file := filepath.Join(dir, fmt.Sprintf("trial%d-%s-%s.perf", i, t.role, t.nd.ID))
			rec := exec.Command("perf", "record", "-q", "-g", "-F", "999", "-o", file,
				"-p", strconv.Itoa(t.nd.PID()), "--", "sleep", strconv.Itoa(int(idleWindow.Seconds())))
			stderr := new(bytes.Buffer)
			rec.Stderr = stderr
			stderrs = append(stderrs, stderr)
			if err := rec.Start(); err != nil {
				b.Fatalf("perf record: %v", err)
			}
			recs, files = append(recs, rec), append(files, file)
		}
		for j, rec := range recs {
			if err := rec.Wait(); err != nil {
				b.Fatalf("perf record of the %s: %v: %s", targets[j].role, err, stderrs[j].String())
			}
		}
		if err := exitedEarly(nodes); err != nil {
			b.Fatal(err)
		}
		c.close() // the agents stop before perf reads the files
		for j, file := range files {
			shares, err := perfShares(file)
			if err != nil {
				b.Fatal(err)
			}
			b.Logf("%d agents, %s %s (%s): share of its own CPU samples", n, targets[j].role, targets[j].nd.ID, file)
			for _, cat := range idleProfileCategories {
				b.Logf("  %5.1f %%  %s", shares[cat.symbol], cat.name)
			}
		}
	}
	b.ReportMetric(0, "ns/op")
}

// perfShares reads a perf.data file's inclusive share of every symbol
// (`perf report --children`), in per cent of the file's samples.
func perfShares(file string) (map[string]float64, error) {
	out, err := exec.Command("perf", "report", "-i", file, "--children", "--sort", "sym",
		"--stdio", "-g", "none", "--percent-limit", "0.1").Output()
	if err != nil {
		return nil, fmt.Errorf("perf report -i %s: %w", file, err)
	}
	shares := make(map[string]float64)
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		// "    29.36%     0.41%  [.] runtime.sysmon"
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || !strings.HasSuffix(fields[0], "%") || !strings.HasPrefix(fields[2], "[") {
			continue
		}
		share, err := strconv.ParseFloat(strings.TrimSuffix(fields[0], "%"), 64)
		if err != nil {
			continue
		}
		sym := strings.Join(fields[3:], " ")
		if share > shares[sym] {
			shares[sym] = share
		}
	}
	return shares, sc.Err()
}
