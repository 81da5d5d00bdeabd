package control

import (
	"testing"
	"time"

	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/raftctl"
)

func TestReportsRideOnLeaseRenewalsIntoThePlanAndExpire(t *testing.T) {
	cl := newCluster("n1", []string{"n1", "n2", "n3"}, map[string]bool{"n1": true})
	report := failover.NodeFigures{DiskCapacity: 1000, DiskUsed: 960, Copies: map[int]failover.CopyFigures{0: {Size: 10, Load: 5}}}
	// Whether or not the lease is granted, the report is kept.
	_, _ = cl.ctrl.GrantLease(raftctl.LeaseRequest{NodeID: "n2", Load: &report, LoadAge: 2 * time.Second})

	in := cl.ctrl.PlanInput(cl.raft.Snapshot())
	if in.Figures == nil || in.Figures.Nodes["n2"].DiskUsed != 960 {
		t.Fatalf("the plan's figures are %+v, want n2's report", in.Figures)
	}
	if got := cl.ctrl.Load().Reports(cl.clock.Elapsed()); len(got) != 1 || got[0].Node != "n2" || got[0].Age != 2*time.Second {
		t.Fatalf("reports: %+v, want n2's, 2s old", got)
	}

	// 28 more seconds: the report is 30 s old, still kept; then too old.
	cl.clock.Advance(DefaultLoadReportTTL - 2*time.Second)
	if in := cl.ctrl.PlanInput(cl.raft.Snapshot()); in.Figures == nil {
		t.Fatal("a report as old as the TTL was dropped")
	}
	cl.clock.Advance(time.Millisecond)
	if in := cl.ctrl.PlanInput(cl.raft.Snapshot()); in.Figures != nil {
		t.Fatalf("a report older than the TTL still plans: %+v", in.Figures)
	}
	if got := cl.ctrl.Load().Expired(); got != 1 {
		t.Errorf("expired reports counted %d, want 1", got)
	}
}

func TestAnOlderReportDoesNotReplaceANewerOne(t *testing.T) {
	b := NewLoadBook(time.Minute)
	b.Record("n1", failover.NodeFigures{DiskUsed: 2}, time.Second, 10*time.Second)
	// Sent earlier, overtaken on the way.
	b.Record("n1", failover.NodeFigures{DiskUsed: 1}, 5*time.Second, 11*time.Second)
	if got := b.Fresh(12 * time.Second).Nodes["n1"].DiskUsed; got != 2 {
		t.Errorf("kept the report with disk used %d, want the newer one (2)", got)
	}
}

func TestPlacementAgesCountFromTheEpochChange(t *testing.T) {
	c := failover.NewCluster()
	if _, err := c.Apply(failover.Command{Kind: failover.CmdBootstrap, At: 1, Members: []failover.Member{{ID: "a"}, {ID: "b"}},
		Settings: &failover.Settings{Partitions: 2, ReplicationFactor: 2}}); err != nil {
		t.Fatal(err)
	}
	tr := NewAgeTracker()
	tr.Observe(c, 10*time.Second)
	if got := tr.Observe(c, 70*time.Second).Plan.Moved[1]; got != time.Minute {
		t.Fatalf("partition 1 unchanged for a minute has age %v", got)
	}
	p := c.Partitions[1]
	if _, err := c.Apply(failover.Command{Kind: failover.CmdApplyActions, At: 2, Actions: []failover.Action{
		{Kind: failover.ActionPromote, Partition: 1, Epoch: p.Epoch, Node: p.Replicas[0]}}}); err != nil {
		t.Fatal(err)
	}
	ages := tr.Observe(c, 80*time.Second).Plan.Moved
	if ages[1] != 0 || ages[0] != 70*time.Second {
		t.Errorf("after promoting in partition 1 at 80s: ages %v, want 1: 0s and 0: 1m10s", ages)
	}
}
