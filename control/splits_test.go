package control

import (
	"context"
	"testing"
	"time"

	"github.com/steward-dev/steward/failover"
)

func TestAPartitionItsPrimaryReportsAboveTheTargetSizeIsSplit(t *testing.T) {
	cl := newCluster("n1", []string{"n1", "n2", "n3"}, nil)
	ctx := context.Background()
	big := failover.Resource{Name: "big", Partitions: 4, ReplicationFactor: 1, TargetSize: 1000}
	state := cl.ctrl.raft.Snapshot()
	if _, err := cl.ctrl.Apply(ctx, failover.Command{Kind: failover.CmdCreateResource, Resource: &big, Table: failover.LayoutResource(state, big)}); err != nil {
		t.Fatal(err)
	}
	state = cl.ctrl.raft.Snapshot()
	first := len(state.Partitions) - 4
	// The primaries report their copies: one partition of big far above
	// any threshold, the others below; the default resource has no target
	// size, however large its partitions.
	reports := map[string]failover.NodeFigures{}
	for _, p := range state.Partitions {
		nf := reports[p.Primary]
		if nf.Copies == nil {
			nf.Copies = map[int]failover.CopyFigures{}
		}
		size := int64(100)
		if p.ID == first+2 || p.Resource == "" {
			size = 50_000
		}
		nf.Copies[p.ID] = failover.CopyFigures{Size: size}
		reports[p.Primary] = nf
	}
	for node, nf := range reports {
		cl.ctrl.Load().Record(node, nf, 0, cl.clock.Elapsed())
	}

	if err := cl.ctrl.runSplits(ctx); err != nil {
		t.Fatal(err)
	}
	state = cl.ctrl.raft.Snapshot()
	for _, p := range state.Partitions {
		if p.Splitting() != (p.ID == first+2) {
			t.Fatalf("partition %d (%q) splitting: %v; only %d should be", p.ID, p.ResourceName(), p.Splitting(), first+2)
		}
	}
	if evs := cl.ctrl.Events(); len(evs) == 0 || evs[len(evs)-1].Type != "split.started" {
		t.Fatalf("no split.started decision recorded: %+v", evs)
	}
	// The same reports a round later start nothing more: that split is in
	// flight.
	rows := len(state.Partitions)
	cl.clock.Advance(time.Second)
	if err := cl.ctrl.runSplits(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(cl.ctrl.raft.Snapshot().Partitions); n != rows {
		t.Fatalf("a second round added %d rows", n-rows)
	}
}
