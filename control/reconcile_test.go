package control

import (
	"context"
	"testing"
	"time"

	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/raftctl"
)

// The first leader's round creates the partition table over the servers
// of the raft configuration, as gossip describes them.
func TestTheFirstRoundCreatesThePartitionTable(t *testing.T) {
	cfg := testConfig("a")
	cfg.BootstrapExpect = 3
	r := newFakeRaft("a-r", failover.NewCluster())
	r.servers = []raftctl.Server{{ID: "a-r", Address: "a:7947", Voter: true}, {ID: "b-r", Address: "b:7947", Voter: true}, {ID: "c-r", Address: "c:7947", Voter: true}}
	c := New(cfg, Deps{Raft: r, Members: newcomers("a", "b", "c"), Detector: &fakeDetector{}, Clock: newFakeClock()})
	if err := c.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := r.Snapshot()
	if !st.Bootstrapped || len(st.Partitions) != cfg.Partitions || len(st.Members) != 3 || !st.Members["b"].Voter {
		t.Fatalf("after the first round: bootstrapped %v, %d partitions, members %v", st.Bootstrapped, len(st.Partitions), st.Members)
	}
	// Idempotent: a new leader that runs it again changes nothing.
	r.takeCommands()
	if err := c.bootstrapTable(context.Background()); err != nil || len(r.takeCommands()) != 0 {
		t.Fatalf("a second bootstrap of the table: %v", err)
	}
}

// The reaper forgets a member failed for longer than -reap-after, on the
// monotonic clock; one that still holds copies is marked left and to be
// forgotten, so that its copies are re-created elsewhere.
func TestAMemberFailedLongerThanReapAfterIsForgotten(t *testing.T) {
	cl := newCluster("n1", []string{"n1", "n2", "n3", "n4"}, nil)
	cl.ctrl.cfg.ReapAfter = time.Hour
	cl.failNode("n3")
	cl.clock.Advance(time.Hour - time.Second)
	cl.clock.Step(24 * time.Hour) // the wall clock does not count
	if err := cl.ctrl.reapMembers(context.Background()); err != nil {
		t.Fatal(err)
	}
	if m := cl.member("n3"); m.Status != failover.StatusFailed || m.Forget {
		t.Fatalf("n3 reaped before -reap-after: %+v", m)
	}
	cl.clock.Advance(time.Second)
	if err := cl.ctrl.reapMembers(context.Background()); err != nil {
		t.Fatal(err)
	}
	if m := cl.member("n3"); m.Status != failover.StatusLeft || !m.Forget {
		t.Fatalf("n3 after -reap-after: %+v, want left and to be forgotten (it still holds copies)", m)
	}
	if ev := cl.ctrl.Events(); len(ev) == 0 || ev[len(ev)-1].Type != "member.forgetting" {
		t.Fatalf("events %+v", ev)
	}
}
