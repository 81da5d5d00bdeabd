package failover

import (
	"fmt"
	"sort"
)

// Balance per resource. With more than one resource, rebalancing works
// resource by resource: each resource gets per-node targets, the floor or
// the ceiling of its share among the nodes it may use (copyShares over its
// placement class), and the ceilings are handed out so that each node's
// total over all resources comes to its copy quota (the node-total
// balance of quota.go) as far as the fractions allow. Then each resource
// moves copies straight from nodes above their target to nodes below it,
// which is the fewest moves that reach its targets: every move lowers one
// surplus and one deficit by one.
//
// The targets prefer, among the nodes that may get a ceiling, those that
// already hold it, so that a balanced table keeps its targets and nothing
// moves. A cluster with one resource keeps the node-total rebalancing of
// rebalance.go unchanged (its golden files are the same).

// rebalanceCounts balances the copy counts: with several resources and
// perResource, each resource to its own targets, which add up to the node
// totals; otherwise the node totals alone (rebalance.go).
func (p *planner) rebalanceCounts(perResource bool) {
	if perResource {
		if p.rt = p.newResourceTargets(); p.rt != nil {
			p.rebalanceResources()
			return
		}
	}
	p.rebalanceCopies()
}

// resourceTargets are the per-resource loads and targets of one plan.
type resourceTargets struct {
	names []string
	// of is the resource index of each partition; -1 for one that is not
	// balanced (retired, pending, lost).
	of []int32
	// load and target are per resource, per node: the effective copies
	// (holders not being replaced, plus copies in flight) and what the node
	// should hold.
	load, target [][]int
}

// newResourceTargets counts the copies per resource and node, and computes
// the targets; nil when fewer than two resources have partitions to
// balance.
func (p *planner) newResourceTargets() *resourceTargets {
	c := p.c
	rt := &resourceTargets{of: make([]int32, len(c.Partitions))}
	index := map[string]int32{}
	var first []int // a partition of each resource
	var count []int // its partitions to balance
	last, lastIdx := "", int32(-1)
	for pi := range c.Partitions {
		part := &c.Partitions[pi]
		if p.want[pi] == 0 || part.DataLost && part.Primary == "" {
			rt.of[pi] = -1
			continue
		}
		name := part.ResourceName()
		if name != last || lastIdx < 0 {
			r, ok := index[name]
			if !ok {
				r = int32(len(rt.names))
				index[name] = r
				rt.names = append(rt.names, name)
				first = append(first, pi)
				count = append(count, 0)
			}
			last, lastIdx = name, r
		}
		rt.of[pi] = lastIdx
		count[lastIdx]++
	}
	if len(rt.names) < 2 {
		return nil
	}
	n := len(p.nodes)
	rt.load = make([][]int, len(rt.names))
	rt.target = make([][]int, len(rt.names))
	for r := range rt.load {
		rt.load[r] = make([]int, n)
		rt.target[r] = make([]int, n)
	}
	for pi := range c.Partitions {
		r := rt.of[pi]
		if r < 0 {
			continue
		}
		part := &c.Partitions[pi]
		for _, h := range p.holders(part) {
			if i, ok := p.idx[h]; ok && (len(part.Migrations) == 0 || !p.replaced(part, h)) {
				rt.load[r][i]++
			}
		}
		for _, m := range part.Migrations {
			if p.targetLive(m) {
				rt.load[r][p.idx[m.Target]]++
			}
		}
	}
	// What this plan already decided (repair) counts as done.
	for _, a := range p.actions {
		r := rt.of[a.Partition]
		if r < 0 {
			continue
		}
		switch a.Kind {
		case ActionStartMigration:
			rt.load[r][p.idx[a.Node]]++
			if i, st := p.state(a.Replaces); a.Replaces != "" && i >= 0 && st == holderLive {
				rt.load[r][i]--
			}
		case ActionRemoveReplica:
			if i, ok := p.idx[a.Node]; ok {
				rt.load[r][i]--
			}
		}
	}
	p.resourceTargets(rt, first, count)
	return rt
}

// resourceTargets computes rt.target: each resource's floors, then its
// ceilings, handed out by handOutCeilings (ceilings.go) so that each
// node's total comes within the band of its total share (copyShare, the
// sum over resources) with the fewest copies moved.
func (p *planner) resourceTargets(rt *resourceTargets, first, count []int) {
	n := len(p.nodes)
	weight := make([]int, n)
	tie := make([]uint64, n)
	var takers []int
	for i, nd := range p.nodes {
		weight[i], tie[i] = nd.weight, nd.tie
		if nd.take {
			takers = append(takers, i)
		}
	}
	type extra struct {
		r          int
		left       int   // ceilings still to give
		candidates []int // nodes whose share has a fraction
	}
	extras := make([]extra, 0, len(rt.names))
	floors := make([]int, n)
	for r := range rt.names {
		cl := p.classOf(first[r])
		k := int(p.want[first[r]])
		frozen := 0
		for i, nd := range p.nodes {
			if nd.hold && !nd.take {
				frozen += rt.load[r][i]
			}
		}
		mine := make([]int, 0, len(takers))
		for _, i := range takers {
			if cl.mayHold(i) {
				mine = append(mine, i)
			}
		}
		share, quota := copyShares(count[r], k, mine, weight, cl.zoneOf, cl.takerZones, frozen, rt.load[r], tie)
		e := extra{r: r}
		for _, i := range mine {
			lo, hi := band(share[i], count[r])
			rt.target[r][i] = lo
			floors[i] += lo
			e.left += quota[i] - lo
			if hi > lo {
				e.candidates = append(e.candidates, i)
			}
		}
		extras = append(extras, e)
	}
	// Each node's total should come to the floor of its total share, and
	// may come to the ceiling.
	roomLo, roomHi := make([]int, n), make([]int, n)
	for _, i := range takers {
		lo, hi := band(p.copyShare[i], len(p.c.Partitions))
		roomLo[i], roomHi[i] = lo-floors[i], hi-floors[i]
	}
	left := make([]int, len(rt.names))
	candidates := make([][]int, len(rt.names))
	for _, e := range extras {
		left[e.r], candidates[e.r] = e.left, e.candidates
	}
	chosen := handOutCeilings(left, candidates, roomLo, roomHi, func(r, i int) bool { return rt.load[r][i] > rt.target[r][i] })
	for r, nodes := range chosen {
		for _, i := range nodes {
			rt.target[r][i]++
		}
	}
}

// moved records a copy of partition pi started on node t, replacing
// replaces (if live).
func (rt *resourceTargets) moved(p *planner, pi, t int, replaces string) {
	r := rt.of[pi]
	if r < 0 {
		return
	}
	rt.load[r][t]++
	if i, st := p.state(replaces); replaces != "" && i >= 0 && st == holderLive {
		rt.load[r][i]--
	}
}

// rebalanceResources moves each resource's copies from nodes above their
// target to nodes below it, one direct move per copy (add before remove).
func (p *planner) rebalanceResources() {
	rt := p.rt
	n := len(p.nodes)
	lists := make([][]int32, n) // reused per resource: partitions of r per giver
	for r := range rt.names {
		if !p.budgetLeft() {
			return
		}
		load, target := rt.load[r], rt.target[r]
		var givers, takers []int
		for i, nd := range p.nodes {
			switch {
			case !nd.take:
				// An app-unhealthy node keeps what it has; a node that
				// may not hold the resource loses it through repair.
			case load[i] > target[i]:
				givers = append(givers, i)
			case load[i] < target[i]:
				takers = append(takers, i)
			}
		}
		if len(givers) == 0 || len(takers) == 0 {
			continue
		}
		isGiver := make([]bool, n)
		for _, a := range givers {
			isGiver[a] = true
			lists[a] = lists[a][:0]
		}
		for pi := range p.c.Partitions {
			if rt.of[pi] != int32(r) || p.touched[pi] {
				continue
			}
			part := &p.c.Partitions[pi]
			if len(part.Migrations) > 0 {
				continue
			}
			for _, h := range p.holders(part) {
				if i, ok := p.idx[h]; ok && isGiver[i] {
					lists[i] = append(lists[i], int32(pi))
				}
			}
		}
		sort.SliceStable(givers, func(x, y int) bool {
			i, j := givers[x], givers[y]
			if ei, ej := load[i]-target[i], load[j]-target[j]; ei != ej {
				return ei > ej
			}
			return p.nodes[i].id < p.nodes[j].id
		})
		// open keeps the takers that still lack copies and have a free
		// migration slot: once none has, the resource waits for the next
		// plan (a new node takes a few copies at a time, and looking at
		// every partition of every giver for none would be most of a
		// plan's time).
		open := func() bool {
			kept := takers[:0]
			for _, u := range takers {
				if load[u] < target[u] && p.budget(u, -1) {
					kept = append(kept, u)
				}
			}
			takers = kept
			return len(takers) > 0
		}
		for _, a := range givers {
			for _, pi := range lists[a] {
				if load[a] <= target[a] || !p.budgetLeft() || !open() {
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
					if load[u] >= target[u] || part.Holds(p.nodes[u].id) || !p.budget(u, src) || !p.zoneOK(u, copies, covered) || !p.roomFor(u, int(pi)) {
						continue
					}
					c := p.copyCandidate(u, int(pi))
					to.offer(&c)
				}
				if !to.ok {
					continue
				}
				from := p.copyCandidate(a, int(pi))
				why := fmt.Sprintf("resource %s: %s holds %d of its copies, target %d; %s holds %d, target %d",
					rt.names[r], from.id, load[a], target[a], to.best.id, load[to.best.node], target[to.best.node])
				p.startMigration(part, to.best.node, src, srcID, from.id, PriorityRebalanceReplica, append(moveReasons(from, to.best, rebalancing), why))
			}
		}
	}
}
