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
