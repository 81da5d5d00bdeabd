package raftctl

import (
	"bytes"
	"io"
	"reflect"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/steward-dev/steward/failover"
)

// A snapshot and log entries as agents wrote them before resources
// existed (literal bytes: no resource, key range or resources field) still
// restore and apply, as the default resource; resources created after the
// upgrade survive a snapshot round trip.
func TestAStateWrittenBeforeResourcesRestoresAsTheDefaultResource(t *testing.T) {
	old := append([]byte{encodingJSON}, `{"applied_index":7,"cluster":{"bootstrapped":true,
		"settings":{"partitions":2,"replication_factor":2},
		"members":{"a":{"id":"a","status":"alive","voter":true,"incarnation":1},"b":{"id":"b","status":"alive","voter":true,"incarnation":1}},
		"partitions":[{"id":0,"epoch":3,"primary":"a","replicas":["b"]},{"id":1,"epoch":2,"primary":"b","replicas":["a"]}],
		"next_migration":0}}`...)
	f := newFSM()
	if err := f.Restore(io.NopCloser(bytes.NewReader(old))); err != nil {
		t.Fatalf("restoring a snapshot from before resources: %v", err)
	}
	rs := f.cluster.ResourceList()
	if len(rs) != 1 || rs[0] != (failover.Resource{Name: failover.DefaultResource, Partitions: 2, ReplicationFactor: 2}) {
		t.Fatalf("resources after the restore: %+v", rs)
	}

	// An entry of that version: a promotion of partition 0's replica.
	oldEntry := append([]byte{encodingJSON}, `{"kind":"apply_actions","at":5,"actions":[{"kind":"promote","partition":0,"epoch":3,"node":"b","priority":1000}]}`...)
	responses := f.ApplyBatch([]*raft.Log{{Index: 8, Term: 2, Type: raft.LogCommand, Data: oldEntry}})
	if r := responses[0].(*applyResponse); r.err != nil || r.result.Applied != 1 || f.cluster.Partitions[0].Primary != "b" {
		t.Fatalf("an old entry on the old state: %+v, partition 0 %+v", r, f.cluster.Partitions[0])
	}

	orders := failover.Resource{Name: "orders", Partitions: 3, ReplicationFactor: 1}
	create := failover.Command{Kind: failover.CmdCreateResource, At: 9, Resource: &orders, Table: failover.LayoutResource(f.cluster, orders)}
	split := failover.Command{Kind: failover.CmdSplitPartition, At: 10, Split: &failover.SplitRequest{Partition: 1}}
	for i, r := range f.ApplyBatch([]*raft.Log{commandLog(t, 9, create), commandLog(t, 10, split)}) {
		if err := r.(*applyResponse).err; err != nil {
			t.Fatalf("entry %d after the upgrade: %v", i, err)
		}
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memorySink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	again := newFSM()
	if err := again.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatalf("restoring a snapshot with resources and a split: %v", err)
	}
	// (A snapshot writes an empty replica list as null: compare holders.)
	for i, p := range f.cluster.Partitions {
		q := again.cluster.Partitions[i]
		if q.Primary != p.Primary || !reflect.DeepEqual(q.Holders(), p.Holders()) || q.Epoch != p.Epoch || q.Resource != p.Resource ||
			q.KeyStart != p.KeyStart || q.KeyEnd != p.KeyEnd || q.SplitPending != p.SplitPending || !reflect.DeepEqual(q.SplitInto, p.SplitInto) {
			t.Fatalf("partition %d after the round trip: %+v, want %+v", i, q, p)
		}
	}
	if !reflect.DeepEqual(again.cluster.ResourceList(), f.cluster.ResourceList()) || !again.cluster.Partitions[1].Splitting() {
		t.Fatalf("the round trip lost resources or the split: %+v", again.cluster.ResourceList())
	}
}
