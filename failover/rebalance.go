package failover

import (
	"fmt"
	"math"
	"sort"
)

// Rebalance: moving copies and primaries between nodes outside their bands.

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

// rebalanceCopies moves copies between nodes outside their bands, each a
// direct move from the giving node to the receiving one (add before
// remove: a migration that replaces the giver). With equal weights and one
// zone this moves exactly the optimum number of copies.
func (p *planner) rebalanceCopies() {
	n := len(p.nodes)
	lo, hi := make([]int, n), make([]int, n)
	anyOver, anyUnder := false, false
	parts := len(p.c.Partitions)
	for i, nd := range p.nodes {
		if !nd.take {
			continue
		}
		lo[i], hi[i] = band(p.copyShare[i], parts)
		anyOver = anyOver || p.copies[i] > hi[i]
		anyUnder = anyUnder || p.copies[i] < lo[i]
	}
	if !anyOver && !anyUnder || !p.budgetLeft() {
		return
	}
	// Candidate givers: every node above its floor, the furthest above
	// first; the partitions each holds, untouched and with nothing in flight.
	var givers []int
	isGiver := make([]bool, n)
	for i, nd := range p.nodes {
		if nd.take && p.copies[i] > lo[i] {
			givers = append(givers, i)
			isGiver[i] = true
		}
	}
	sort.SliceStable(givers, func(a, b int) bool {
		i, j := givers[a], givers[b]
		ei, ej := p.copies[i]-hi[i], p.copies[j]-hi[j]
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
	// Phases: straight from above-band to below-band; then what is left
	// above its band to nodes below their ceil; then nodes below their band
	// from nodes above their floor.
	type phase struct{ give, take func(i int) bool }
	phases := []phase{
		{func(i int) bool { return p.copies[i] > hi[i] }, func(i int) bool { return p.copies[i] < lo[i] }},
		{func(i int) bool { return p.copies[i] > hi[i] }, func(i int) bool { return p.copies[i] < hi[i] }},
		{func(i int) bool { return p.copies[i] > lo[i] }, func(i int) bool { return p.copies[i] < lo[i] }},
	}
	started := false
	for _, ph := range phases {
		var takers []int
		for i, nd := range p.nodes {
			if nd.take && ph.take(i) {
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
				b := -1
				for _, u := range takers {
					if !ph.take(u) || part.Holds(p.nodes[u].id) || !p.budget(u, src) || !p.zoneOK(u, copies, covered) {
						continue
					}
					if b < 0 || p.lessLoaded(u, b, int(pi)) {
						b = u
					}
				}
				if b < 0 {
					continue
				}
				na, nb := p.nodes[a], p.nodes[b]
				reasons := []string{
					fmt.Sprintf("%s holds %d copies (share %.1f)", na.id, p.copies[a], p.copyShare[a]),
					fmt.Sprintf("%s holds %d copies (share %.1f)", nb.id, p.copies[b], p.copyShare[b]),
				}
				p.startMigration(part, b, src, srcID, na.id, PriorityRebalanceReplica, reasons)
				started = true
			}
		}
	}
	if !started && p.inflight == 0 {
		// Last resort, when no direct move exists at all.
		p.rebalanceChains(lo, hi)
	}
}

// rebalanceChains handles what direct moves cannot: a node outside its band
// whose partitions cannot go to any node on the other side of the
// imbalance (they already hold them, or the zone spread forbids it). It
// searches, breadth first, a chain a → x1 → … → b where each step moves one
// copy of a different partition, so that only a loses a copy and only b
// gains one. A chain of m steps costs m copies for one unit of balance, so
// it is only tried when no direct move exists.
func (p *planner) rebalanceChains(lo, hi []int) {
	n := len(p.nodes)
	lists := make([][]int32, n)
	for pi := range p.c.Partitions {
		part := &p.c.Partitions[pi]
		if p.touched[pi] || len(part.Migrations) > 0 {
			continue
		}
		for _, h := range p.holders(part) {
			if i, ok := p.idx[h]; ok && p.nodes[i].take {
				lists[i] = append(lists[i], int32(pi))
			}
		}
	}
	// find returns an untouched partition of from's that to may take.
	find := func(from, to int) int32 {
		for _, pi := range lists[from] {
			part := &p.c.Partitions[pi]
			if p.touched[pi] || part.Holds(p.nodes[to].id) {
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
	parent := make([]int, n)
	for p.budgetLeft() {
		anyOver, anyUnder := false, false
		for i, nd := range p.nodes {
			if nd.take {
				anyOver = anyOver || p.copies[i] > hi[i]
				anyUnder = anyUnder || p.copies[i] < lo[i]
			}
		}
		if !anyOver && !anyUnder {
			return
		}
		give := func(i int) bool { return p.copies[i] > hi[i] || !anyOver && p.copies[i] > lo[i] }
		take := func(i int) bool { return p.copies[i] < lo[i] || !anyUnder && p.copies[i] < hi[i] }
		for i := range parent {
			parent[i] = -2
		}
		var queue []int
		for i, nd := range p.nodes {
			if nd.take && give(i) {
				parent[i] = -1
				queue = append(queue, i)
			}
		}
		end := -1
		for h := 0; h < len(queue) && end < 0; h++ {
			u := queue[h]
			for v := 0; v < n; v++ {
				if parent[v] != -2 || !p.nodes[v].take || find(u, v) < 0 {
					continue
				}
				parent[v] = u
				if take(v) {
					end = v
					break
				}
				queue = append(queue, v)
			}
		}
		if end < 0 {
			return
		}
		var steps [][2]int
		for v := end; parent[v] >= 0; v = parent[v] {
			steps = append(steps, [2]int{parent[v], v})
		}
		first := steps[len(steps)-1][0]
		why := fmt.Sprintf("chain of %d moves from %s to %s: no direct move", len(steps), p.nodes[first].id, p.nodes[end].id)
		for _, st := range steps {
			pi := find(st[0], st[1])
			if pi < 0 {
				return // an earlier step of this chain took the partition
			}
			part := &p.c.Partitions[pi]
			src, srcID := p.sourceFor(part)
			p.startMigration(part, st[1], src, srcID, p.nodes[st[0]].id, PriorityRebalanceReplica, []string{
				fmt.Sprintf("%s holds %d copies (share %.1f)", p.nodes[st[0]].id, p.copies[st[0]], p.copyShare[st[0]]),
				fmt.Sprintf("%s holds %d copies (share %.1f)", p.nodes[st[1]].id, p.copies[st[1]], p.copyShare[st[1]]), why})
		}
	}
}

// rebalancePrimaries moves primary roles between nodes outside their
// primary bands by promotions along augmenting paths: a path u0 → u1 → … →
// um promotes u1 in a partition u0 leads, u2 in one u1 leads, and so on, so
// only u0 loses a primary and only um gains one. Paths are searched with
// the same phases as copies; promotions cost no copy.
func (p *planner) rebalancePrimaries() {
	n := len(p.nodes)
	lo, hi := make([]int, n), make([]int, n)
	for i, nd := range p.nodes {
		if nd.lead {
			lo[i], hi[i] = band(p.primShare[i], p.held[i])
		}
	}
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
	parent := make([]int, n)
	queue := make([]int, 0, n)
	for {
		anyOver, anyUnder := false, false
		for i, nd := range p.nodes {
			if nd.lead {
				anyOver = anyOver || p.prims[i] > hi[i]
				anyUnder = anyUnder || p.prims[i] < lo[i]
			}
		}
		if !anyOver && !anyUnder {
			return
		}
		// Phases as for copies: above-band straight to below-band first,
		// then whichever side is outside its band with the other side's
		// in-band nodes.
		phases := [][2]func(i int) bool{
			{func(i int) bool { return p.prims[i] > hi[i] }, func(i int) bool { return p.prims[i] < lo[i] }},
			{func(i int) bool { return p.prims[i] > hi[i] }, func(i int) bool { return p.prims[i] < hi[i] }},
			{func(i int) bool { return p.prims[i] > lo[i] }, func(i int) bool { return p.prims[i] < lo[i] }},
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
				if !ok || !p.nodes[u].lead {
					continue
				}
				for _, r := range part.Replicas {
					if v, ok := p.idx[r]; ok && p.nodes[v].lead {
						pairs[u*n+v] = append(pairs[u*n+v], int32(pi))
					}
				}
			}
		}
		end := -1
		for _, ph := range phases {
			give, take := ph[0], ph[1]
			for i := range parent {
				parent[i] = -2
			}
			queue = queue[:0]
			for i, nd := range p.nodes {
				if nd.lead && give(i) {
					parent[i] = -1
					queue = append(queue, i)
				}
			}
			for h := 0; h < len(queue) && end < 0; h++ {
				u := queue[h]
				for v := 0; v < n; v++ {
					if parent[v] != -2 || !p.nodes[v].lead || avail(u, v) < 0 {
						continue
					}
					parent[v] = u
					if take(v) {
						end = v
						break
					}
					queue = append(queue, v)
				}
			}
			if end >= 0 {
				break
			}
		}
		if end < 0 {
			return
		}
		first := end
		for parent[first] >= 0 {
			first = parent[first]
		}
		reasons := []string{
			fmt.Sprintf("%s leads %d (share %.1f)", p.nodes[first].id, p.prims[first], p.primShare[first]),
			fmt.Sprintf("%s leads %d (share %.1f)", p.nodes[end].id, p.prims[end], p.primShare[end]),
		}
		for v := end; parent[v] >= 0; v = parent[v] {
			u := parent[v]
			pi := avail(u, v)
			part := &p.c.Partitions[pi]
			r := reasons
			if v != end || u != first {
				r = append(append([]string(nil), reasons...), fmt.Sprintf("step %s→%s of a chain", p.nodes[u].id, p.nodes[v].id))
			}
			p.emit(Action{Kind: ActionPromote, Partition: int(pi), Epoch: part.Epoch, Node: p.nodes[v].id, Priority: PriorityRebalancePrimary, Reasons: r})
		}
		p.prims[first]--
		p.prims[end]++
	}
}
