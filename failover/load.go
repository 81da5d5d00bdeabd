package failover

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"time"
)

// Placement that sees load and disk.
//
// The apps report, per copy they hold, its size in bytes and its load (an
// app-defined unit per second), and for their node the disk's capacity and
// use (Figures). The leader keeps the latest report of each node in memory
// and hands the fresh ones to Plan. Without figures Plan is exactly the
// counts-only planner of rebalance.go. With them:
//
//   - Disk (whatever else is reported): a node whose disk use is above
//     DiskHigh takes no new copy (it keeps what it has, as an app-unhealthy
//     node does), and one above DiskFull sheds copies, the largest first,
//     until its projected use is under DiskFull, to nodes whose use stays
//     at or below DiskHigh once they have the copy. Every other move that
//     adds a copy to a node (repair, zone spread, count and load moves)
//     weighs the copy's size against the node's room the same way; only a
//     copy that restores the replication factor goes to a node short of
//     room, when no node with room can take it (bestTarget).
//   - Counts first: copies and primaries balance by count as without
//     figures (rebalance.go), never held back by the hysteresis.
//   - Load, unless CountsOnly: once some load or size is reported the
//     count bands widen (widen), and once every live node has reported,
//     within them, each node's load (the sum of its copies' figures, by load, or by size
//     when no load is reported at all) is kept within a band around its
//     weighted mean, BandRatio of it but at least BandMinCopies mean copies.
//     First by promotions (free): a replica that carries less of a hot
//     partition than its primary takes over the primary role; then by
//     moving copies, or swapping them where a move would leave a count
//     band. A move is made only when some node is outside its band
//     and only if it brings both of its ends strictly closer to their
//     means, so every move shrinks the total distance to the means and the
//     planner converges. A partition whose placement changed less than
//     Hysteresis ago (Ages.Moved) is not moved or promoted for load, so
//     that noisy reports do not move a partition back and forth.
//
// The load of a copy travels with it (a moved copy carries to its new node
// the figure its old node reported) and a promotion swaps the figures of
// the old and new primaries' copies. A copy its node has not reported yet
// (a copy just made) counts with another holder's figure.

// Figures are the apps' reports as the leader holds them: only fresh ones
// (the leader drops a report after a while without a new one).
type Figures struct {
	// Nodes maps a node ID to its app's last report.
	Nodes map[string]NodeFigures `json:"nodes"`
}

// NodeFigures is one node's report.
type NodeFigures struct {
	// DiskCapacity and DiskUsed are the bytes of the disk holding the app's
	// data; a capacity of 0 means the app reported no disk.
	DiskCapacity int64 `json:"disk_capacity_bytes"`
	DiskUsed     int64 `json:"disk_used_bytes"`
	// Copies are the figures of the partitions the app holds, by partition.
	Copies map[int]CopyFigures `json:"copies"`
}

// CopyFigures are one copy's figures.
type CopyFigures struct {
	// Size is the copy's size in bytes.
	Size int64 `json:"size_bytes"`
	// Load is what serving the copy costs, in the app's unit per second
	// (requests per second, say): the same unit on every node.
	Load float64 `json:"load"`
}

// DiskRatio is the disk's used fraction (0 when no disk was reported).
func (f NodeFigures) DiskRatio() float64 {
	if f.DiskCapacity <= 0 {
		return 0
	}
	return float64(f.DiskUsed) / float64(f.DiskCapacity)
}

// LoadPolicy are the thresholds the planner applies to Figures.
type LoadPolicy struct {
	// DiskFull: a node whose disk use is above this fraction sheds copies
	// until it is under it (-disk-full, default 0.95).
	DiskFull float64
	// DiskHigh: a node above this fraction takes no new copies
	// (-disk-high, default 0.925). At most DiskFull.
	DiskHigh float64
	// BandRatio is the half width of the balanced band around a node's mean
	// load, as a fraction of it (default 0.05).
	BandRatio float64
	// BandMinCopies is the band's minimum half width, in mean copy loads
	// (the cluster's load divided by its copies; default 2), so that small
	// loads do not chase single copies.
	BandMinCopies float64
	// ReportNoise is how far off a single report may be, as a fraction of
	// it (default 0.10): a node's band is at least twice that of its
	// largest copy, so that a node whose load is mostly one hot partition
	// is not balanced on the noise of that one report.
	ReportNoise float64
	// Hysteresis: a partition whose placement changed less than this long
	// ago (Ages.Moved) is not moved or promoted for load
	// (-load-hysteresis, default 5 minutes). Disk shedding does not wait.
	Hysteresis time.Duration
	// CountsOnly keeps copies and primaries balanced exactly by count, as
	// without figures, and uses the figures for the disk rules only
	// (-balance-by count, the agent's default). Without it counts balance
	// first within wider bands (widen), and load within them.
	CountsOnly bool
}

// DefaultLoadPolicy returns the thresholds of the issue: shed above 95 %,
// take nothing above 92.5 %, a 5 % band of at least two mean copies, five
// minutes between two load moves of one partition.
func DefaultLoadPolicy() LoadPolicy {
	return LoadPolicy{DiskFull: 0.95, DiskHigh: 0.925, BandRatio: 0.05, BandMinCopies: 2, ReportNoise: 0.10, Hysteresis: 5 * time.Minute}
}

// Validate reports the first threshold that cannot work.
func (l LoadPolicy) Validate() error {
	switch {
	case !(l.DiskFull > 0 && l.DiskFull <= 1):
		return fmt.Errorf("failover: disk-full must be a fraction in (0, 1], got %v", l.DiskFull)
	case !(l.DiskHigh > 0 && l.DiskHigh <= l.DiskFull):
		return fmt.Errorf("failover: disk-high must be a fraction in (0, disk-full %v], got %v", l.DiskFull, l.DiskHigh)
	case !(l.BandRatio >= 0 && l.BandRatio < 1):
		return fmt.Errorf("failover: the load band ratio must be in [0, 1), got %v", l.BandRatio)
	case !(l.BandMinCopies >= 0) || math.IsInf(l.BandMinCopies, 0):
		return fmt.Errorf("failover: the load band minimum must be a non-negative number of copies, got %v", l.BandMinCopies)
	case !(l.ReportNoise >= 0 && l.ReportNoise < 1):
		return fmt.Errorf("failover: the report noise must be a fraction in [0, 1), got %v", l.ReportNoise)
	case l.Hysteresis < 0:
		return errors.New("failover: the load hysteresis must not be negative")
	}
	return nil
}

// Load action priorities, beside the others of plan.go.
const (
	// PriorityShedDisk: move a copy off a node whose disk is over
	// DiskFull, before it fills; after every repair, before any balancing.
	PriorityShedDisk = 350
	// PriorityBalanceLoad: move a copy from a node above its load band.
	PriorityBalanceLoad = PriorityRebalanceReplica
	// PriorityPromoteForLoad: hand a hot partition's primary role to a
	// less loaded replica.
	PriorityPromoteForLoad = PriorityRebalancePrimary
)

// minMoveCopies is the least a move or promotion for load shifts, in mean
// copy loads: less is not worth a copy, or a lease wait.
const minMoveCopies = 0.25

// innerBand is how far into its band balancing takes each node once it
// has started (see loadState.inner).
const innerBand = 0.5

// maxLoadPromotions bounds the promotions for load in one plan: each one
// makes the partition wait for its old primary's lease, so they come a few
// at a time.
const maxLoadPromotions = 32

// loadState is the planner's view of the figures in one plan: each node's
// projected load and disk use, counting what was planned so far.
type loadState struct {
	pol     LoadPolicy
	figs    []*NodeFigures // by node index; nil: no report
	byLoad  bool           // some load was reported: balance by load, else by size
	balance bool           // every live node reported: balance load (not counts)

	load     []float64 // projected load per node
	diskUsed []float64 // projected disk use per node (bytes)
	mean     []float64 // each member's weighted mean load
	bw       []float64 // each member's band half width
	member   []bool    // takes part in load balancing: may lead
	minMove  float64   // the least load a move or promotion must shift
	total    float64   // the members' load
	// inner scales the bands while balancing: balancing starts when a node
	// is outside its band and, once started, brings the nodes within
	// inner times it, so that noise in the reports of a cluster just
	// balanced does not start it again at once.
	inner float64

	// wide: load balances by the figures (not counts only), so the count
	// bands are widened (see widen) and load moves stay within them:
	// copies within copyBands, primaries within primBands.
	wide                 bool
	copyBands, primBands bands

	// The figures of every holder of every partition, in the order of
	// planner.holders: partition pi's are at off[pi] to off[pi+1]; a holder
	// that is not live has zeros. node is each slot's holder (-1: unknown).
	// slotLive: the slot's holder is live and not being replaced. count
	// fills off, node and slotLive.
	off      []int32
	node     []int32
	slotLive []bool
	hq       []float64 // quantity (see quantity)
	hs       []int64   // size
	// held are each node's live copies.
	held [][]heldCopy
}

// newLoadState prepares the figures of in for the planner p (after its
// nodes are known, before its quotas).
func newLoadState(f *Figures, pol LoadPolicy, p *planner) *loadState {
	if f == nil || len(f.Nodes) == 0 {
		return nil
	}
	if pol.Validate() != nil {
		pol = DefaultLoadPolicy()
	}
	n := len(p.nodes)
	ls := &loadState{pol: pol, figs: make([]*NodeFigures, n), load: make([]float64, n), diskUsed: make([]float64, n),
		mean: make([]float64, n), bw: make([]float64, n), member: make([]bool, n)}
	ls.balance = true
	for i, nd := range p.nodes {
		ls.member[i] = nd.lead
		if fig, ok := f.Nodes[nd.id]; ok {
			fig := fig
			ls.figs[i] = &fig
			ls.diskUsed[i] = float64(fig.DiskUsed)
			for _, c := range fig.Copies {
				if c.Load > 0 {
					ls.byLoad = true
				}
			}
		} else if nd.hold {
			ls.balance = false
		}
	}
	return ls
}

// quantity is what load balancing weighs of a copy: its load, or its size
// when no load is reported anywhere.
func (ls *loadState) quantity(c CopyFigures) float64 {
	if ls.byLoad {
		return c.Load
	}
	return float64(c.Size)
}

// heldCopy is one live copy a node holds: its partition and where its
// figures are in loadState.hq and hs.
type heldCopy struct {
	part, slot int32
}

// countLoad gathers each copy's figures, projects the loads and disk uses
// with the migrations in flight (a target counts the copy it receives, the
// holder it replaces no longer does) and computes the bands. It reads each
// report's map once, in a pass of its own, rather than look up every copy:
// at 65,536 partitions the lookups were most of a plan.
func (p *planner) countLoad() {
	ls := p.ls
	n := len(p.nodes)
	parts := p.c.Partitions
	ls.held = make([][]heldCopy, n)
	node, live := ls.node, ls.slotLive // filled by count
	slots := len(node)
	reported, load, size := make([]bool, slots), make([]float64, slots), make([]int64, slots)
	for i, f := range ls.figs {
		if f == nil {
			continue
		}
		for pi, cf := range f.Copies {
			if pi < 0 || pi >= len(parts) {
				continue
			}
			for s := ls.off[pi]; s < ls.off[pi+1]; s++ {
				if node[s] == int32(i) {
					reported[s], load[s], size[s] = true, cf.Load, cf.Size
				}
			}
		}
	}
	// A copy its node did not report counts with another holder's figures.
	for pi := range parts {
		first := int32(-1)
		for s := ls.off[pi]; s < ls.off[pi+1]; s++ {
			if reported[s] {
				first = s
				break
			}
		}
		if first < 0 {
			continue
		}
		for s := ls.off[pi]; s < ls.off[pi+1]; s++ {
			if !reported[s] {
				load[s], size[s] = load[first], size[first]
			}
		}
	}
	ls.hq, ls.hs = make([]float64, slots), make([]int64, slots)
	for s := range ls.hq {
		if live[s] {
			ls.hq[s], ls.hs[s] = ls.quantity(CopyFigures{Size: size[s], Load: load[s]}), size[s]
		}
	}
	copies := 0
	largest := make([]float64, n)
	for i := range ls.held {
		ls.held[i] = make([]heldCopy, 0, slots/n+slots/(4*n)+1)
	}
	for pi := range parts {
		part := &parts[pi]
		for s := ls.off[pi]; s < ls.off[pi+1]; s++ {
			if !live[s] {
				continue
			}
			i := node[s]
			ls.load[i] += ls.hq[s]
			largest[i] = math.Max(largest[i], ls.hq[s])
			ls.held[i] = append(ls.held[i], heldCopy{part: int32(pi), slot: s})
			if ls.member[i] {
				copies++
			}
		}
		for _, m := range part.Migrations {
			if !p.targetLive(m) {
				continue
			}
			// The copy in flight carries the figures of the holder it
			// replaces, or of its source.
			from := m.Replaces
			if from == "" {
				from = m.Source
			}
			cf := CopyFigures{}
			for k, h := range p.holders(part) {
				if s := ls.off[pi] + int32(k); h == from || k == 0 {
					cf = CopyFigures{Size: size[s], Load: load[s]}
				}
			}
			t := p.idx[m.Target]
			ls.load[t] += ls.quantity(cf)
			ls.diskUsed[t] += float64(cf.Size)
			if m.Replaces != "" {
				if r, st := p.state(m.Replaces); st == holderLive {
					ls.diskUsed[r] -= float64(cf.Size)
				}
			}
		}
	}

	var total float64
	weight := 0
	for i, nd := range p.nodes {
		if ls.member[i] {
			total += ls.load[i]
			weight += nd.weight
		}
	}
	ls.total = total
	if weight == 0 {
		return
	}
	minWidth := 0.0
	if copies > 0 {
		minWidth = ls.pol.BandMinCopies * total / float64(copies)
		ls.minMove = minMoveCopies * total / float64(copies)
	}
	for i, nd := range p.nodes {
		if ls.member[i] {
			ls.mean[i] = total * float64(nd.weight) / float64(weight)
			ls.bw[i] = math.Max(math.Max(ls.pol.BandRatio*ls.mean[i], minWidth), 2*ls.pol.ReportNoise*largest[i])
		}
	}
}

// planLoad is what Plan does after repair when it has figures: disks over
// -disk-full shed first; then counts balance, as without figures (within
// the wider bands of widen when load balances too), never held back by the
// hysteresis, so that a node back from a failure gets its share of copies
// at once; then, when load balances, the load moves and promotions, each
// within the count bands.
func (p *planner) planLoad() {
	ls := p.ls
	if p.needs == 0 {
		p.shedFullDisks()
	}
	// Counts chosen, or nothing to weigh (no load and no size anywhere, as
	// in a new cluster): counts balance exactly, as without figures (the
	// disk rules still hold through take and hasRoom). Otherwise the count
	// bands are the wide ones even while some live node has not reported
	// (a new node, an app restarting): switching to the exact bands for
	// those seconds would have count moves undo the placement for load,
	// and load moves redo it once the report is in. Load moves wait for
	// every live node's report.
	ls.wide = ls.total > 0 && !ls.pol.CountsOnly
	if ls.wide && p.inflight > 0 {
		p.countLeadersInFlight()
	}
	if p.needs == 0 {
		// Load moves go anywhere within the widened count bands, which
		// per-resource targets would pull back: per resource only when
		// counts rule.
		p.rebalanceCounts(!ls.wide)
	}
	if !p.copyWork {
		p.rebalancePrimaries()
	}
	if !ls.wide || !ls.balance {
		return
	}
	ls.copyBands, ls.primBands = p.copyBands(), p.primaryBands()
	ls.inner = 1
	if give, _ := p.loadSides(false); give == nil {
		return // every node is within its band
	}
	ls.inner = innerBand
	p.promoteForLoad()
	if p.needs == 0 {
		p.moveForLoad()
	}
}

// countLeadersInFlight counts the target of a migration in flight that
// replaces a partition's primary as its primary already (it leads once the
// copy completes), so that load moves planned while it is in flight keep
// the primary bands: one plan after another, each seeing the old primary
// still leading, took a node two primaries past its band, and the count
// balancing then undid the move for load it had made just before.
func (p *planner) countLeadersInFlight() {
	for pi := range p.c.Partitions {
		part := &p.c.Partitions[pi]
		for _, m := range part.Migrations {
			if m.Replaces == "" || m.Replaces != part.Primary || !p.targetLive(m) {
				continue
			}
			if a, ok := p.idx[part.Primary]; ok {
				p.prims[a]--
				p.prims[p.idx[m.Target]]++
			}
		}
	}
}

// widen is a count band [lo, hi] of a node whose share is share, widened
// for load balancing by BandRatio of the share but at least BandMinCopies
// (BuildBuddy's 5 %, minimum 2), hi capped at most: count moves restore
// the wide band, and load moves may go anywhere within it. With the exact
// band of floor and ceil no single load move would fit (a move takes one
// from a node at its floor or gives one to a node at its ceiling).
func (ls *loadState) widen(lo, hi int, share float64, most int) (int, int) {
	slack := int(math.Max(ls.pol.BandRatio*share, ls.pol.BandMinCopies))
	lo, hi = max(lo-slack, 0), min(hi+slack, most)
	return min(lo, hi), hi
}

// withinBands reports whether one more (to) and one less (from) of the
// load b counts keeps both nodes within their bands; a node that is not a
// member may give but not take.
func withinBands(b bands, from, to int) bool {
	return b.member[to] && b.load[to] < b.hi[to] && (!b.member[from] || b.load[from] > b.lo[from])
}

// project counts a new copy of partition pi on node t in the projected
// loads and disk uses: it carries the figures of the live holder r it
// replaces (-1: none), which no longer counts them, else those of its
// source src, else the largest size any holder reported.
func (ls *loadState) project(pi, t, r, src int) {
	from, fromSrc := int32(-1), int32(-1)
	for s := ls.off[pi]; s < ls.off[pi+1]; s++ {
		switch int(ls.node[s]) {
		case r:
			from = s
		case src:
			fromSrc = s
		}
	}
	if r < 0 || from < 0 {
		from = fromSrc
	}
	q, size := 0.0, ls.copySize(pi)
	if from >= 0 {
		q, size = ls.hq[from], float64(ls.hs[from])
	}
	ls.load[t] += q
	ls.diskUsed[t] += size
	if r >= 0 {
		ls.load[r] -= q
		ls.diskUsed[r] -= size
	}
}

// settled reports whether part's placement changed at least Hysteresis ago.
func (p *planner) settled(part int) bool {
	h := p.ls.pol.Hysteresis
	return h <= 0 || p.ages.Moved[part] >= h
}

// movable reports whether a copy of partition pi may move now: nothing
// planned for it in this plan, nothing in flight.
func (p *planner) movable(pi int32) bool {
	return !p.touched[pi] && len(p.c.Partitions[pi].Migrations) == 0
}

// moveCopyForLoad starts the migration of a's copy hc to b (startMigration
// projects its load and disk).
func (p *planner) moveCopyForLoad(hc heldCopy, a, b, src int, srcID string, prio int, why []string) {
	part := &p.c.Partitions[hc.part]
	if part.Primary == p.nodes[a].id {
		// The target of a migration that replaces the primary leads.
		p.prims[a]--
		p.prims[b]++
	}
	p.startMigration(part, b, src, srcID, p.nodes[a].id, prio, why)
}

// excess is how far node i's load is above its mean (negative below).
func (ls *loadState) excess(i int) float64 { return ls.load[i] - ls.mean[i] }

// loadSides are the nodes that give load and those that take it in this
// round of balancing: the nodes above their bands give to the nodes below
// theirs; when only one side is outside its band, the other side is every
// node on the other side of its mean. nil, nil when every node is within
// its band. With takers, only nodes that take copies take.
func (p *planner) loadSides(takers bool) (give, take []int) {
	ls := p.ls
	var over, under, aboveMean, belowMean []int
	for i := range p.nodes {
		if !ls.member[i] {
			continue
		}
		e := ls.excess(i)
		if e > ls.inner*ls.bw[i] {
			over = append(over, i)
		}
		if e > 0 {
			aboveMean = append(aboveMean, i)
		}
		if takers && !p.nodes[i].take {
			continue
		}
		if -e > ls.inner*ls.bw[i] {
			under = append(under, i)
		}
		if e < 0 {
			belowMean = append(belowMean, i)
		}
	}
	switch {
	case len(over) > 0 && len(under) > 0:
		give, take = over, under
	case len(over) > 0:
		give, take = over, belowMean
	case len(under) > 0:
		give, take = aboveMean, under
	default:
		return nil, nil
	}
	byExcess := func(l []int, sign float64) {
		sort.SliceStable(l, func(x, y int) bool { return sign*ls.excess(l[x]) > sign*ls.excess(l[y]) })
	}
	byExcess(give, 1)
	byExcess(take, -1)
	return give, take
}

// converges reports whether moving q from a to b brings both strictly
// closer to their means, and how much it shrinks the sum of the squared
// distances (the larger, the better the move).
func (ls *loadState) converges(a, b int, q float64) (float64, bool) {
	ea, eb := ls.excess(a), -ls.excess(b)
	if q <= 0 || q < ls.minMove || ea <= 0 || eb <= 0 || q >= 2*ea || q >= 2*eb {
		return 0, false
	}
	return q * (ea + eb - q), true
}

// promoteForLoad hands the primary role of partitions led by nodes above
// their bands to replicas below their means (or of partitions led by nodes
// above their means to replicas below their bands): the one promotion that
// brings the two closest to their means each time, which puts a hot
// partition's primary on its least loaded replica.
func (p *planner) promoteForLoad() {
	ls := p.ls
	led := make([][]int32, len(p.nodes))
	for pi := range p.c.Partitions {
		part := &p.c.Partitions[pi]
		if p.touched[pi] || len(part.Migrations) > 0 || len(part.Replicas) == 0 || !p.settled(pi) {
			continue
		}
		if a, ok := p.idx[part.Primary]; ok && ls.member[a] {
			led[a] = append(led[a], int32(pi))
		}
	}
	isTaker := make([]bool, len(p.nodes))
	for n := 0; n < maxLoadPromotions; n++ {
		give, take := p.loadSides(false)
		if give == nil {
			return
		}
		clear(isTaker)
		for _, b := range take {
			isTaker[b] = p.nodes[b].lead
		}
		done := false
		for _, a := range give {
			bestPart, bestTo, bestGain, bestD := -1, -1, 0.0, 0.0
			for _, pi := range led[a] {
				if p.touched[pi] {
					continue
				}
				part := &p.c.Partitions[pi]
				off := ls.off[pi] // the primary's figures, then the replicas'
				qa := ls.hq[off]
				for k, r := range part.Replicas {
					b, ok := p.idx[r]
					if !ok || !isTaker[b] || !withinBands(ls.primBands, a, b) {
						continue
					}
					d := qa - ls.hq[off+1+int32(k)]
					if gain, ok := ls.converges(a, b, d); ok && gain > bestGain {
						bestPart, bestTo, bestGain, bestD = int(pi), b, gain, d
					}
				}
			}
			if bestPart < 0 {
				continue
			}
			part := &p.c.Partitions[bestPart]
			why := []string{
				fmt.Sprintf("load: %s carries %s (mean %s, band ±%s); as primary of p%d it carries %s more than %s",
					p.nodes[a].id, num(ls.load[a]), num(ls.mean[a]), num(ls.bw[a]), bestPart, num(bestD), p.nodes[bestTo].id),
				fmt.Sprintf("load: %s carries %s (mean %s): of the replicas, the promotion brings it and %s closest to their means", p.nodes[bestTo].id, num(ls.load[bestTo]), num(ls.mean[bestTo]), p.nodes[a].id),
			}
			ls.load[a] -= bestD
			ls.load[bestTo] += bestD
			p.prims[a]--
			p.prims[bestTo]++
			p.emit(Action{Kind: ActionPromote, Partition: bestPart, Epoch: part.Epoch, Node: p.nodes[bestTo].id, Priority: PriorityPromoteForLoad, Reasons: why})
			done = true
			break
		}
		if !done {
			return
		}
	}
}

// num prints a figure briefly.
func num(v float64) string { return fmt.Sprintf("%.1f", v) }
