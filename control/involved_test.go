package control

import (
	"testing"

	"github.com/steward-dev/steward/failover"
)

// The set of members involved in partitions is built once per state: asked
// again at the same index it reads nothing; at a new index it follows the
// state's changes (a migration's target and source count, the partition's
// holders too).
func TestInvolvedMembersAreIndexedOncePerState(t *testing.T) {
	cl := failover.NewCluster()
	cl.Partitions = []failover.Partition{{ID: 0, Epoch: 1, Primary: "a", Replicas: []string{"b"}}}
	reads := 0
	read := func(fn func(*failover.Cluster)) { reads++; fn(cl) }
	var x involvedIndex

	if got := x.nodes(7, read); !got["a"] || !got["b"] || got["c"] || reads != 1 {
		t.Fatalf("at index 7: %v after %d reads", got, reads)
	}
	if x.nodes(7, read); reads != 1 {
		t.Fatalf("the same state read %d times", reads)
	}
	cl.Partitions[0].Migrations = []failover.Migration{{ID: "m1", Target: "c", Source: "b"}}
	cl.Partitions[0].Replicas = nil
	if got := x.nodes(8, read); !got["a"] || !got["b"] || !got["c"] || reads != 2 {
		t.Fatalf("at index 8: %v after %d reads, want a, b (a copy's source) and c (its target)", got, reads)
	}
}
