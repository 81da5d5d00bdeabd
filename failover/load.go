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
//     at or below DiskHigh once they have the copy.
//   - Load, once every live node has reported some load or size: counts no
//     longer balance;
//     each node's load (the sum of its copies' figures, by load, or by size
//     when no load is reported at all) is kept within a band around its
//     weighted mean, BandRatio of it but at least BandMinCopies mean copies.
//     First by promotions (free): a replica that carries less of a hot
//     partition than its primary takes over the primary role; then by
//     moving copies. A move is made only when some node is outside its band
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
	// CountsOnly keeps copies and primaries balanced by count, as without
	// figures, and uses the figures for the disk rules only (-balance-by
	// count, the agent's default). Load balancing gives up equal counts
	// and waits Hysteresis after every change of a partition, repairs
	// included, so a node back from a failure would get its share only
	// minutes later: it is the operator's choice (-balance-by load).
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

	// The figures of every holder of every partition, in the order of
	// planner.holders: partition pi's are at off[pi] to off[pi+1]; a holder
	// that is not live has zeros.
	off []int32
	hq  []float64 // quantity (see quantity)
	hs  []int64   // size
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

// diskHigh reports whether node id reported a disk use over DiskHigh.
func diskHigh(f *Figures, pol LoadPolicy, id string) bool {
	if f == nil {
		return false
	}
	if pol.Validate() != nil {
		pol = DefaultLoadPolicy()
	}
	fig, ok := f.Nodes[id]
	return ok && fig.DiskCapacity > 0 && fig.DiskRatio() > pol.DiskHigh
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
	ls.off = make([]int32, len(parts)+1)
	ls.held = make([][]heldCopy, n)
	guess := len(parts) * (p.c.Settings.ReplicationFactor + 1)
	node := make([]int32, 0, guess) // each slot's holder (-1: unknown)
	live := make([]bool, 0, guess)  // each slot's holder is live and not being replaced
	for pi := range parts {
		part := &parts[pi]
		ls.off[pi] = int32(len(node))
		for _, h := range p.holders(part) {
			i, st := p.state(h)
			node = append(node, int32(i))
			live = append(live, st == holderLive && !(len(part.Migrations) > 0 && p.replaced(part, h)))
		}
	}
	ls.off[len(parts)] = int32(len(node))
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

// planLoad is what Plan does after repair when it has figures.
func (p *planner) planLoad() {
	for i, nd := range p.nodes {
		p.ls.member[i] = nd.lead
	}
	p.countLoad()
	if p.needs == 0 {
		p.shedFullDisks()
	}
	if !p.ls.balance || p.ls.total == 0 || p.ls.pol.CountsOnly {
		// Not every live node reported, nothing to weigh (no load and no
		// size anywhere, as in a new cluster), or counts chosen: counts
		// balance, as without figures (the disk rules still hold through
		// take).
		if p.needs == 0 {
			p.rebalanceCopies()
		}
		if !p.copyWork {
			p.rebalancePrimaries()
		}
		return
	}
	p.ls.inner = 1
	if give, _ := p.loadSides(false); give == nil {
		return // every node is within its band
	}
	p.ls.inner = innerBand
	p.promoteForLoad()
	if p.needs == 0 {
		p.moveForLoad()
	}
}

// diskLimit is the bytes node i may use below fraction f of its disk; +Inf
// when it reported no disk.
func (ls *loadState) diskLimit(i int, f float64) float64 {
	if ls.figs[i] == nil || ls.figs[i].DiskCapacity <= 0 {
		return math.Inf(1)
	}
	return f * float64(ls.figs[i].DiskCapacity)
}

func (ls *loadState) diskPct(i int) float64 {
	if ls.figs[i] == nil || ls.figs[i].DiskCapacity <= 0 {
		return 0
	}
	return 100 * ls.diskUsed[i] / float64(ls.figs[i].DiskCapacity)
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

// shedFullDisks moves copies off every node over DiskFull, the largest
// copies first, until its projected use is under it (all of them, empty
// ones last, when even that leaves it over).
func (p *planner) shedFullDisks() {
	ls := p.ls
	for a := range p.nodes {
		if !p.nodes[a].hold || ls.diskUsed[a] <= ls.diskLimit(a, ls.pol.DiskFull) {
			continue
		}
		var mine []heldCopy
		for _, hc := range ls.held[a] {
			// Empty copies too, last: they free nothing now, but would
			// grow on a disk that is full.
			if p.movable(hc.part) {
				mine = append(mine, hc)
			}
		}
		sort.SliceStable(mine, func(x, y int) bool { return ls.hs[mine[x].slot] > ls.hs[mine[y].slot] })
		for _, hc := range mine {
			if ls.diskUsed[a] <= ls.diskLimit(a, ls.pol.DiskFull) || !p.budgetLeft() {
				break
			}
			part := &p.c.Partitions[hc.part]
			size := float64(ls.hs[hc.slot])
			src, srcID := p.sourceFor(part)
			copies, covered := p.zoneCounts(part, p.nodes[a].id)
			best, bestPct := -1, 0.0
			for b, nd := range p.nodes {
				if !nd.take || part.Holds(nd.id) || !p.budget(b, src) || !p.zoneOK(b, copies, covered) {
					continue
				}
				if ls.diskUsed[b]+size > ls.diskLimit(b, ls.pol.DiskHigh) {
					continue
				}
				pct := ls.pol.DiskHigh // a node that reported no disk comes last
				if lim := ls.diskLimit(b, 1); !math.IsInf(lim, 1) {
					pct = (ls.diskUsed[b] + size) / lim
				}
				if best < 0 || pct < bestPct {
					best, bestPct = b, pct
				}
			}
			if best < 0 {
				continue
			}
			why := []string{
				fmt.Sprintf("disk: %s uses %.1f%% of its disk, over -disk-full %.1f%%: sheds a copy of %s", p.nodes[a].id, ls.diskPct(a), 100*ls.pol.DiskFull, bytesText(size)),
				fmt.Sprintf("disk: %s uses %.1f%% before it (at most -disk-high %.1f%% after)", p.nodes[best].id, ls.diskPct(best), 100*ls.pol.DiskHigh),
			}
			p.moveCopyForLoad(hc, a, best, src, srcID, PriorityShedDisk, why)
		}
	}
}

// moveCopyForLoad starts the migration of a's copy hc to b and projects
// its load and disk.
func (p *planner) moveCopyForLoad(hc heldCopy, a, b, src int, srcID string, prio int, why []string) {
	ls := p.ls
	q, size := ls.hq[hc.slot], float64(ls.hs[hc.slot])
	ls.load[a] -= q
	ls.load[b] += q
	ls.diskUsed[a] -= size
	ls.diskUsed[b] += size
	p.startMigration(&p.c.Partitions[hc.part], b, src, srcID, p.nodes[a].id, prio, why)
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
					if !ok || !isTaker[b] {
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

// maxLoadCandidates bounds the copies of one giver examined for one
// receiver, nearest the ideal first: beyond it the move is left to the
// next pair or plan.
const maxLoadCandidates = 64

// moveForLoad moves copies from nodes above their load bands to nodes
// below them (or as loadSides says): for the givers in turn, the move
// (copy, receiver) that shrinks the distance to the means most. A receiver
// must stay at or below DiskHigh with the copy.
func (p *planner) moveForLoad() {
	ls := p.ls
	sorted := make([][]heldCopy, len(p.nodes)) // each giver's movable copies by quantity, built when first needed
	for p.budgetLeft() {
		give, take := p.loadSides(true)
		if give == nil {
			return
		}
		moved := false
		for _, a := range give {
			if sorted[a] == nil {
				l := []heldCopy{}
				for _, hc := range ls.held[a] {
					if p.movable(hc.part) && p.settled(int(hc.part)) && ls.hq[hc.slot] > 0 {
						l = append(l, hc)
					}
				}
				sort.SliceStable(l, func(x, y int) bool { return ls.hq[l[x].slot] < ls.hq[l[y].slot] })
				sorted[a] = l
			}
			best, bestTo, bestSrc, bestGain := heldCopy{part: -1}, -1, -1, 0.0
			bestSrcID := ""
			for _, b := range take {
				if !p.budget(b, -1) {
					continue
				}
				hc, src, srcID, gain := p.bestCopyFor(a, b, sorted[a])
				if hc.part >= 0 && (gain > bestGain || gain == bestGain && ls.hs[hc.slot] < ls.hs[best.slot]) {
					best, bestTo, bestSrc, bestSrcID, bestGain = hc, b, src, srcID, gain
				}
			}
			if best.part < 0 {
				continue
			}
			figure := "load"
			if !ls.byLoad {
				figure = "size"
			}
			why := []string{
				fmt.Sprintf("%s: %s carries %s (mean %s, band ±%s); the copy carries %s", figure, p.nodes[a].id, num(ls.load[a]), num(ls.mean[a]), num(ls.bw[a]), num(ls.hq[best.slot])),
				fmt.Sprintf("%s: %s carries %s (mean %s): the move brings both closer to their means", figure, p.nodes[bestTo].id, num(ls.load[bestTo]), num(ls.mean[bestTo])),
			}
			p.moveCopyForLoad(best, a, bestTo, bestSrc, bestSrcID, PriorityBalanceLoad, why)
			moved = true
			break
		}
		if !moved {
			return
		}
	}
}

// bestCopyFor is the copy of a's (l, sorted by quantity) whose move to b
// shrinks the distance to the means most and passes the hard constraints
// (b does not hold it, migration slots, zone spread, b's disk), looking at
// the maxLoadCandidates copies nearest the ideal quantity; part -1 if none.
func (p *planner) bestCopyFor(a, b int, l []heldCopy) (heldCopy, int, string, float64) {
	ls := p.ls
	ea, eb := ls.excess(a), -ls.excess(b)
	limit := 2 * math.Min(ea, eb) // a copy must carry less than this
	ideal := math.Min((ea+eb)/2, limit)
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
		gain, ok := ls.converges(a, b, ls.hq[hc.slot])
		if !ok {
			if ls.hq[hc.slot] >= limit {
				hi = len(l) // everything further up is too much too
			}
			continue
		}
		if p.touched[hc.part] {
			continue
		}
		part := &p.c.Partitions[hc.part]
		if part.Holds(p.nodes[b].id) || ls.diskUsed[b]+float64(ls.hs[hc.slot]) > ls.diskLimit(b, ls.pol.DiskHigh) {
			continue
		}
		src, srcID := p.sourceFor(part)
		if !p.budget(b, src) {
			continue
		}
		copies, covered := p.zoneCounts(part, p.nodes[a].id)
		if !p.zoneOK(b, copies, covered) {
			continue
		}
		return hc, src, srcID, gain
	}
	return heldCopy{part: -1}, -1, "", 0
}

// num prints a figure briefly.
func num(v float64) string { return fmt.Sprintf("%.1f", v) }

// bytesText prints a size in bytes with a binary unit.
func bytesText(v float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	u := 0
	for v >= 1024 && u < len(units)-1 {
		v /= 1024
		u++
	}
	if u == 0 {
		return fmt.Sprintf("%.0f B", v)
	}
	return fmt.Sprintf("%.1f %s", v, units[u])
}
