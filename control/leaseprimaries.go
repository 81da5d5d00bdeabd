package control

import (
	"sync"

	"github.com/steward-dev/steward/failover"
)

// primariesIndex is the leader's answer to "which partitions is this node
// primary of, at which epochs" for the lease grants, built once per state
// and reused until the state changes.
//
// Every agent renews its lease several times a second, so the leader of n
// agents answers that question n × several times a second while the state
// rarely changes: walking the whole table for each grant (1,024 partitions
// per renewal at 50 agents) was the largest share of the leader's idle CPU
// after the network itself. Built from a state and tagged with the index
// read before it, it is never older than the state that index names; the
// index only goes up, so a tag that still matches means the state is the
// same one (raftctl.Node.StateIndex).
type primariesIndex struct {
	mu sync.Mutex
	// built: byNode reflects the state at index (nothing is built at first).
	built bool
	index uint64
	// byNode holds, per member that may serve (failover.Member.CanHold, or
	// leaving), its primaries and their epochs; the maps are shared with
	// the ledger's callers, which only read them.
	byNode map[string]map[int]uint64
}

// primariesOf returns node's primaries in the state at index, building the
// index from read when the state changed since the last call.
func (x *primariesIndex) primariesOf(node string, index uint64, read func(fn func(*failover.Cluster))) map[int]uint64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.built || x.index != index {
		read(func(cl *failover.Cluster) { x.byNode = primariesByNode(cl) })
		x.built, x.index = true, index
	}
	return x.byNode[node]
}

// primariesByNode walks the table once: the primaries of every member that
// may serve them (a member leaving keeps serving until its partitions move).
func primariesByNode(cl *failover.Cluster) map[string]map[int]uint64 {
	out := map[string]map[int]uint64{}
	for _, p := range cl.Partitions {
		m, ok := cl.Members[p.Primary]
		if !ok || !(m.CanHold() || m.Status == failover.StatusLeaving) {
			continue
		}
		held := out[p.Primary]
		if held == nil {
			held = map[int]uint64{}
			out[p.Primary] = held
		}
		held[p.ID] = p.Epoch
	}
	return out
}
