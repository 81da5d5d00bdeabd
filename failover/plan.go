package failover

import (
	"fmt"
	"math"
	"sort"
	"time"
)

// The planner.
//
// Plan looks at the whole table once and proposes, in priority order:
// promotions (primary failed, leaving, left, unknown, app-unhealthy or
// missing), a new copy for a partition that has no copy able to lead,
// replacements of failed and leaving holders, missing copies, cancellation
// of broken or timed-out migrations (completion with Limits.Instant),
// removal of failed holders, removal of surplus copies, zone-spread moves,
// replica rebalancing and primary rebalancing. Decisions:
//
//   - One action per partition per plan, each naming the partition's epoch
//     at planning time (see below); multi-step work takes several plans.
//   - Zone spread (hard, checked before load): for k copies over z zones
//     that have nodes taking copies, at most one copy per zone when k ≤ z,
//     otherwise every zone holds one and none more than k−z+1. It is
//     relaxed only when no node satisfies it at all (never merely because
//     the fitting node is throttled: then the copy waits).
//   - An app-unhealthy node keeps the copies it has (no churn on a health
//     flap) but takes no new ones and leads nothing; its primaries move to
//     healthy replicas, or, when no replica can lead, to a new copy that
//     replaces it. Only when no healthy node can take a copy at all does a
//     copy of a failed or leaving holder go to an app-unhealthy node.
//   - A partition whose copies are all gone gets a migration with no
//     Source that Replaces the dead primary: when it completes, the target
//     becomes the (empty) primary. With ReplaceDelay it waits for the delay,
//     since the old holder may come back with the data. A partition marked
//     DataLost (its last copy was reported lost by its app, see lost.go)
//     never does: it stays without a primary, and counts in no node's
//     share, until a holder that has the data is back.
//   - A copy's source is the partition's primary, or, when the primary's
//     migration slots are taken, another holder with a free slot, a live
//     replica before a leaving holder (sourceFor): a copy occupies its
//     source as much as its target, and restoring a failed node's copies
//     should not queue behind the few primaries that are busy. Targets
//     likewise are the best unthrottled node that passes the hard
//     constraints.
//   - Rebalancing starts only when no partition needs a copy (restoration
//     fills the nodes below their share anyway), and primaries are
//     rebalanced only when no copy is moving or in flight.
//   - Balance guarantee, once converged: every node that takes copies holds
//     floor(share) or ceil(share) copies and leads floor or ceil of its
//     primary share, the shares being weight-proportional after the hard
//     caps (see quota.go). For equal weights in one zone that is "within
//     one of the mean"; with weights or unequal zones it is within one of
//     the capped weighted share, which can differ from total×w/W when a
//     node's share would exceed one copy of every partition or a zone's
//     share would break the zone spread rule. A join or leave moves the
//     optimum number of copies when direct moves suffice (always with one
//     zone and equal weights); a chain of moves (rebalanceChains) is used
//     only when no direct move exists.

// Limits bound how much the planner changes at once.
type Limits struct {
	// MaxMigrationsPerNode bounds the migrations in flight that one node
	// takes part in, as target or as source (copying costs both ends).
	// Zero or negative means no limit. Default 2.
	MaxMigrationsPerNode int
	// MaxMigrations bounds the migrations in flight in the whole cluster.
	// Zero or negative means no limit. Default 32.
	MaxMigrations int
	// MigrationTimeout, in nanoseconds: a migration in flight for longer
	// than this (PlanInput.Ages) is cancelled and re-planned. Zero means
	// never.
	MigrationTimeout int64
	// ReplaceDelay, in nanoseconds: the copies held by a node failed for
	// less than this long (PlanInput.Ages) are not re-created elsewhere yet
	// (a node back in time resyncs instead of being copied in full).
	// Promotions never wait. Default 0.
	ReplaceDelay int64
	// Instant is set when no webhook URL is configured: nobody will
	// acknowledge a copy, so a copy is done as soon as it is started. Plan
	// then proposes ActionCompleteMigration for every migration in flight
	// whose target is alive (at the finish-migration priority). A new copy
	// therefore takes two plans: the start, then (once the start is
	// committed) its completion. Plan never chains both on one partition.
	Instant bool
}

// DefaultLimits returns the limits of the issue: 2 migrations per node, 32
// in the cluster, a 10 minute migration timeout, no replace delay.
func DefaultLimits() Limits {
	return Limits{
		MaxMigrationsPerNode: 2,
		MaxMigrations:        32,
		MigrationTimeout:     int64(10 * time.Minute),
	}
}

// PlanInput is everything Plan looks at. Plan reads Cluster and never
// modifies it.
type PlanInput struct {
	// Cluster is the state to plan for.
	Cluster *Cluster
	// Ages are how long each migration has been in flight and each failed
	// member failed, for the migration timeout and the replace delay:
	// durations measured by the caller on one monotonic clock, never
	// differences of the state's wall-clock timestamps (see Ages).
	Ages Ages
	// Seed is the only source of randomness: it breaks ties between
	// otherwise equal candidates (RavenDB-style spreading of primaries).
	Seed int64
	// Limits bound the migrations proposed.
	Limits Limits
}

// Action priorities, highest first. Within the replace and add classes the
// priority rises by the number of copies the partition is missing, so that
// the partitions closest to data loss get the migration budget first.
const (
	// PriorityPromote: a partition without a usable primary cannot take
	// writes; nothing is more urgent, and promotions cost no copy.
	PriorityPromote = 1000
	// PriorityLeaderCopy: a partition with no copy that can lead needs a
	// new copy that will become its primary.
	PriorityLeaderCopy = 950
	// PriorityReplace: re-create a copy of a failed or leaving holder.
	PriorityReplace = 800
	// PriorityAdd: add a copy that is simply missing.
	PriorityAdd = 700
	// PriorityFinish: cancel a broken or timed-out migration, or (Instant)
	// complete one.
	PriorityFinish = 600
	// PriorityRemoveFailed: drop a failed holder once it is replaced or
	// cannot be.
	PriorityRemoveFailed = 500
	// PriorityRemoveSurplus: drop a live copy above the replication factor.
	PriorityRemoveSurplus = 400
	// PriorityZoneSpread: move a copy so that the partition spans more zones.
	PriorityZoneSpread = 300
	// PriorityRebalanceReplica: move a copy from a node above its quota to
	// one below it.
	PriorityRebalanceReplica = 200
	// PriorityRebalancePrimary: move a primary role to a node below its
	// primary quota.
	PriorityRebalancePrimary = 100
)

// One action per partition per plan.
//
// Every action names its partition's epoch at planning time, and Plan
// proposes at most one action per partition: each applied action raises the
// epoch, so a second action for the same partition would be stale anyway.
// Work that needs several steps on one partition (cancel then replace,
// promote then replace the old primary, start then complete) takes several
// plans; the leader re-plans after every commit.

// holderState classifies one copy of a partition.
type holderState uint8

const (
	holderLive    holderState = iota // alive or suspect: counts, may be source
	holderWaiting                    // failed within ReplaceDelay: counts, not a source
	holderLeaving                    // leaving: to be re-created, may be a source
	holderGone                       // failed past the delay, left or unknown
)

type nodeInfo struct {
	id      string
	zone    int // index into planner.zoneNames
	weight  int
	hold    bool // alive or suspect
	lead    bool // hold and app healthy
	take    bool // may receive new copies: lead (an app-unhealthy node keeps what it has)
	waiting bool // failed less than ReplaceDelay ago
	leaving bool
	tie     uint64 // seeded tie-break
}

type planner struct {
	hbuf  []string // scratch for holders, so that the hot loops do not allocate
	dead  []string // scratch for planCopies
	needs int      // partitions that need a new copy (placed or not)

	c     *Cluster
	ages  Ages
	seed  int64
	lim   Limits
	nodes []nodeInfo
	idx   map[string]int

	zoneNames []string
	rule      zoneRule
	k         int // copies each partition should have

	copies    []int // effective copies per node (in-flight targets in, replaced holders out)
	held      []int // partitions a live node actually holds
	prims     []int
	busy      []int // migrations in flight per node, as target or source
	inflight  int
	lost      int // partitions marked DataLost without a primary
	copyShare []float64
	copyQuota []int
	primShare []float64
	primQuota []int

	touched  []bool
	actions  []Action
	copyWork bool // a migration or removal was planned or is in flight

	zc []int // scratch: copies per zone of one partition
}

// Plan returns the actions that move the cluster towards health and
// balance, at most one per partition, highest priority first (ties in
// partition order). It is pure and deterministic: the same input gives the
// same output. See the package documentation of each step in the code and
// the Priority constants for the order.
func Plan(in PlanInput) []Action {
	p := newPlanner(in.Cluster, in.Ages, in.Seed, in.Limits)
	if p == nil {
		return nil
	}
	p.planPartitions(false)
	if p.needs == 0 {
		// Copies are still being restored: they go to the nodes below
		// their share anyway, and rebalancing now would move copies twice.
		p.rebalanceCopies()
	}
	if !p.copyWork {
		p.rebalancePrimaries()
	}
	return p.sorted()
}

// PlanFailure returns the promotions that go with marking node failed:
// for every partition node leads, the best live, app-healthy replica
// becomes primary. The actions name the current epochs, so the caller can
// put them in the same raft entry as the status change (CmdSetStatus with
// Actions). Copies are not re-created here; the next Plan does that.
func PlanFailure(c *Cluster, node string, seed int64) []Action {
	return PlanStatus(c, node, StatusFailed, seed)
}

// PlanStatus is PlanFailure for any status: the promotions needed once node
// has status (failed, leaving, left). It returns nil for an unknown node.
func PlanStatus(c *Cluster, node string, status MemberStatus, seed int64) []Action {
	m, ok := c.Members[node]
	if !ok || !c.Bootstrapped {
		return nil
	}
	view := *c
	view.Members = make(map[string]Member, len(c.Members))
	for id, mm := range c.Members {
		view.Members[id] = mm
	}
	m.Status = status
	view.Members[node] = m
	p := newPlanner(&view, Ages{}, seed, Limits{})
	if p == nil {
		return nil
	}
	p.planPartitions(true)
	return p.sorted()
}

func newPlanner(c *Cluster, ages Ages, seed int64, lim Limits) *planner {
	if c == nil || !c.Bootstrapped {
		return nil
	}
	ids := c.MemberIDs()
	p := &planner{c: c, ages: ages, seed: seed, lim: lim, idx: make(map[string]int, len(ids))}
	p.nodes = make([]nodeInfo, len(ids))
	zoneIdx := map[string]int{}
	var zoneNames []string
	for i, id := range ids {
		m := c.Members[id]
		n := nodeInfo{id: id, weight: m.EffectiveWeight(), hold: m.CanHold(), lead: m.CanLead(), leaving: m.Status == StatusLeaving}
		n.take = n.lead
		n.waiting = m.Status == StatusFailed && lim.ReplaceDelay > 0 && int64(ages.failed(id)) < lim.ReplaceDelay
		n.tie = mix(uint64(seed), hashString(id))
		if n.take {
			if _, ok := zoneIdx[m.Zone]; !ok {
				zoneIdx[m.Zone] = -1
				zoneNames = append(zoneNames, m.Zone)
			}
		}
		p.nodes[i] = n
		p.idx[id] = i
	}
	sort.Strings(zoneNames)
	for i, z := range zoneNames {
		zoneIdx[z] = i
	}
	p.zoneNames = zoneNames
	for i := range p.nodes {
		if z, ok := zoneIdx[c.Members[ids[i]].Zone]; ok && z >= 0 {
			p.nodes[i].zone = z
		} else {
			// A zone with no node that takes copies: give it its own index
			// past the real ones so it never counts as covering a zone.
			p.nodes[i].zone = len(zoneNames) + i
		}
	}
	eligible := 0
	for _, n := range p.nodes {
		if n.hold {
			eligible++
		}
	}
	p.k = c.Settings.ReplicationFactor
	if eligible < p.k {
		p.k = eligible
	}
	p.rule = newZoneRule(p.k, len(zoneNames))
	p.zc = make([]int, len(zoneNames)+len(p.nodes))
	p.touched = make([]bool, len(c.Partitions))
	p.count()
	p.computeQuotas()
	return p
}

// holders is part.Holders() into a scratch buffer, valid until the next call.
func (p *planner) holders(part *Partition) []string {
	p.hbuf = p.hbuf[:0]
	if part.Primary != "" {
		p.hbuf = append(p.hbuf, part.Primary)
	}
	p.hbuf = append(p.hbuf, part.Replicas...)
	return p.hbuf
}

func (p *planner) state(id string) (int, holderState) {
	i, ok := p.idx[id]
	if !ok {
		return -1, holderGone
	}
	n := &p.nodes[i]
	switch {
	case n.hold:
		return i, holderLive
	case n.waiting:
		return i, holderWaiting
	case n.leaving:
		return i, holderLeaving
	}
	return i, holderGone
}

// replacedBy reports whether a live migration of part replaces holder.
func (p *planner) replaced(part *Partition, holder string) bool {
	for _, m := range part.Migrations {
		if m.Replaces == holder && p.targetLive(m) {
			return true
		}
	}
	return false
}

func (p *planner) targetLive(m Migration) bool {
	i, ok := p.idx[m.Target]
	return ok && p.nodes[i].hold
}

// count gathers the per-node loads in one pass over the table.
func (p *planner) count() {
	n := len(p.nodes)
	p.copies = make([]int, n)
	p.held = make([]int, n)
	p.prims = make([]int, n)
	p.busy = make([]int, n)
	for pi := range p.c.Partitions {
		part := &p.c.Partitions[pi]
		if part.DataLost && part.Primary == "" {
			p.lost++
		}
		if part.Primary != "" {
			if i, ok := p.idx[part.Primary]; ok {
				p.prims[i]++
			}
		}
		p.countHolder(part, part.Primary)
		for _, r := range part.Replicas {
			p.countHolder(part, r)
		}
		for _, m := range part.Migrations {
			if !p.targetLive(m) {
				continue
			}
			t := p.idx[m.Target]
			p.copies[t]++
			p.busy[t]++
			if s, ok := p.idx[m.Source]; ok {
				p.busy[s]++
			}
			p.inflight++
			p.copyWork = true
		}
	}
}

func (p *planner) countHolder(part *Partition, h string) {
	if h == "" {
		return
	}
	i, ok := p.idx[h]
	if !ok {
		return
	}
	p.held[i]++
	if len(part.Migrations) == 0 || !p.replaced(part, h) {
		p.copies[i]++
	}
}

func (p *planner) computeQuotas() {
	n := len(p.nodes)
	weight := make([]int, n)
	zoneOf := make([]int, n)
	tie := make([]uint64, n)
	var takers, leaders []int
	frozen := 0
	for i, nd := range p.nodes {
		weight[i] = nd.weight
		zoneOf[i] = nd.zone
		tie[i] = nd.tie
		if nd.take {
			takers = append(takers, i)
		} else if nd.hold {
			frozen += p.copies[i]
		}
		if nd.lead {
			leaders = append(leaders, i)
		}
	}
	// A partition whose data is lost gets no copies: it is in nobody's share.
	holdable := len(p.c.Partitions) - p.lost
	p.copyShare, p.copyQuota = copyShares(holdable, p.k, takers, weight, zoneOf, len(p.zoneNames), frozen, p.copies, tie)
	for i, nd := range p.nodes {
		if nd.hold && !nd.take {
			// App-unhealthy: keeps what it has, takes nothing new.
			p.copyShare[i] = float64(p.copies[i])
			p.copyQuota[i] = p.copies[i]
		}
	}
	// Primaries: every partition with a copy on a leader-capable node.
	total := 0
	for pi := range p.c.Partitions {
		for _, h := range p.holders(&p.c.Partitions[pi]) {
			if i, ok := p.idx[h]; ok && p.nodes[i].lead {
				total++
				break
			}
		}
	}
	p.primShare, p.primQuota = primaryShares(total, leaders, weight, p.held, p.prims, tie)
}

// budget reports whether one more migration between target and source fits
// the limits.
func (p *planner) budget(target, source int) bool {
	if p.lim.MaxMigrations > 0 && p.inflight >= p.lim.MaxMigrations {
		return false
	}
	if per := p.lim.MaxMigrationsPerNode; per > 0 {
		if p.busy[target] >= per {
			return false
		}
		if source >= 0 && p.busy[source] >= per {
			return false
		}
	}
	return true
}

func (p *planner) budgetLeft() bool {
	return p.lim.MaxMigrations <= 0 || p.inflight < p.lim.MaxMigrations
}

func (p *planner) emit(a Action) {
	p.touched[a.Partition] = true
	p.actions = append(p.actions, a)
}

// sorted returns the actions by priority, highest first, stable otherwise.
func (p *planner) sorted() []Action {
	sort.SliceStable(p.actions, func(i, j int) bool { return p.actions[i].Priority > p.actions[j].Priority })
	return p.actions
}

// need is a partition that needs a new copy; targets are chosen after all
// needs are known so that the migration budget goes to the most urgent.
type need struct {
	part     int
	priority int
	replaces string // holder the copy replaces ("" to add)
	lead     bool   // the new copy must be able to lead
	reasons  []string
	// present, for replace and add needs whose reasons are only written
	// once a target is found (most needs wait for budget; formatting their
	// reasons up front would dominate the cost of a plan).
	present int
	kind    needKind
}

type needKind uint8

const (
	needOther needKind = iota
	needReplace
	needAdd
)

// reasonsOf writes a need's reasons.
func (p *planner) reasonsOf(nd need) []string {
	switch nd.kind {
	case needReplace:
		return []string{fmt.Sprintf("replace %s (%s)", nd.replaces, p.describe(nd.replaces)), fmt.Sprintf("%d of %d copies", nd.present, p.k)}
	case needAdd:
		return []string{fmt.Sprintf("missing copy: %d of %d", nd.present, p.k)}
	}
	return nd.reasons
}

// planPartitions walks the table once, in partition order, and plans each
// partition's most urgent step. With promotionsOnly it stops after the
// promotions (PlanStatus).
func (p *planner) planPartitions(promotionsOnly bool) {
	var needs []need
	for pi := range p.c.Partitions {
		part := &p.c.Partitions[pi]
		if p.planPrimary(part, promotionsOnly, &needs) || promotionsOnly {
			continue
		}
		if p.planMigrations(part) {
			continue
		}
		p.planCopies(part, &needs)
	}
	if promotionsOnly {
		return
	}
	p.needs = len(needs)
	sort.SliceStable(needs, func(i, j int) bool { return needs[i].priority > needs[j].priority })
	for _, nd := range needs {
		if !p.budgetLeft() {
			break
		}
		p.placeCopy(nd)
	}
}

func (p *planner) describe(id string) string {
	i, ok := p.idx[id]
	if !ok {
		return "unknown"
	}
	m := p.c.Members[p.nodes[i].id]
	if m.CanHold() && m.AppUnhealthy {
		return "app-unhealthy"
	}
	return string(m.Status)
}

// planPrimary handles a partition without a usable primary. It reports
// whether it planned something (or must wait) for the partition.
func (p *planner) planPrimary(part *Partition, promotionsOnly bool, needs *[]need) bool {
	if part.Primary != "" {
		if i, ok := p.idx[part.Primary]; ok && p.nodes[i].lead {
			return false
		}
	}
	why := "no primary"
	if part.Primary != "" {
		why = fmt.Sprintf("primary %s %s", part.Primary, p.describe(part.Primary))
	}
	// The best live, app-healthy replica: the one furthest below its
	// primary quota, then the seeded tie-break, then ID.
	best := -1
	for _, r := range part.Replicas {
		i, ok := p.idx[r]
		if !ok || !p.nodes[i].lead {
			continue
		}
		if best < 0 || p.betterLeader(i, best, part.ID) {
			best = i
		}
	}
	if best >= 0 {
		p.promote(part, best, PriorityPromote, why)
		return true
	}
	// No app-healthy replica. A dead primary is worse than an app-unhealthy
	// one: promote a live replica whose app is down, if any.
	primLive := false
	if i, ok := p.idx[part.Primary]; ok && p.nodes[i].hold {
		primLive = true
	}
	if !primLive {
		for _, r := range part.Replicas {
			if i, ok := p.idx[r]; ok && p.nodes[i].hold {
				p.promote(part, i, PriorityPromote, why, "no app-healthy replica: "+r+" holds the data")
				return true
			}
		}
	}
	if promotionsOnly {
		return true
	}
	if part.DataLost && p.source(part) < 0 && !p.hasLeavingSource(part) {
		// Its last copy was lost by its app: no data is left to copy, and an
		// empty primary would pass off lost writes as never made.
		return true
	}
	// A copy that can lead is on its way: wait for it.
	for _, m := range part.Migrations {
		if i, ok := p.idx[m.Target]; ok && p.nodes[i].lead {
			return false
		}
	}
	// Only copies that cannot lead are left (or none): a new copy on a
	// node that can lead, replacing the primary, which it then becomes.
	if part.Primary != "" {
		_, st := p.state(part.Primary)
		if st == holderWaiting && !primLive {
			return true // the old primary may come back: wait for ReplaceDelay
		}
	}
	for _, r := range part.Replicas {
		if _, st := p.state(r); st == holderWaiting {
			return true
		}
	}
	reasons := []string{why}
	if len(part.Holders()) == 0 || p.source(part) < 0 && !p.hasLeavingSource(part) {
		reasons = append(reasons, "all copies lost: new empty primary")
	} else {
		reasons = append(reasons, "no replica can lead: new copy becomes primary")
	}
	*needs = append(*needs, need{part: part.ID, priority: PriorityLeaderCopy, replaces: part.Primary, lead: true, reasons: reasons})
	return true
}

func (p *planner) hasLeavingSource(part *Partition) bool {
	for _, h := range part.Holders() {
		if _, st := p.state(h); st == holderLeaving {
			return true
		}
	}
	return false
}

func (p *planner) betterLeader(i, j, part int) bool {
	di := p.prims[i] - p.primQuota[i]
	dj := p.prims[j] - p.primQuota[j]
	if di != dj {
		return di < dj
	}
	ti, tj := mix(p.nodes[i].tie, uint64(part)), mix(p.nodes[j].tie, uint64(part))
	if ti != tj {
		return ti < tj
	}
	return p.nodes[i].id < p.nodes[j].id
}

func (p *planner) promote(part *Partition, i, prio int, reasons ...string) {
	nd := p.nodes[i]
	reasons = append(reasons, fmt.Sprintf("%s leads %d (share %.1f)", nd.id, p.prims[i], p.primShare[i]))
	if old, ok := p.idx[part.Primary]; ok {
		p.prims[old]--
	}
	p.prims[i]++
	p.emit(Action{Kind: ActionPromote, Partition: part.ID, Epoch: part.Epoch, Node: nd.id, Priority: prio, Reasons: reasons})
}

// planMigrations cancels broken or timed-out migrations and, with Instant,
// completes live ones.
func (p *planner) planMigrations(part *Partition) bool {
	for _, m := range part.Migrations {
		var why string
		if i, ok := p.idx[m.Target]; !ok || !p.nodes[i].hold {
			why = fmt.Sprintf("target %s %s", m.Target, p.describe(m.Target))
		} else if age := p.ages.migration(m.ID); p.lim.MigrationTimeout > 0 && int64(age) > p.lim.MigrationTimeout {
			why = fmt.Sprintf("timed out after %s", age)
		}
		if why != "" {
			p.copyWork = true
			p.emit(Action{Kind: ActionCancelMigration, Partition: part.ID, Epoch: part.Epoch, Node: m.Target, MigrationID: m.ID, Priority: PriorityFinish, Reasons: []string{why}})
			return true
		}
		if p.lim.Instant {
			p.emit(Action{Kind: ActionCompleteMigration, Partition: part.ID, Epoch: part.Epoch, Node: m.Target, MigrationID: m.ID, Priority: PriorityFinish, Reasons: []string{"instant: no webhook acknowledges copies"}})
			return true
		}
	}
	return false
}

// planCopies restores the copy count and zone spread of one partition.
func (p *planner) planCopies(part *Partition, needs *[]need) {
	live, present := 0, 0
	dead := p.dead[:0] // holders to re-create: gone or leaving, not yet replaced
	defer func() { p.dead = dead[:0] }()
	for _, h := range p.holders(part) {
		_, st := p.state(h)
		repl := len(part.Migrations) > 0 && p.replaced(part, h)
		switch st {
		case holderLive:
			if !repl {
				live++
				present++
			}
		case holderWaiting:
			if !repl {
				present++
			}
		default:
			if !repl {
				dead = append(dead, h)
			}
		}
	}
	for _, m := range part.Migrations {
		if p.targetLive(m) {
			present++
		}
	}
	deficit := p.k - present
	switch {
	case deficit > 0 && len(dead) > 0:
		*needs = append(*needs, need{part: part.ID, priority: PriorityReplace + deficit, replaces: dead[0], kind: needReplace, present: present})
	case deficit > 0:
		*needs = append(*needs, need{part: part.ID, priority: PriorityAdd + deficit, kind: needAdd, present: present})
	case len(dead) > 0:
		h := dead[0]
		if h == part.Primary {
			return // a promotion comes first
		}
		p.copyWork = true
		p.emit(Action{Kind: ActionRemoveReplica, Partition: part.ID, Epoch: part.Epoch, Node: h, Priority: PriorityRemoveFailed,
			Reasons: []string{fmt.Sprintf("%s %s", h, p.describe(h)), fmt.Sprintf("%d of %d copies without it", present, p.k)}})
	case live > p.k && len(part.Migrations) == 0:
		// Surplus: drop the replica on the node furthest above its quota.
		best := -1
		for _, r := range part.Replicas {
			i, ok := p.idx[r]
			if !ok || !p.nodes[i].hold {
				continue
			}
			if best < 0 || p.copies[i]-p.copyQuota[i] > p.copies[best]-p.copyQuota[best] ||
				p.copies[i]-p.copyQuota[i] == p.copies[best]-p.copyQuota[best] && p.nodes[i].id < p.nodes[best].id {
				best = i
			}
		}
		if best < 0 {
			return
		}
		p.copies[best]--
		p.copyWork = true
		p.emit(Action{Kind: ActionRemoveReplica, Partition: part.ID, Epoch: part.Epoch, Node: p.nodes[best].id, Priority: PriorityRemoveSurplus,
			Reasons: []string{fmt.Sprintf("surplus copy: %d live of %d", live, p.k), fmt.Sprintf("%s holds %d (quota %d)", p.nodes[best].id, p.copies[best]+1, p.copyQuota[best])}})
	case len(part.Migrations) == 0 && len(p.zoneNames) > 1:
		p.planZoneSpread(part, needs)
	}
}

// zoneCounts fills p.zc with the copies of part per zone (live and waiting
// holders, live migration targets; holders replaced by a migration and
// except are left out) and returns the number of copies and covered zones.
func (p *planner) zoneCounts(part *Partition, except string) (copies, covered int) {
	for i := range p.zc {
		p.zc[i] = 0
	}
	add := func(i int) {
		if p.zc[p.nodes[i].zone] == 0 && p.nodes[i].zone < len(p.zoneNames) {
			covered++
		}
		p.zc[p.nodes[i].zone]++
		copies++
	}
	for _, h := range p.holders(part) {
		if h == except {
			continue
		}
		i, st := p.state(h)
		if (st == holderLive || st == holderWaiting) && !(len(part.Migrations) > 0 && p.replaced(part, h)) {
			add(i)
		}
	}
	for _, m := range part.Migrations {
		if p.targetLive(m) {
			add(p.idx[m.Target])
		}
	}
	return copies, covered
}

// zoneOK reports whether a new copy on node i keeps part within the zone
// spread rule, given p.zc, copies and covered from zoneCounts.
func (p *planner) zoneOK(i, copies, covered int) bool {
	z := p.nodes[i].zone
	if z >= len(p.zoneNames) {
		return false
	}
	if p.zc[z] >= p.rule.maxPer {
		return false
	}
	if p.zc[z] > 0 {
		// Adding to a covered zone must leave room to cover the rest.
		want := p.rule.zones
		if p.rule.k < want {
			want = p.rule.k
		}
		if want-covered > p.k-copies-1 {
			return false
		}
	}
	return true
}

// planZoneSpread moves a copy out of a crowded zone when a node in an
// uncovered zone could take it.
func (p *planner) planZoneSpread(part *Partition, needs *[]need) {
	copies, covered := p.zoneCounts(part, "")
	want := p.rule.zones
	if p.rule.k < want {
		want = p.rule.k
	}
	if copies > p.k {
		copies = p.k
	}
	if covered >= want || covered >= copies {
		return
	}
	// The copy to move: in the most crowded zone, a replica if possible,
	// on the node furthest above its quota.
	var from string
	bestScore := 0
	for _, h := range part.Holders() {
		i, st := p.state(h)
		if st != holderLive {
			continue
		}
		z := p.nodes[i].zone
		crowd := p.zc[z]
		if z >= len(p.zoneNames) {
			crowd = 1 << 20 // a zone no taker is in: move away first
		}
		if crowd < 2 {
			continue
		}
		score := crowd*4 + boolInt(h != part.Primary)*2
		if from == "" || score > bestScore {
			from, bestScore = h, score
		}
	}
	if from == "" {
		return
	}
	// Is there a node in an uncovered zone that could take it?
	for i, nd := range p.nodes {
		if nd.take && nd.zone < len(p.zoneNames) && p.zc[nd.zone] == 0 && !part.Holds(nd.id) {
			*needs = append(*needs, need{part: part.ID, priority: PriorityZoneSpread, replaces: from,
				reasons: []string{fmt.Sprintf("zone spread: zone %q has no copy", p.zoneNames[nd.zone])}})
			_ = i
			return
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// source picks the node to copy part from: the primary if it is live, else
// a live replica; -1 if none.
func (p *planner) source(part *Partition) int {
	if i, st := p.state(part.Primary); part.Primary != "" && st == holderLive {
		return i
	}
	for _, r := range part.Replicas {
		if i, st := p.state(r); st == holderLive {
			return i
		}
	}
	return -1
}

// sourceFor picks the holder to copy part from, and reports whether a
// source is needed at all (-1 and "" when no holder has the data). In order
// of preference: the primary, the live replicas in replica order, then the
// leaving holders (they still have the data); the first of them with a free
// migration slot (MaxMigrationsPerNode) wins. When all are busy it returns
// the first, so that the caller's budget check makes the copy wait.
//
// Copying from a replica rather than only from the primary matters once
// several copies are to be made: a copy occupies its source as much as its
// target, and a primary that already sends two copies would otherwise hold
// back every other copy of the partitions it leads. Every holder has the
// partition (a replica is a copy its app acknowledged), and the app is told
// the source of each copy.
func (p *planner) sourceFor(part *Partition) (int, string) {
	first := -1
	try := func(i int) bool {
		if first < 0 {
			first = i
		}
		per := p.lim.MaxMigrationsPerNode
		return per <= 0 || p.busy[i] < per
	}
	if i, st := p.state(part.Primary); part.Primary != "" && st == holderLive && try(i) {
		return i, part.Primary
	}
	for _, r := range part.Replicas {
		if i, st := p.state(r); st == holderLive && try(i) {
			return i, r
		}
	}
	for _, h := range part.Holders() {
		if i, st := p.state(h); st == holderLeaving && try(i) {
			return i, h
		}
	}
	if first < 0 {
		return -1, ""
	}
	return first, p.nodes[first].id
}

// placeCopy chooses the target of one new copy and emits the migration.
func (p *planner) placeCopy(nd need) {
	part := &p.c.Partitions[nd.part]
	src, srcID := p.sourceFor(part)
	if src >= 0 && p.lim.MaxMigrationsPerNode > 0 && p.busy[src] >= p.lim.MaxMigrationsPerNode {
		return
	}
	except := ""
	if nd.replaces != "" {
		if i, st := p.state(nd.replaces); i >= 0 && st == holderLive {
			except = nd.replaces // moving a live copy: its zone frees up
		}
	}
	t, reasons := p.bestTarget(part, except, nd.lead, src, false)
	if t < 0 {
		// No node with a healthy app can take it. Rather than lose the
		// copy (a leaving or failed holder), put it on a live node whose
		// app is unhealthy; never move a live primary that way (two such
		// nodes would pass the partition back and forth).
		if i, st := p.state(nd.replaces); nd.lead && nd.replaces != "" && i >= 0 && st == holderLive {
			return
		}
		if t, reasons = p.bestTarget(part, except, false, src, true); t < 0 {
			return
		}
	}
	p.startMigration(part, t, src, srcID, nd.replaces, nd.priority, append(p.reasonsOf(nd), reasons...))
}

func (p *planner) startMigration(part *Partition, t, src int, srcID, replaces string, prio int, reasons []string) {
	p.copies[t]++
	p.busy[t]++
	if src >= 0 {
		p.busy[src]++
	}
	if i, st := p.state(replaces); replaces != "" && i >= 0 && (st == holderLive) {
		p.copies[i]--
	}
	p.inflight++
	p.copyWork = true
	p.emit(Action{Kind: ActionStartMigration, Partition: part.ID, Epoch: part.Epoch, Node: p.nodes[t].id, Source: srcID, Replaces: replaces, Priority: prio, Reasons: reasons})
}

// bestTarget scores the candidates for a new copy of part: hard constraints
// (takes copies, does not hold or receive part, budget, zone spread), then
// load against quota, then the seeded tie-break and ID.
//
// With unhealthy set, the candidates are instead the live nodes whose app is
// unhealthy (the last resort of placeCopy).
func (p *planner) bestTarget(part *Partition, except string, lead bool, src int, unhealthy bool) (int, []string) {
	copies, covered := p.zoneCounts(part, except)
	best, bestZone, zoneBlocked := -1, false, false
	for i := range p.nodes {
		nd := &p.nodes[i]
		if unhealthy {
			if !nd.hold || nd.take {
				continue
			}
		} else if !nd.take || (lead && !nd.lead) {
			continue
		}
		if part.Holds(nd.id) {
			continue
		}
		if _, busy := part.MigrationTo(nd.id); busy {
			continue
		}
		zok := p.zoneOK(i, copies, covered)
		if !p.budget(i, src) {
			// Throttled now; if it keeps the zones spread, wait for it
			// rather than settle for a node that does not.
			zoneBlocked = zoneBlocked || zok
			continue
		}
		if best < 0 || zok && !bestZone || zok == bestZone && p.lessLoaded(i, best, part.ID) {
			best, bestZone = i, zok
		}
	}
	if best < 0 || !bestZone && zoneBlocked {
		return -1, nil
	}
	nd := p.nodes[best]
	reasons := []string{fmt.Sprintf("%s holds %d (share %.1f)", nd.id, p.copies[best], p.copyShare[best])}
	if unhealthy {
		reasons = append(reasons, "no app-healthy node can take it: "+nd.id+" (app-unhealthy) keeps the data")
	}
	if len(p.zoneNames) > 1 {
		if bestZone {
			reasons = append(reasons, fmt.Sprintf("zone spread: zone %q", p.zoneNames[nd.zone]))
		} else {
			reasons = append(reasons, "zone spread impossible")
		}
	}
	return best, reasons
}

// lessLoaded: further below quota first, then lower copies per weight,
// then the seeded tie-break, then ID.
func (p *planner) lessLoaded(i, j, part int) bool {
	di := p.copyQuota[i] - p.copies[i]
	dj := p.copyQuota[j] - p.copies[j]
	if di != dj {
		return di > dj
	}
	li := p.copies[i] * p.nodes[j].weight
	lj := p.copies[j] * p.nodes[i].weight
	if li != lj {
		return li < lj
	}
	ti, tj := mix(p.nodes[i].tie, uint64(part)), mix(p.nodes[j].tie, uint64(part))
	if ti != tj {
		return ti < tj
	}
	return p.nodes[i].id < p.nodes[j].id
}

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

// hashString is FNV-1a, used only to derive seeded tie-breaks from IDs.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// mix is splitmix64 of a combined with b.
func mix(a, b uint64) uint64 {
	z := a + b*0x9E3779B97F4A7C15 + 0x9E3779B97F4A7C15
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}
