package e2e

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/steward-dev/steward/localcluster"
)

// Planned restarts with the example app: a node that restarts keeps its
// copies (nothing is copied), hands its primaries over and gets them back;
// one that overstays its grace is failed and its copies re-created; a
// rolling restart driven by the leader goes through every node the same
// way. The test harness is the service manager: a supervised agent that
// exits 0 is started again (localcluster.Agent.Supervise).

// restartFlags are the settings of the restart scenarios: a small table
// and a short grace.
func restartFlags(grace time.Duration) []string {
	return []string{"-partitions", "16", "-replication-factor", "3", "-restart-grace", grace.String()}
}

// superviseAll puts every node's running agent under the harness's
// restart-on-exit, with the settings it was started with.
func superviseAll(t testing.TB, nodes []*appNode) {
	t.Helper()
	for _, n := range nodes {
		if err := n.Supervise("-bootstrap-expect", strconv.Itoa(len(nodes)), "-join", nodes[0].GossipAddr()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.Unsupervise)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("---- log of %s's app (last 40 lines) ----\n%s", n.ID, n.app.Tail(40))
			}
		})
	}
}

// waitQuiet waits until the table is settled and the planner has nothing
// left to do (the balancing moves right after the formation are over), so
// that copies counted from now on are the scenario's own.
func waitQuiet(t testing.TB, nodes []*appNode) {
	t.Helper()
	eventually(t, 60*time.Second, "a settled table and nothing to plan", func() error {
		if err := tableSettled(nodes, 3); err != nil {
			return err
		}
		var plan struct {
			Actions []any `json:"actions"`
		}
		if err := nodes[0].GetJSON("/v1/plan", &plan); err != nil {
			return err
		}
		if len(plan.Actions) != 0 {
			return fmt.Errorf("%d actions planned", len(plan.Actions))
		}
		return nil
	})
}

// isConflict reports whether err is a 409 answer of PostJSON.
func isConflict(err error) bool {
	return err != nil && strings.Contains(err.Error(), ": 409 Conflict ")
}

// copyOrders is how many copies the nodes' apps were told to make.
func copyOrders(nodes []*appNode) int {
	total := 0
	for _, n := range nodes {
		total += n.proxy.CopyOrders()
	}
	return total
}

// quorumWatch counts the times a live agent reports the quorum lost, and
// the fewest voters an agent's raft configuration showed, until stop.
func quorumWatch(nodes []*appNode) (lost, minVoters *atomic.Int64, stop func()) {
	lost, minVoters = &atomic.Int64{}, &atomic.Int64{}
	minVoters.Store(1 << 20)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			for _, n := range nodes {
				var st struct {
					Quorum string `json:"quorum"`
				}
				if n.GetJSON("/v1/status", &st) == nil && st.Quorum == "lost" {
					lost.Add(1)
				}
				if servers, err := n.RaftServers(); err == nil {
					voters := int64(0)
					for _, s := range servers {
						if s.Voter {
							voters++
						}
					}
					if voters < minVoters.Load() {
						minVoters.Store(voters)
					}
				}
			}
			sleepCtx(ctx, 200*time.Millisecond)
		}
	}()
	return lost, minVoters, func() { cancel(); wg.Wait() }
}

// backgroundWriter is a writer running through the nodes until stop.
type backgroundWriter struct {
	w      *writer
	cancel context.CancelFunc
	done   chan struct{}
}

// writeDuring starts a writer through the nodes.
func writeDuring(nodes []*appNode, prefix string) *backgroundWriter {
	ctx, cancel := context.WithCancel(context.Background())
	bw := &backgroundWriter{w: &writer{acked: map[string]string{}}, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(bw.done)
		bw.w.run(ctx, func() []*appNode { return nodes }, prefix, 1<<30)
	}()
	return bw
}

// waitMore waits until n more writes than now are acknowledged.
func (bw *backgroundWriter) waitMore(t testing.TB, n int) {
	t.Helper()
	want := len(bw.w.snapshot()) + n
	eventually(t, 60*time.Second, fmt.Sprintf("%d more acknowledged writes", n), func() error {
		if got := len(bw.w.snapshot()); got < want {
			return fmt.Errorf("%d of %d acknowledged", got, want)
		}
		return nil
	})
}

// stop ends the writer and returns the acknowledged writes.
func (bw *backgroundWriter) stop() (acked map[string]string, tried int) {
	bw.cancel()
	<-bw.done
	return bw.w.snapshot(), bw.w.tried
}

// waitBackWithPrimaries waits until member id is alive at an incarnation
// above inc and leads partitions again.
func waitBackWithPrimaries(t *testing.T, observer *appNode, id string, inc uint64) {
	t.Helper()
	eventually(t, 60*time.Second, id+" back, alive at a new incarnation and leading partitions", func() error {
		ms, err := observer.MembersByID()
		if err != nil {
			return err
		}
		m := ms[id]
		if m.Status != "alive" || m.Incarnation <= inc || m.Primaries == 0 {
			return fmt.Errorf("%s is %s at incarnation %d (was %d) with %d primaries", id, m.Status, m.Incarnation, inc, m.Primaries)
		}
		return nil
	})
}

// A planned restart of one node under writes: it exits 0 and is started
// again by its supervisor; no partition is copied, its app is told it
// rejoined (and re-syncs what it missed), its primaries come back, and no
// acknowledged write is lost. While its app has not acknowledged the
// rejoin (here: refuses every webhook for a while) the node is back but
// given no primary: a copy that has not caught up must not lead (at
// c547a0b it did, and 51 of 514 acknowledged writes read 404).
func TestAPlannedRestartCopiesNothingAndLosesNoWrite(t *testing.T) {
	c := newCluster(t)
	nodes := formAppCluster(t, c, 3, restartFlags(30*time.Second)...)
	superviseAll(t, nodes)
	waitQuiet(t, nodes)
	victim := nodes[1]
	ms, err := nodes[0].MembersByID()
	if err != nil {
		t.Fatal(err)
	}
	before := ms[victim.ID]
	if before.Primaries == 0 {
		t.Fatalf("%s leads nothing: the test would prove nothing", victim.ID)
	}
	rejoinsBefore := victim.proxy.Seen("node.rejoin")
	writes := writeDuring(nodes, "restart")
	writes.waitMore(t, 20)
	waitQuiet(t, nodes)
	copiesBefore := copyOrders(nodes)

	victim.proxy.Failing.Store(true)
	if err := victim.PostJSON("/v1/restart", "", struct{}{}, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, victim.ID+" exited 0 and was started again", func() error {
		if n, err := victim.Restarts(); err != nil || n != 1 {
			return fmt.Errorf("restarts %d (%v)", n, err)
		}
		return nil
	})
	notReady := func() error {
		ms, err := nodes[0].MembersByID()
		if err != nil {
			return err
		}
		m := ms[victim.ID]
		if m.Status != "alive" || m.Incarnation <= before.Incarnation || m.AppHealthy {
			return fmt.Errorf("%s is %s at incarnation %d (was %d), app healthy %v", victim.ID, m.Status, m.Incarnation, before.Incarnation, m.AppHealthy)
		}
		if m.Primaries != 0 {
			return localcluster.Stop{Err: fmt.Errorf("%s leads %d partitions before its app acknowledged node.rejoin", victim.ID, m.Primaries)}
		}
		return nil
	}
	eventually(t, 30*time.Second, victim.ID+" back, its app not caught up, leading nothing", notReady)
	eventually(t, 30*time.Second, "node.rejoin refused three times", func() error {
		if n := victim.proxy.Seen("node.rejoin") - rejoinsBefore; n < 3 {
			return fmt.Errorf("node.rejoin offered %d times", n)
		}
		return nil
	})
	if err := notReady(); err != nil {
		t.Fatal(err)
	}

	// The agent crashes before its app has acknowledged node.rejoin and is
	// started again at once, before the cluster notices (the same
	// incarnation): the new process must tell the app again, and the node
	// lead nothing until the app acknowledges. At 7d3ceff the incarnation
	// was saved when node.rejoin was sent, so the new process took the app
	// for caught up and never told it.
	ms, err = nodes[0].MembersByID()
	if err != nil {
		t.Fatal(err)
	}
	incAtCrash := ms[victim.ID].Incarnation
	offeredAtCrash := victim.proxy.Seen("node.rejoin")
	victim.Unsupervise()
	victim.Kill()
	if err := victim.Supervise("-bootstrap-expect", strconv.Itoa(len(nodes)), "-join", nodes[0].GossipAddr()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "node.rejoin offered again by the new process", func() error {
		if n := victim.proxy.Seen("node.rejoin") - offeredAtCrash; n < 1 {
			return fmt.Errorf("node.rejoin offered %d times since the crash", n)
		}
		return nil
	})
	if err := notReady(); err != nil {
		t.Fatal(err)
	}
	if ms, err = nodes[0].MembersByID(); err == nil && ms[victim.ID].Incarnation != incAtCrash {
		t.Logf("the cluster noticed the crash (incarnation %d, then %d): the new process is a rejoin of its own", incAtCrash, ms[victim.ID].Incarnation)
	}

	victim.proxy.Failing.Store(false)
	waitBackWithPrimaries(t, nodes[0], victim.ID, before.Incarnation)
	waitSettled(t, nodes, 3)
	writes.waitMore(t, 20)
	acked, tried := writes.stop()

	if n := copyOrders(nodes) - copiesBefore; n != 0 {
		t.Fatalf("%d copies were ordered during the planned restart, want none", n)
	}
	if victim.proxy.Seen("node.rejoin") <= rejoinsBefore {
		t.Fatalf("%s's app was not told it rejoined", victim.ID)
	}
	t.Logf("%d of %d writes acknowledged", len(acked), tried)
	checkAllReadable(t, nodes, acked)
	checkSignatures(t, nodes)
}

// SIGTERM to an agent run with -on-sigterm restart is a planned restart; a
// second planned absence while one is under way is refused with 409 and
// changes nothing; a restart that overstays its grace (its supervisor does
// not start it again) is failed, and the replication factor is restored
// from the other copies.
func TestARestartThatOverstaysItsGraceRestoresTheReplicationFactor(t *testing.T) {
	c := newCluster(t)
	nodes := formAppCluster(t, c, 4, append(restartFlags(3*time.Second), "-on-sigterm", "restart")...)
	waitQuiet(t, nodes)
	victim, other := nodes[1], nodes[2]
	copiesBefore := copyOrders(nodes)

	victim.Signal(syscall.SIGTERM)
	eventually(t, 10*time.Second, victim.ID+" restarting", func() error {
		st, err := nodes[0].MemberStatus(victim.ID)
		if err != nil || st != "restarting" {
			return fmt.Errorf("%s is %s (%v)", victim.ID, st, err)
		}
		return nil
	})
	if err := other.PostJSON("/v1/restart", "", struct{}{}, nil); !isConflict(err) {
		t.Fatalf("a second planned absence: %v, want 409", err)
	}
	if st, _ := nodes[0].MemberStatus(other.ID); st != "alive" {
		t.Fatalf("the refused restart changed %s to %s", other.ID, st)
	}
	if err, ok := victim.WaitExit(30 * time.Second); !ok || err != nil {
		t.Fatalf("%s did not exit 0 after its restart: %v (exited %v)", victim.ID, err, ok)
	}
	eventually(t, 30*time.Second, victim.ID+" failed after its grace", func() error {
		st, err := nodes[0].MemberStatus(victim.ID)
		if err != nil || st != "failed" {
			return fmt.Errorf("%s is %s (%v)", victim.ID, st, err)
		}
		return nil
	})
	live := appWithout(nodes, victim)
	eventually(t, 90*time.Second, "three copies of every partition on the live nodes", func() error {
		if err := tableSettled(live, 3); err != nil {
			return err
		}
		pt, err := live[0].Partitions()
		if err != nil {
			return err
		}
		for _, p := range pt.Partitions {
			for _, h := range append([]string{p.Primary}, p.Replicas...) {
				if h == victim.ID {
					return fmt.Errorf("partition %d still held by %s", p.ID, victim.ID)
				}
			}
		}
		return nil
	})
	if copyOrders(nodes) == copiesBefore {
		t.Fatal("the replication factor was restored without a copy")
	}
}

// A rolling restart of five nodes led by the leader, under writes: every
// agent exits 0 once and is started again, one at a time, the leader last;
// no partition is copied, quorum is never lost, no acknowledged write is
// lost, and the table is balanced at the end.
func TestARollingRestartCopiesNothing(t *testing.T) {
	c := newCluster(t)
	nodes := formAppCluster(t, c, 5, restartFlags(30*time.Second)...)
	superviseAll(t, nodes)
	waitQuiet(t, nodes)
	st, err := nodes[0].Status()
	if err != nil {
		t.Fatal(err)
	}
	leaderID := st.LeaderID
	lost, minVoters, stopWatch := quorumWatch(nodes)
	writes := writeDuring(nodes, "rolling-restart")
	writes.waitMore(t, 20)
	waitQuiet(t, nodes)
	copiesBefore := copyOrders(nodes)

	start := time.Now()
	var r localcluster.RollingRestart
	if err := nodes[0].PostJSON("/v1/rolling-restart", "", struct{}{}, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Order) != 5 || r.Order[4] != leaderID {
		t.Fatalf("order %v: want all five, the leader %s last", r.Order, leaderID)
	}
	if err := nodes[1].PostJSON("/v1/rolling-restart", "", struct{}{}, nil); !isConflict(err) {
		t.Fatalf("a second rolling restart while one runs: %v, want 409", err)
	}
	eventually(t, 3*time.Minute, "the rolling restart done", func() error {
		for _, n := range nodes {
			var now localcluster.RollingRestart
			if err := n.GetJSON("/v1/rolling-restart", &now); err != nil {
				continue // this one may be restarting
			}
			if now.State == "failed" {
				return localcluster.Stop{Err: errors.New("rolling restart failed: " + now.Error)}
			}
			if now.State != "done" {
				return errors.New(now.Summary)
			}
			return nil
		}
		return errors.New("no agent answers")
	})
	t.Logf("rolling restart of %d nodes took %s", len(nodes), time.Since(start).Round(time.Millisecond))
	waitSettled(t, nodes, 3)
	writes.waitMore(t, 20)
	acked, tried := writes.stop()
	stopWatch()

	for _, n := range nodes {
		if k, err := n.Restarts(); k != 1 || err != nil {
			t.Errorf("%s was restarted %d times (%v), want once", n.ID, k, err)
		}
	}
	if n := copyOrders(nodes) - copiesBefore; n != 0 {
		t.Fatalf("%d copies were ordered during the rolling restart, want none", n)
	}
	if q := lost.Load(); q != 0 {
		t.Fatalf("quorum was reported lost %d times during the rolling restart", q)
	}
	if v := minVoters.Load(); v < 2 {
		t.Fatalf("the voters went down to %d during the rolling restart", v)
	}
	t.Logf("at least %d voters throughout", minVoters.Load())
	t.Logf("%d of %d writes acknowledged", len(acked), tried)
	checkAllReadable(t, nodes, acked)
	checkBalancedEventually(t, nodes[0].node, ids(plainNodes(nodes)))
	for _, n := range nodes {
		if st, err := nodes[0].MemberStatus(n.ID); err != nil || st != "alive" {
			t.Fatalf("%s is %s (%v) after the rolling restart", n.ID, st, err)
		}
	}
}
