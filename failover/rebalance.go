package failover

import (
	"fmt"
	"math"
	"slices"
	"sort"
)

// Rebalance: once no partition needs a copy, copies move from nodes above
// their bands to nodes below them; once no copy moves, primaries do.

// Bands. A node is balanced when its count lies in [floor(share),
// ceil(share)] (ceil capped by what it can hold or lead). Rebalancing only
// ever moves load out of a node above its band or into a node below it, and
// only while some node is outside its band: a table where every node is in
// its band plans nothing, whatever the seed. Each move takes load from a
// node above its floor and gives it to a node below its ceil, and at least
// one of the two is outside its band, so every move strictly reduces the
// total distance to the bands. When nodes are both above and below their
// bands, moves go straight from the former to the latter.

func band(share float64, cap int) (lo, hi int) {
	lo = int(math.Floor(share + 1e-9))
	hi = int(math.Ceil(share - 1e-9))
	if hi > cap {
		hi = cap
	}
	if lo > hi {
		lo = hi
	}
	return lo, hi
}

// bands are the balanced ranges of one kind of load, copies or primaries:
// member i is in its band when lo[i] ≤ load[i] ≤ hi[i]. Only members (the
// nodes that take copies, or the nodes that may lead) have a band.
type bands struct {
	member []bool
	load   []int // the planner's own counter, so planned moves count at once
	lo, hi []int
}

// copyBands: the nodes that take copies, around their copy shares (a node
// holds at most one copy of each partition); wider when load balances too
// (loadState.widen).
func (p *planner) copyBands() bands {
	b := newBands(len(p.nodes), p.copies)
	for i, nd := range p.nodes {
		if nd.take {
			b.member[i] = true
			b.lo[i], b.hi[i] = band(p.copyShare[i], len(p.c.Partitions))
			if p.ls != nil && p.ls.wide {
				b.lo[i], b.hi[i] = p.ls.widen(b.lo[i], b.hi[i], p.copyShare[i], len(p.c.Partitions))
			}
		}
	}
	return b
}

// primaryBands: the nodes that may lead, around their primary shares (a
// node leads only partitions it holds); wider when load balances too.
func (p *planner) primaryBands() bands {
	b := newBands(len(p.nodes), p.prims)
	for i, nd := range p.nodes {
		if nd.lead && !nd.draining {
			b.member[i] = true
			b.lo[i], b.hi[i] = band(p.primShare[i], p.held[i])
			if p.ls != nil && p.ls.wide {
				b.lo[i], b.hi[i] = p.ls.widen(b.lo[i], b.hi[i], p.primShare[i], p.held[i])
			}
		}
	}
	return b
}

func newBands(n int, load []int) bands {
	return bands{member: make([]bool, n), load: load, lo: make([]int, n), hi: make([]int, n)}
}

func (b bands) above(i int) bool      { return b.load[i] > b.hi[i] }
func (b bands) below(i int) bool      { return b.load[i] < b.lo[i] }
func (b bands) aboveFloor(i int) bool { return b.load[i] > b.lo[i] }
func (b bands) belowCeil(i int) bool  { return b.load[i] < b.hi[i] }

// outside reports whether some member is above its band and whether some
// member is below it.
func (b bands) outside() (over, under bool) {
	for i, m := range b.member {
		if m {
			over = over || b.above(i)
			under = under || b.below(i)
		}
	}
	return over, under
}

// phase is one kind of move: the nodes that give load and those that take
// it. Every phase has a node outside its band on at least one side.
type phase struct{ give, take func(i int) bool }

// phases are the kinds of move in the order they are tried: straight from
// above-band to below-band; then what is left above its band to nodes
// below their ceiling; then nodes below their band from nodes above their
// floor.
func (b bands) phases() [3]phase {
	return [3]phase{{b.above, b.below}, {b.above, b.belowCeil}, {b.aboveFloor, b.below}}
}

// phaseFor is the one phase that matters given which sides are outside
// their bands: the first when both are, else the one whose outside side
// has nodes.
func (b bands) phaseFor(over, under bool) phase {
	ph := b.phases()
	switch {
	case over && under:
		return ph[0]
	case over:
		return ph[1]
	}
	return ph[2]
}

// rebalanceCopies moves copies between nodes outside their bands, each a
// direct move from the giving node to the receiving one (add before
// remove: a migration that replaces the giver). With equal weights and one
// zone this moves exactly the optimum number of copies.
func (p *planner) rebalanceCopies() {
	b := p.copyBands()
	if over, under := b.outside(); !over && !under || !p.budgetLeft() {
		return
	}
	n := len(p.nodes)
	// Candidate givers: every node above its floor, the furthest above
	// first; the partitions each holds, untouched and with nothing in flight.
	var givers []int
	isGiver := make([]bool, n)
	for i := range p.nodes {
		if b.member[i] && b.aboveFloor(i) {
			givers = append(givers, i)
			isGiver[i] = true
		}
	}
	sort.SliceStable(givers, func(x, y int) bool {
		i, j := givers[x], givers[y]
		ei, ej := b.load[i]-b.hi[i], b.load[j]-b.hi[j]
		if ei != ej {
			return ei > ej
		}
		return p.nodes[i].id < p.nodes[j].id
	})
	lists := make([][]int32, n)
	for pi := range p.c.Partitions {
		part := &p.c.Partitions[pi]
		if p.touched[pi] || len(part.Migrations) > 0 {
			continue
		}
		if i, ok := p.idx[part.Primary]; ok && isGiver[i] {
			lists[i] = append(lists[i], int32(pi))
		}
		for _, h := range part.Replicas {
			if i, ok := p.idx[h]; ok && isGiver[i] {
				lists[i] = append(lists[i], int32(pi))
			}
		}
	}
	if p.ls != nil && p.ls.wide {
		// Load balances too: the partitions that moved less than the
		// hysteresis ago go last, so that a count move does not take back
		// what a load move just placed.
		for _, l := range lists {
			sort.SliceStable(l, func(x, y int) bool { return p.settled(int(l[x])) && !p.settled(int(l[y])) })
		}
	}
	started := false
	for _, ph := range b.phases() {
		var takers []int
		for i := range p.nodes {
			if b.member[i] && ph.take(i) {
				takers = append(takers, i)
			}
		}
		if len(takers) == 0 {
			continue
		}
		for _, a := range givers {
			for _, pi := range lists[a] {
				if !ph.give(a) || !p.budgetLeft() {
					break
				}
				if p.touched[pi] {
					continue
				}
				part := &p.c.Partitions[pi]
				src, srcID := p.sourceFor(part)
				copies, covered := p.zoneCounts(part, p.nodes[a].id)
				to := choice{d: &rebalancing}
				for _, u := range takers {
					if !ph.take(u) || part.Holds(p.nodes[u].id) || !p.budget(u, src) || !p.zoneOK(u, copies, covered) || !p.roomFor(u, int(pi)) {
						continue
					}
					c := p.copyCandidate(u, int(pi))
					to.offer(&c)
				}
				if !to.ok {
					continue
				}
				from := p.copyCandidate(a, int(pi))
				p.startMigration(part, to.best.node, src, srcID, from.id, PriorityRebalanceReplica, moveReasons(from, to.best, rebalancing))
				started = true
			}
		}
	}
	if !started && p.inflight == 0 {
		// Last resort, when no direct move exists at all.
		p.rebalanceChains(b)
	}
}

// rebalanceChains handles what direct moves cannot: a node outside its band
// whose partitions cannot go to any node on the other side of the
// imbalance (they already hold them, or the zone spread forbids it). It
// moves copies along an augmenting path a → x1 → … → b, each step one copy
// of a different partition, so that only a loses a copy and only b gains
// one. A chain of m steps costs m copies for one unit of balance, so it is
// only tried when no direct move exists.
func (p *planner) rebalanceChains(b bands) {
	n := len(p.nodes)
	lists := make([][]int32, n)
	for pi := range p.c.Partitions {
		part := &p.c.Partitions[pi]
		if p.touched[pi] || len(part.Migrations) > 0 {
			continue
		}
		for _, h := range p.holders(part) {
			if i, ok := p.idx[h]; ok && b.member[i] {
				lists[i] = append(lists[i], int32(pi))
			}
		}
	}
	// find returns an untouched partition of from's that to may take.
	find := func(from, to int) int32 {
		for _, pi := range lists[from] {
			part := &p.c.Partitions[pi]
			if p.touched[pi] || part.Holds(p.nodes[to].id) || !p.roomFor(to, int(pi)) {
				continue
			}
			src, _ := p.sourceFor(part)
			if !p.budget(to, src) {
				continue
			}
			copies, covered := p.zoneCounts(part, p.nodes[from].id)
			if p.zoneOK(to, copies, covered) {
				return pi
			}
		}
		return -1
	}
	canMove := func(from, to int) bool { return find(from, to) >= 0 }
	paths := newPathSearch(n)
	for p.budgetLeft() {
		over, under := b.outside()
		if !over && !under {
			return
		}
		path := paths.find(b.member, b.phaseFor(over, under), canMove)
		if path == nil {
			return
		}
		first, end := path[0], path[len(path)-1]
		why := fmt.Sprintf("chain of %d moves from %s to %s: no direct move", len(path)-1, p.nodes[first].id, p.nodes[end].id)
		// The receiving end first, back to the giving one.
		for k := len(path) - 1; k > 0; k-- {
			from, to := path[k-1], path[k]
			pi := find(from, to)
			if pi < 0 {
				return // an earlier step of this chain took the partition
			}
			part := &p.c.Partitions[pi]
			src, srcID := p.sourceFor(part)
			p.startMigration(part, to, src, srcID, p.nodes[from].id, PriorityRebalanceReplica,
				append(moveReasons(p.copyCandidate(from, int(pi)), p.copyCandidate(to, int(pi)), rebalancing), why))
		}
	}
}

// rebalancePrimaries moves primary roles between nodes outside their
// primary bands by promotions along augmenting paths: a path u0 → u1 → … →
// um promotes u1 in a partition u0 leads, u2 in one u1 leads, and so on, so
// only u0 loses a primary and only um gains one. Paths are searched phase
// by phase, as direct copy moves are; promotions cost no copy.
func (p *planner) rebalancePrimaries() {
	b := p.primaryBands()
	n := len(p.nodes)
	var pairs [][]int32
	var cursor []int
	avail := func(u, v int) int32 {
		l := pairs[u*n+v]
		for cursor[u*n+v] < len(l) && p.touched[l[cursor[u*n+v]]] {
			cursor[u*n+v]++
		}
		if cursor[u*n+v] < len(l) {
			return l[cursor[u*n+v]]
		}
		return -1
	}
	canPromote := func(u, v int) bool { return avail(u, v) >= 0 }
	paths := newPathSearch(n)
	for {
		if over, under := b.outside(); !over && !under {
			return
		}
		if pairs == nil {
			// pairs[u*n+v]: partitions led by u with v as a replica that may lead.
			pairs = make([][]int32, n*n)
			cursor = make([]int, n*n)
			for pi := range p.c.Partitions {
				part := &p.c.Partitions[pi]
				if p.touched[pi] {
					continue
				}
				u, ok := p.idx[part.Primary]
				if !ok || !b.member[u] {
					continue
				}
				for _, r := range part.Replicas {
					if v, ok := p.idx[r]; ok && b.member[v] {
						pairs[u*n+v] = append(pairs[u*n+v], int32(pi))
					}
				}
			}
		}
		var path []int
		for _, ph := range b.phases() {
			if path = paths.find(b.member, ph, canPromote); path != nil {
				break
			}
		}
		if path == nil {
			return
		}
		first, end := path[0], path[len(path)-1]
		reasons := moveReasons(p.leaderCandidate(first, -1), p.leaderCandidate(end, -1), leading)
		// The receiving end first, back to the giving one.
		for k := len(path) - 1; k > 0; k-- {
			u, v := path[k-1], path[k]
			pi := avail(u, v)
			part := &p.c.Partitions[pi]
			r := reasons
			if len(path) > 2 {
				r = append(append([]string(nil), reasons...), fmt.Sprintf("step %s→%s of a chain", p.nodes[u].id, p.nodes[v].id))
			}
			p.emit(Action{Kind: ActionPromote, Partition: int(pi), Epoch: part.Epoch, Node: p.nodes[v].id, Priority: PriorityRebalancePrimary, Reasons: r})
		}
		p.prims[first]--
		p.prims[end]++
	}
}

// pathSearch finds augmenting paths; it keeps its scratch space from one
// search to the next.
type pathSearch struct {
	parent []int // -2 not reached, -1 a start, else the node it was reached from
	queue  []int
	path   []int
}

func newPathSearch(n int) *pathSearch {
	return &pathSearch{parent: make([]int, n), queue: make([]int, 0, n)}
}

// find searches, breadth first over the members, for a path u0 → u1 → … →
// um from a node that gives (ph.give) to one that takes (ph.take), each step
// u→v one that edge(u, v) allows. Moving one unit of load along every step
// (a copy of a different partition, or a primary role) takes one from u0,
// gives one to um and leaves the nodes in between as they were. It returns
// the shortest such path found first (nodes in index order), u0 first,
// valid until the next find; nil when there is none.
func (s *pathSearch) find(member []bool, ph phase, edge func(u, v int) bool) []int {
	for i := range s.parent {
		s.parent[i] = -2
	}
	s.queue = s.queue[:0]
	for i, m := range member {
		if m && ph.give(i) {
			s.parent[i] = -1
			s.queue = append(s.queue, i)
		}
	}
	end := -1
	for h := 0; h < len(s.queue) && end < 0; h++ {
		u := s.queue[h]
		for v, m := range member {
			if s.parent[v] != -2 || !m || !edge(u, v) {
				continue
			}
			s.parent[v] = u
			if ph.take(v) {
				end = v
				break
			}
			s.queue = append(s.queue, v)
		}
	}
	if end < 0 {
		return nil
	}
	s.path = s.path[:0]
	for v := end; v >= 0; v = s.parent[v] {
		s.path = append(s.path, v)
	}
	slices.Reverse(s.path)
	return s.path
}
