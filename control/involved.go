package control

import (
	"sync"

	"github.com/steward-dev/steward/failover"
)

// involvedIndex is, per state, the members that hold a copy of some
// partition or take part in a migration (as target or source). The
// reaper and the freeze count ask it about the failed members in every
// reconcile round; a walk of the table per round cost an idle leader of
// 1,000 members × 65,536 partitions with 250 failed members a third of its
// idle CPU. Like primariesIndex it is tagged with the state index read
// before the state it was built from, and rebuilt only when that changed.
type involvedIndex struct {
	mu    sync.Mutex
	built bool
	index uint64
	set   map[string]bool
}

// nodes returns the members involved in partitions in the state at index,
// building the set from read when the state changed since the last call.
// Callers only read the map.
func (x *involvedIndex) nodes(index uint64, read func(fn func(*failover.Cluster))) map[string]bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.built || x.index != index {
		read(func(cl *failover.Cluster) { x.set = involvedNodes(cl) })
		x.built, x.index = true, index
	}
	return x.set
}

// involvedNodes walks the table once.
func involvedNodes(cl *failover.Cluster) map[string]bool {
	out := map[string]bool{}
	for _, p := range cl.Partitions {
		for _, h := range p.Holders() {
			out[h] = true
		}
		for _, m := range p.Migrations {
			out[m.Target] = true
			if m.Source != "" {
				out[m.Source] = true
			}
		}
	}
	return out
}
