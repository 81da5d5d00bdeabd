package e2e

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/steward-dev/steward/localcluster"
)

// The chaos test: five agents with their kvapps, clients reading and
// writing a few keys through random nodes, and a seeded schedule of faults
// one at a time. The history of what the clients saw must be linearizable
// (checked per key with porcupine), the partition tables must obey their
// invariants throughout (chaos_invariants_test.go), and the cluster must
// converge after each fault within a bound.
//
// A longer run (the test binary's flags go after the package):
//
//	go test -p 1 -count=1 -timeout 60m -run TestChaosLinearizable ./e2e/ -chaos.duration 30m -chaos.seed N

var (
	chaosDuration = flag.Duration("chaos.duration", 2*time.Minute,
		"how long the chaos test injects faults (no fault starts after it)")
	chaosSeed = flag.Uint64("chaos.seed", 20261122,
		"seed of the chaos test's fault schedule and clients")
	chaosFaults = flag.String("chaos.faults", "all",
		"comma-separated fault kinds the chaos test injects (see chaos_faults_test.go), or all")
	chaosClients = flag.Int("chaos.clients", 12, "concurrent clients of the chaos test")
	chaosVoters  = flag.Int("chaos.voters", chaosNodes,
		"raft voters among the chaos test's agents (-voters); fewer than the agents makes the others non-voters, whose lease renewals the voters relay")
	chaosKeep = flag.String("chaos.keep", "",
		"directory for the chaos test's history, checker HTML and logs, kept even when it passes (default: a new directory under the temp dir, kept only on failure)")
)

const (
	chaosNodes = 5
	chaosRF    = 3
	chaosKeys  = 30
	// convergeBound is how long the cluster may take to converge again
	// after a fault has been repaired.
	convergeBound = 90 * time.Second
	// checkTimeout bounds porcupine's search; a check that times out is
	// no pass.
	checkTimeout = 3 * time.Minute
)

// chaosRun is one run of the chaos test.
type chaosRun struct {
	t       *testing.T
	seed    uint64
	cluster *cluster
	// net cuts and heals the network between the nodes, each of which
	// runs on its own loopback address and uid (netfault_test.go).
	net     *netFaults
	nodes   []*appNode
	history *history
	watcher *tableWatcher
	lin     *linearizabilityResult
}

// failf fails the run without stopping it, so that the rest of the history
// is still gathered and checked.
func (r *chaosRun) failf(format string, args ...any) {
	r.t.Helper()
	r.t.Errorf(format, args...)
}

// leader returns the node whose agent the first answering agent names
// leader.
func (r *chaosRun) leader() (*appNode, error) {
	var last error
	for _, n := range r.nodes {
		st, err := n.Status()
		if err != nil || st.LeaderID == "" {
			last = fmt.Errorf("%s: %v (leader %q)", n.ID, err, st.LeaderID)
			continue
		}
		for _, o := range r.nodes {
			if o.ID == st.LeaderID {
				return o, nil
			}
		}
	}
	return nil, fmt.Errorf("no agent names a leader: %v", last)
}

func TestChaosLinearizable(t *testing.T) {
	kinds, err := parseFaultKinds(*chaosFaults)
	if err != nil {
		t.Fatalf("-chaos.faults: %v", err)
	}
	r := &chaosRun{t: t, seed: *chaosSeed}
	plan := planFaults(rand.New(rand.NewPCG(r.seed, 0xc4a05)), kinds, chaosNodes, 500)
	t.Logf("chaos seed %d, %d clients on %d keys, faults for %s: %v, ...", r.seed, *chaosClients, chaosKeys, *chaosDuration, plan[:len(kinds)])

	r.cluster = newCluster(t)
	r.net = newNetFaults(t, r.cluster)
	t.Cleanup(r.keepArtifacts) // runs before the cluster is killed
	if *chaosVoters < 1 || *chaosVoters > chaosNodes {
		t.Fatalf("-chaos.voters %d: want 1 to %d", *chaosVoters, chaosNodes)
	}
	r.nodes = formAppCluster(t, r.cluster, chaosNodes, "-partitions", "32", "-replication-factor", fmt.Sprint(chaosRF), "-voters", fmt.Sprint(*chaosVoters))

	r.history = newHistory()
	r.watcher = newTableWatcher(r.history, plainNodes(r.nodes))
	stopWatching := r.watch()
	t.Cleanup(stopWatching)
	keys := keyNames(chaosKeys)
	stopClients := runClients(*chaosClients, r.seed, keys, r.nodes, r.history)
	t.Cleanup(stopClients)

	time.Sleep(5 * time.Second) // the clients on the healthy cluster first
	end := time.Now().Add(*chaosDuration)
	convergedAfterEach := true
	for i, f := range plan {
		if time.Now().After(end) {
			break
		}
		if convergedAfterEach = r.faultAndConverge(i+1, f); !convergedAfterEach {
			break
		}
		time.Sleep(f.Settle)
	}
	time.Sleep(5 * time.Second) // the clients on the converged cluster
	stopClients()
	if convergedAfterEach {
		readEverything(*chaosClients, keys, r.nodes, r.history)
		// A member may show suspect for a moment on a starved machine; what
		// must hold is that the cluster converges again on its own.
		if _, err := localcluster.Poll(context.Background(), 200*time.Millisecond, 30*time.Second, func() error {
			return converged(plainNodes(r.nodes), chaosRF, *chaosVoters)
		}); err != nil {
			r.failf("the cluster did not converge again within 30 s after the last reads: %v", err)
		}
	}
	stopWatching()
	t.Logf("history: %s; faults: %s; operations by fault:%s", describeCounts(r.history), r.history.faultsByKind(), r.history.availability())

	violations, more, reads := r.watcher.report()
	t.Logf("table invariants: %d tables read, %d violations", reads, len(violations)+more)
	for _, v := range violations {
		r.failf("table invariant: %s", v)
	}
	if more > 0 {
		r.failf("table invariant: %d more violations", more)
	}

	started := time.Now()
	lin := checkLinearizable(r.history.operations(), checkTimeout)
	r.lin = &lin
	t.Logf("linearizability: %s in %s (%d operations checked; left out: %d failed reads, %d unknown writes never read)",
		lin.Result, time.Since(started).Round(time.Millisecond), lin.Checked, lin.UnknownReads, lin.UnreadWrites)
	switch lin.Result {
	case porcupine.Ok:
	case porcupine.Illegal:
		r.failf("the history is not linearizable on %d of %d keys: %v", len(lin.BadKeys), chaosKeys, lin.BadKeys)
		for _, k := range lin.BadKeys {
			t.Logf("key %s: %s", k, lin.explainKey(k))
		}
	default:
		r.failf("the linearizability check did not finish within %s", checkTimeout)
	}
}

// faultAndConverge injects fault number i and waits until the cluster has
// converged again; false if it did not within convergeBound, after which
// the run injects nothing more.
func (r *chaosRun) faultAndConverge(i int, f fault) bool {
	rec := r.inject(r.t, f)
	took, err := localcluster.Poll(context.Background(), benchPoll, convergeBound, func() error { return converged(plainNodes(r.nodes), chaosRF, *chaosVoters) })
	if err != nil {
		r.history.recordFault(rec)
		r.failf("fault %d (%s) at %.1f s: the cluster did not converge within %s of the repair: %v", i, f, secondsOf(rec.Start), convergeBound, err)
		return false
	}
	rec.Converged = took
	r.history.recordFault(rec)
	r.t.Logf("fault %d: %s, %.1f–%.1f s, converged %.1f s later", i, f, secondsOf(rec.Start), secondsOf(rec.End), took.Seconds())
	return true
}

// watch starts the table watcher; the returned function stops it and
// waits for it, and may be called twice.
func (r *chaosRun) watch() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.watcher.run(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}

// keepArtifacts writes the history, porcupine's HTML (when a check ran
// and did not pass) and every agent's and app's log into a directory that
// outlives the test, when the run failed or -chaos.keep names one, and
// says where, with the seed.
func (r *chaosRun) keepArtifacts() {
	t := r.t
	if !t.Failed() && *chaosKeep == "" {
		return
	}
	dir := *chaosKeep
	var err error
	if dir == "" {
		dir, err = os.MkdirTemp("", fmt.Sprintf("steward-chaos-seed%d-", r.seed))
	} else {
		err = os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		t.Logf("chaos: cannot keep the artifacts: %v", err)
		return
	}
	var kept []string
	if r.history != nil {
		if err := r.history.writeFile(filepath.Join(dir, "history.json"), r.seed); err != nil {
			t.Logf("chaos: history: %v", err)
		} else {
			kept = append(kept, "history.json")
		}
	}
	if r.lin != nil && (r.lin.Result != porcupine.Ok || *chaosKeep != "") {
		if err := r.lin.visualize(filepath.Join(dir, "linearizability.html"), r.history.faultRecords()); err != nil {
			t.Logf("chaos: visualisation: %v", err)
		} else {
			kept = append(kept, "linearizability.html")
		}
	}
	logs, _ := filepath.Glob(filepath.Join(r.cluster.dir, "*.log"))
	for _, l := range logs {
		if err := copyFile(l, filepath.Join(dir, filepath.Base(l))); err != nil {
			t.Logf("chaos: log %s: %v", l, err)
			continue
		}
		kept = append(kept, filepath.Base(l))
	}
	verdict := "passed"
	if t.Failed() {
		verdict = "FAILED"
	}
	t.Logf("chaos seed %d %s; kept in %s: %s\nrerun: go test -p 1 -count=1 -timeout 60m -run TestChaosLinearizable ./e2e/ -chaos.seed %d -chaos.duration %s -chaos.faults %s",
		r.seed, verdict, dir, strings.Join(kept, " "), r.seed, *chaosDuration, *chaosFaults)
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
