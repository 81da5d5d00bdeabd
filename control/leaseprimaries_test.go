package control

import (
	"maps"
	"testing"

	"github.com/steward-dev/steward/failover"
)

// countingReader reads a state and counts the walks.
type countingReader struct {
	state *failover.Cluster
	reads int
}

func (r *countingReader) read(fn func(*failover.Cluster)) {
	r.reads++
	fn(r.state)
}

func TestLeaseGrantsWalkTheTableOncePerStateAndFollowItsChanges(t *testing.T) {
	cl := newCluster("n1", []string{"n1", "n2", "n3"}, map[string]bool{"n1": true})
	state := cl.raft.Snapshot()
	r := &countingReader{state: state}
	var x primariesIndex

	// Every node asks at index 1: one walk answers all of them, with what
	// a walk of the table gives.
	for _, node := range []string{"n1", "n2", "n3", "n1"} {
		if got, want := x.primariesOf(node, 1, r.read), walkPrimaries(state, node); !maps.Equal(got, want) || len(want) == 0 {
			t.Fatalf("index 1: %s's primaries %v, the table says %v", node, got, want)
		}
	}
	if r.reads != 1 {
		t.Fatalf("four grants at one state walked the table %d times, want once", r.reads)
	}

	// The state changes (index 2): partition 0 moves from its primary to
	// another node, at a new epoch. The next grant sees the move at once.
	p := &state.Partitions[0]
	from := p.Primary
	to := "n1"
	if from == to {
		to = "n2"
	}
	p.Primary, p.Epoch = to, p.Epoch+1
	if _, ok := x.primariesOf(from, 2, r.read)[0]; ok {
		t.Fatalf("after the move %s is still granted partition 0", from)
	}
	if got := x.primariesOf(to, 2, r.read); got[0] != p.Epoch {
		t.Fatalf("after the move %s holds %v, want partition 0 at epoch %d", to, got, p.Epoch)
	}
	if r.reads != 2 {
		t.Fatalf("one change cost %d walks in all, want 2", r.reads)
	}

	// A member that failed may serve nothing, whatever the table names.
	m := state.Members[to]
	m.Status = failover.StatusFailed
	state.Members[to] = m
	if got := x.primariesOf(to, 3, r.read); len(got) != 0 {
		t.Fatalf("a failed member is granted %v", got)
	}
}

// walkPrimaries is the table walk the grants did before the index.
func walkPrimaries(c *failover.Cluster, node string) map[int]uint64 {
	out := map[int]uint64{}
	for _, p := range c.Partitions {
		if p.Primary == node {
			out[p.ID] = p.Epoch
		}
	}
	return out
}
