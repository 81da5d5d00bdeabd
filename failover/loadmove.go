package failover

import (
	"fmt"
	"math"
	"sort"
)

// Load moves: copies moved, or swapped, from nodes above their load bands
// to nodes below them, within the count bands (see load.go).

// maxLoadCandidates bounds the copies of one giver examined for one
// receiver, nearest the ideal first: beyond it the move is left to the
// next pair or plan.
const maxLoadCandidates = 64

// moveForLoad moves copies from nodes above their load bands to nodes
// below them (or as loadSides says): for the givers in turn, the move
// (copy, receiver) that shrinks the distance to the means most. A receiver
// must stay at or below DiskHigh with the copy, and both ends within their
// count bands: where a move would take one of them out (the giver at its
// floor, the receiver at its ceiling), the copy is swapped for one of the
// receiver's coldest copies instead (two migrations, counts unchanged),
// so that a node whose count is at its floor but whose load is high (a
// hot partition among its copies) still gets to the mean.
func (p *planner) moveForLoad() {
	ls := p.ls
	// Each node's movable, settled copies by quantity, built when first
	// needed: for a giver, those with a quantity; for a swap's cold end,
	// only the coldest few (a full sort of every receiver's copies was a
	// tenth of a plan at 100 nodes × 65,536 partitions).
	sorted := make([][]heldCopy, len(p.nodes))
	cold := make([][]heldCopy, len(p.nodes))
	movableOf := func(i int) []heldCopy {
		if sorted[i] == nil {
			l := []heldCopy{}
			for _, hc := range ls.held[i] {
				if p.movable(hc.part) && p.settled(int(hc.part)) && ls.hq[hc.slot] > 0 {
					l = append(l, hc)
				}
			}
			sort.SliceStable(l, func(x, y int) bool { return ls.hq[l[x].slot] < ls.hq[l[y].slot] })
			sorted[i] = l
		}
		return sorted[i]
	}
	coldestOf := func(i int) []heldCopy {
		if cold[i] == nil {
			l := make([]heldCopy, 0, maxColdCopies)
			for _, hc := range ls.held[i] {
				if !p.movable(hc.part) || !p.settled(int(hc.part)) {
					continue
				}
				// Insert in order, keeping the maxColdCopies coldest.
				q := ls.hq[hc.slot]
				if len(l) == maxColdCopies && q >= ls.hq[l[len(l)-1].slot] {
					continue
				}
				k := sort.Search(len(l), func(x int) bool { return ls.hq[l[x].slot] > q })
				if len(l) < maxColdCopies {
					l = append(l, heldCopy{})
				}
				copy(l[k+1:], l[k:len(l)-1])
				l[k] = hc
			}
			cold[i] = l
		}
		return cold[i]
	}
	for p.budgetLeft() {
		give, take := p.loadSides(true)
		if give == nil {
			return
		}
		moved := false
		for _, a := range give {
			var best loadMove
			swapTakers := 0
			for _, b := range take {
				if !p.budget(b, -1) {
					continue
				}
				var m loadMove
				if withinBands(ls.copyBands, a, b) {
					m = p.bestCopyFor(a, b, movableOf(a), swapBack{hc: heldCopy{part: -1}})
				} else if ls.copyBands.member[b] && swapTakers < maxSwapTakers {
					swapTakers++
					m = p.bestSwapFor(a, b, movableOf(a), coldestOf(b))
				}
				if m.better(best, ls) {
					best = m
				}
			}
			if !best.ok {
				continue
			}
			p.applyLoadMove(a, best)
			moved = true
			break
		}
		if !moved {
			return
		}
	}
}

// loadMove is a move for load: a's copy hc to node to, and, for a swap,
// back (one of to's copies) to a.
type loadMove struct {
	ok    bool
	hc    heldCopy
	to    int
	src   int
	srcID string
	back  swapBack
	gain  float64
}

// swapBack is the cold copy a swap moves back, its source; part -1: none.
type swapBack struct {
	hc    heldCopy
	src   int
	srcID string
}

// better reports whether m beats o: more gain per migration (a swap costs
// two), then the smaller copy.
func (m loadMove) better(o loadMove, ls *loadState) bool {
	switch {
	case !m.ok:
		return false
	case !o.ok:
		return true
	}
	mg, og := m.gain/float64(m.migrations()), o.gain/float64(o.migrations())
	return mg > og || mg == og && ls.hs[m.hc.slot] < ls.hs[o.hc.slot]
}

func (m loadMove) migrations() int {
	if m.back.hc.part >= 0 {
		return 2
	}
	return 1
}

// applyLoadMove starts the migrations of m, giver a, with their reasons.
func (p *planner) applyLoadMove(a int, m loadMove) {
	ls := p.ls
	figure := "load"
	if !ls.byLoad {
		figure = "size"
	}
	net := ls.hq[m.hc.slot]
	if m.back.hc.part >= 0 {
		net -= ls.hq[m.back.hc.slot]
	}
	why := []string{
		fmt.Sprintf("%s: %s carries %s (mean %s, band ±%s); the copy carries %s", figure, p.nodes[a].id, num(ls.load[a]), num(ls.mean[a]), num(ls.bw[a]), num(ls.hq[m.hc.slot])),
		fmt.Sprintf("%s: %s carries %s (mean %s): the move brings both closer to their means", figure, p.nodes[m.to].id, num(ls.load[m.to]), num(ls.mean[m.to])),
	}
	if m.back.hc.part < 0 {
		p.moveCopyForLoad(m.hc, a, m.to, m.src, m.srcID, PriorityBalanceLoad, why)
		return
	}
	swap := fmt.Sprintf("swapped for p%d's copy on %s (carries %s; net %s): counts stay within their bands", m.back.hc.part, p.nodes[m.to].id, num(ls.hq[m.back.hc.slot]), num(net))
	whyBack := []string{
		fmt.Sprintf("%s: %s takes p%d's copy from %s (carries %s) and gives back this one (carries %s)", figure, p.nodes[m.to].id, m.hc.part, p.nodes[a].id, num(ls.hq[m.hc.slot]), num(ls.hq[m.back.hc.slot])),
		"counts stay within their bands",
	}
	p.moveCopyForLoad(m.hc, a, m.to, m.src, m.srcID, PriorityBalanceLoad, append(why, swap))
	p.moveCopyForLoad(m.back.hc, m.to, a, m.back.src, m.back.srcID, PriorityBalanceLoad, whyBack)
}

// maxSwapCandidates bounds the cold copies of a receiver tried as the
// other half of a swap, coldest first; maxSwapTakers the receivers a giver
// tries swaps with in one step, the furthest below their means first. A
// node whose load no swap can bring into its band (it holds copies of the
// hottest partitions) would otherwise have every plan search every pair:
// at 100 nodes × 65,536 partitions that was most of a plan.
const (
	maxSwapCandidates = 8
	maxSwapTakers     = 4
	// maxColdCopies are the coldest copies of a receiver kept for swaps
	// (some fail the constraints: held by the giver, zone, disk).
	maxColdCopies = 32
)

// bestSwapFor is the best swap of one of a's copies (l) for one of b's
// coldest copies (cold, sorted by quantity): the cold copy must be one a
// may take (a does not hold it, its zone, a's disk), and both migrations
// must fit the slots.
func (p *planner) bestSwapFor(a, b int, l, cold []heldCopy) loadMove {
	ls := p.ls
	var best loadMove
	tried := 0
	for _, hc := range cold {
		if tried >= maxSwapCandidates {
			break
		}
		if p.touched[hc.part] {
			continue
		}
		part := &p.c.Partitions[hc.part]
		if part.Holds(p.nodes[a].id) || !ls.hasRoom(a, float64(ls.hs[hc.slot])) {
			continue
		}
		copies, covered := p.zoneCounts(part, p.nodes[b].id)
		if !p.zoneOK(a, copies, covered) {
			continue
		}
		tried++
		src, srcID := p.sourceFor(part)
		m := p.bestCopyFor(a, b, l, swapBack{hc: hc, src: src, srcID: srcID})
		if m.better(best, ls) {
			best = m
		}
	}
	return best
}

// bestCopyFor is the copy of a's (l, sorted by quantity) whose move to b
// (with back's move from b to a, for a swap) shrinks the distance to the
// means most and passes the hard constraints (b does not hold it,
// migration slots, zone spread, b's disk, the primary bands), looking at
// the maxLoadCandidates copies nearest the ideal quantity; not ok if none.
func (p *planner) bestCopyFor(a, b int, l []heldCopy, back swapBack) loadMove {
	ls := p.ls
	offset := 0.0 // what comes back
	if back.hc.part >= 0 {
		offset = ls.hq[back.hc.slot]
	}
	ea, eb := ls.excess(a), -ls.excess(b)
	limit := 2*math.Min(ea, eb) + offset // a copy must carry less than this
	ideal := math.Min((ea+eb)/2+offset, limit)
	// Walk outwards from the ideal quantity, nearer side first.
	hi := sort.Search(len(l), func(x int) bool { return ls.hq[l[x].slot] >= ideal })
	lo := hi - 1
	for tried := 0; tried < maxLoadCandidates && (lo >= 0 || hi < len(l)); tried++ {
		var x int
		switch {
		case lo < 0:
			x, hi = hi, hi+1
		case hi >= len(l):
			x, lo = lo, lo-1
		case ideal-ls.hq[l[lo].slot] <= ls.hq[l[hi].slot]-ideal:
			x, lo = lo, lo-1
		default:
			x, hi = hi, hi+1
		}
		hc := l[x]
		gain, ok := ls.converges(a, b, ls.hq[hc.slot]-offset)
		if !ok {
			if ls.hq[hc.slot] >= limit {
				hi = len(l) // everything further up is too much too
			}
			continue
		}
		if p.touched[hc.part] || hc.part == back.hc.part {
			continue
		}
		part := &p.c.Partitions[hc.part]
		if !p.primariesWithinBands(a, b, hc, back) {
			continue // the primary role moves with the copy
		}
		if part.Holds(p.nodes[b].id) || !ls.hasRoom(b, float64(ls.hs[hc.slot])) {
			continue
		}
		src, srcID := p.sourceFor(part)
		if !p.budgetFor(b, src, a, back) {
			continue
		}
		copies, covered := p.zoneCounts(part, p.nodes[a].id)
		if !p.zoneOK(b, copies, covered) {
			continue
		}
		return loadMove{ok: true, hc: hc, to: b, src: src, srcID: srcID, back: back, gain: gain}
	}
	return loadMove{}
}

// primariesWithinBands reports whether moving hc from a to b (and back
// from b to a) keeps both within their primary bands: the target of a
// migration that replaces a primary leads.
func (p *planner) primariesWithinBands(a, b int, hc heldCopy, back swapBack) bool {
	d := 0 // primaries a hands to b
	if p.c.Partitions[hc.part].Primary == p.nodes[a].id {
		d++
	}
	if back.hc.part >= 0 && p.c.Partitions[back.hc.part].Primary == p.nodes[b].id {
		d--
	}
	switch {
	case d > 0:
		return withinBands(p.ls.primBands, a, b)
	case d < 0:
		return withinBands(p.ls.primBands, b, a)
	}
	return true
}

// budgetFor reports whether the migration to b from src, and back's to a
// (if any), fit the migration limits together.
func (p *planner) budgetFor(b, src, a int, back swapBack) bool {
	if !p.budget(b, src) {
		return false
	}
	if back.hc.part < 0 {
		return true
	}
	// Count the first migration, check the second, take it back.
	p.busy[b]++
	if src >= 0 {
		p.busy[src]++
	}
	p.inflight++
	ok := p.budget(a, back.src)
	p.busy[b]--
	if src >= 0 {
		p.busy[src]--
	}
	p.inflight--
	return ok
}
