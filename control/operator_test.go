package control

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/gossip"
	"github.com/steward-dev/steward/health"
)

func TestAMoveIsCheckedBeforeItIsProposed(t *testing.T) {
	cl := newCluster("n1", []string{"n1", "n2", "n3"}, nil)
	ctx := context.Background()
	if err := cl.ctrl.Move(ctx, failover.PinChange{Partition: 99, Node: "n2"}); err == nil || !strings.Contains(err.Error(), "no partition 99") {
		t.Fatalf("move to partition 99: %v", err)
	}
	if err := cl.ctrl.Move(ctx, failover.PinChange{Partition: 1, Node: "nx"}); err == nil {
		t.Fatal("move to an unknown node accepted")
	}
	if cmds := cl.raft.takeCommands(); len(cmds) != 0 {
		t.Fatalf("refused moves proposed %+v", cmds)
	}
	if err := cl.ctrl.Move(ctx, failover.PinChange{Partition: 1, Node: "n3", Primary: true}); err != nil {
		t.Fatal(err)
	}
	var pins []failover.Pin
	cl.raft.Read(func(c *failover.Cluster) { pins = c.Partitions[1].Pins })
	if len(pins) != 1 || pins[0] != (failover.Pin{Node: "n3", Primary: true}) {
		t.Fatalf("pins of partition 1: %+v", pins)
	}
	if err := cl.ctrl.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	var p failover.Partition
	cl.raft.Read(func(c *failover.Cluster) { p = c.Partitions[1].Clone() })
	if !p.Holds("n3") {
		t.Fatalf("after a reconcile round the pinned n3 is not given partition 1: %+v", p)
	}
}

func TestAReplacedNodeThatIsGoneIsMarkedLeftOnceItHoldsNothing(t *testing.T) {
	cl := newCluster("n1", []string{"n1", "n2", "n3", "n4"}, nil)
	ctx := context.Background()
	if err := cl.ctrl.Replace(ctx, "n2", "n2"); err == nil {
		t.Fatal("n2 replacing itself accepted")
	}
	if err := cl.ctrl.Replace(ctx, "n2", "n4"); err != nil {
		t.Fatal(err)
	}
	cl.members.set("n2", gossip.StateDead)
	cl.detector.set("n2", health.StateFailed, cl.clock.Now())
	cl.setStatus("n2", failover.StatusFailed)
	// The planner re-creates n2's copies (on n4, its replacement), round
	// after round, each copy acknowledged at once.
	for round := 0; round < 50 && cl.member("n2").Status != failover.StatusLeft; round++ {
		if err := cl.ctrl.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		acks := failover.AcknowledgeAll(cl.raft.Snapshot())
		if len(acks) > 0 {
			if _, err := cl.raft.ApplyForwarded(ctx, failover.Command{Kind: failover.CmdApplyActions, Actions: acks}); err != nil {
				t.Fatal(err)
			}
		}
		cl.clock.Advance(time.Second)
	}
	if st := cl.member("n2").Status; st != failover.StatusLeft {
		t.Fatalf("n2 is %s after its replacement by n4, want left", st)
	}
	cl.raft.Read(func(c *failover.Cluster) {
		for _, p := range c.Partitions {
			if len(p.Holders()) < 2 {
				t.Fatalf("partition %d has %d copies", p.ID, len(p.Holders()))
			}
		}
	})
}

func TestCopyFailureWaitsAreMeasuredOnTheMonotonicClock(t *testing.T) {
	cl := newCluster("n1", []string{"n1", "n2", "n3"}, nil)
	c := cl.raft.Snapshot()
	c.Partitions[0].CopyFailures = []failover.CopyFailure{{Node: "n3", Count: 1, Last: 1}}
	key := failover.CopyFailureKey(0, "n3")
	if age := cl.ctrl.Ages().Observe(c, cl.clock.Elapsed()).Plan.CopyFailures[key]; age != 0 {
		t.Fatalf("a failure seen now is %s old", age)
	}
	cl.clock.Step(time.Hour) // the wall clock jumps: no wait is over because of it
	cl.clock.Advance(3 * time.Second)
	if age := cl.ctrl.Ages().Observe(c, cl.clock.Elapsed()).Plan.CopyFailures[key]; age != 3*time.Second {
		t.Fatalf("age after 3 s (and a 1 h wall-clock step) is %s", age)
	}
	c.Partitions[0].CopyFailures[0].Count = 2 // one more failure: a new wait
	if age := cl.ctrl.Ages().Observe(c, cl.clock.Elapsed()).Plan.CopyFailures[key]; age != 0 {
		t.Fatalf("a second failure is dated %s old", age)
	}
}

// A copy the app fails is not given back to the same node at once: the
// leader's round waits the backoff, measured on its monotonic clock (a
// wall-clock jump shortens nothing), and no node gets a copy of the
// partition after it failed three in a row while another can take it.
func TestTheLeaderBacksOffACopyTheAppFailed(t *testing.T) {
	cl := newCluster("n1", []string{"n1", "n2", "n3", "n4"}, nil)
	ctx := context.Background()
	cl.members.set("n2", gossip.StateLeft)
	cl.setStatus("n2", failover.StatusLeft)
	var part int
	migrationOf := func(p int) (failover.Migration, bool) {
		var m failover.Migration
		var ok bool
		cl.raft.Read(func(c *failover.Cluster) {
			if len(c.Partitions[p].Migrations) > 0 {
				m, ok = c.Partitions[p].Migrations[0], true
			}
		})
		return m, ok
	}
	// Every other copy completes at once, so that only the failing one
	// holds migration slots.
	reconcile := func() {
		t.Helper()
		if err := cl.ctrl.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		var acks []failover.Action
		for _, a := range failover.AcknowledgeAll(cl.raft.Snapshot()) {
			if a.Partition != part {
				acks = append(acks, a)
			}
		}
		if _, err := cl.raft.ApplyForwarded(ctx, failover.Command{Kind: failover.CmdApplyActions, Actions: acks}); err != nil {
			t.Fatal(err)
		}
	}
	part = -1 // a partition n2 held: its copy is re-created
	cl.raft.Read(func(c *failover.Cluster) {
		for _, p := range c.Partitions {
			if p.Holds("n2") && part < 0 {
				part = p.ID
			}
		}
	})
	reconcile()
	failed := map[string]int{}
	for failure := 1; failure <= 6; failure++ {
		m, ok := migrationOf(part)
		if !ok {
			t.Fatalf("failure %d: no copy of partition %d in flight (failed so far: %v)", failure, part, failed)
		}
		failed[m.Target]++
		if failed[m.Target] > 3 {
			t.Fatalf("a 4th copy of partition %d to %s, after 3 failed there (failed: %v)", part, m.Target, failed)
		}
		// The target's app fails the copy; its agent cancels it so.
		var epoch uint64
		cl.raft.Read(func(c *failover.Cluster) { epoch = c.Partitions[part].Epoch })
		if _, err := cl.raft.ApplyForwarded(ctx, failover.Command{Kind: failover.CmdApplyActions, Actions: []failover.Action{
			{Kind: failover.ActionCancelMigration, Partition: part, Epoch: epoch, MigrationID: m.ID, CopyFailed: true}}}); err != nil {
			t.Fatal(err)
		}
		cl.ctrl.Ages().Observe(cl.raft.Snapshot(), cl.clock.Elapsed())
		cl.clock.Step(time.Hour)
		reconcile()
		if again, ok := migrationOf(part); ok && again.Target == m.Target {
			t.Fatalf("failure %d: the copy went straight back to %s", failure, m.Target)
		}
		if _, ok := migrationOf(part); !ok {
			cl.clock.Advance(failover.CopyRetryWait(failed[m.Target], 5*time.Second, 5*time.Minute))
			reconcile()
		}
	}
	if len(failed) < 2 {
		t.Fatalf("six failed copies all on one node: %v", failed)
	}
}
