package failover

import "sort"

// The planner's view of the table, which repair and rebalance share: the
// nodes and what they may do, their loads and quotas, the migration budget,
// a partition's copies per zone, the source of a copy, and the actions
// planned so far.

// holderState classifies one copy of a partition.
type holderState uint8

const (
	holderLive    holderState = iota // alive or suspect: counts, may be source
	holderWaiting                    // failed within ReplaceDelay, or restarting: counts, not a source
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
	waiting bool // failed less than ReplaceDelay ago, or away for a planned restart
	leaving bool
	// appDown: its app is unhealthy, down or not caught up (a rejoin whose
	// node.rejoin is unacknowledged): a copy is taken from it only when no
	// other holder could give it (sourceFor).
	appDown bool
	// draining: being replaced (Member.ReplacedBy): keeps its copies and
	// primaries until they move to its replacement, takes nothing new.
	draining bool
	tie      uint64 // seeded tie-break
}

// planner is one planning pass over one table; Plan, PlanStatus, Balance
// and InitialTable each make their own.
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
	// draining counts the nodes being replaced (agent replace): without
	// any, the planner skips looking for their copies.
	draining int
	k        int // copies each default-resource partition should have

	// want is the copies each partition should have (its resource's
	// replication factor, capped by the nodes that may hold copies; 0 for a
	// retired partition), and rules the zone rule for each such count.
	want  []uint8
	rules [MaxReplicationFactor + 1]zoneRule
	// pk, prule and pclass are the copies, zone rule and placement class
	// of the partition zoneCounts last counted, which zoneOK checks a new
	// copy against.
	pk     int
	prule  zoneRule
	pclass *placementClass
	// classes are the placement classes (placement_plan.go), class the
	// class of each partition (nil: all in class 0, the default).
	classes []placementClass
	class   []int32

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

	ls *loadState // the apps' figures (load.go); nil without them
	// rt are the per-resource targets (resource_balance.go); nil with one
	// resource, or before rebalancing.
	rt *resourceTargets

	zc []int // scratch: copies per zone of one partition
}

func newPlanner(c *Cluster, ages Ages, seed int64, lim Limits) *planner {
	return newPlannerWithFigures(c, ages, seed, lim, nil, LoadPolicy{})
}

// newPlannerWithFigures is newPlanner that also weighs the apps' figures
// (load.go): a node over the disk-high threshold takes no new copies.
func newPlannerWithFigures(c *Cluster, ages Ages, seed int64, lim Limits, figs *Figures, pol LoadPolicy) *planner {
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
		n := nodeInfo{id: id, weight: m.EffectiveWeight(), hold: m.CanHold(), lead: m.CanLead(), leaving: m.Status == StatusLeaving, appDown: m.AppUnhealthy}
		n.draining = m.ReplacedBy != ""
		if n.draining {
			p.draining++
		}
		n.take = n.lead && !n.draining && !diskHigh(figs, pol, id)
		n.waiting = m.Status == StatusFailed && lim.ReplaceDelay > 0 && int64(ages.failed(id)) < lim.ReplaceDelay
		// A restarting member keeps its copies until it is back or the
		// leader marks it failed past its grace: nothing is re-created.
		n.waiting = n.waiting || m.Status == StatusRestarting
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
	p.ls = newLoadState(figs, pol, p)
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
	p.k = c.defaultReplicationFactor()
	if eligible < p.k {
		p.k = eligible
	}
	for k := range p.rules {
		p.rules[k] = newZoneRule(k, len(zoneNames))
	}
	p.buildClasses()
	p.want = make([]uint8, len(c.Partitions))
	for i := range c.Partitions {
		p.want[i] = uint8(p.classOf(i).wantOf(c.replicationFactorOf(&c.Partitions[i])))
	}
	p.zc = make([]int, len(zoneNames)+len(p.nodes))
	p.touched = make([]bool, len(c.Partitions))
	for i := range c.Partitions {
		// Not for balancing: retired, a pending child, or being split.
		part := &c.Partitions[i]
		if part.Retired || part.SplitPending || part.Splitting() {
			p.touched[i] = true
		}
	}
	p.count()
	p.computeQuotas()
	if p.ls != nil {
		p.countLoad()
	}
	return p
}

// kOf is the number of copies part should have.
func (p *planner) kOf(part *Partition) int { return int(p.want[part.ID]) }

// copySharesByFactor computes the copy shares and quotas over all
// resources: the partitions are grouped by the copies they should have
// (the zone rule depends on it), each group is shared out as copyShares
// does for one replication factor, and a node's share is the sum over the
// groups, so that a node's load counts the copies of every resource. The
// copies frozen on app-unhealthy nodes count against the largest group. A
// partition whose data is lost gets no copies: it is in nobody's share.
//
// With per-resource placements (placement_plan.go) the groups are per
// placement class and copy count: each class is shared out over the nodes
// it may use, under its own zone rule.
func (p *planner) copySharesByFactor(takers, weight, zoneOf []int, frozen int, tie []uint64) ([]float64, []int) {
	groups := make([][MaxReplicationFactor + 1]int, len(p.classes))
	for pi := range p.c.Partitions {
		part := &p.c.Partitions[pi]
		if part.DataLost && part.Primary == "" {
			continue
		}
		ci := 0
		if p.class != nil {
			ci = int(p.class[pi])
		}
		groups[ci][p.want[pi]]++
	}
	largestClass, largest, used := 0, p.k, 0
	for ci := range groups {
		for k := 1; k <= MaxReplicationFactor; k++ {
			if groups[ci][k] > 0 {
				used++
				if groups[ci][k]*k > groups[largestClass][largest]*largest {
					largestClass, largest = ci, k
				}
			}
		}
	}
	if used <= 1 && largestClass == 0 {
		return copyShares(groups[0][largest], largest, takers, weight, zoneOf, len(p.zoneNames), frozen, p.copies, tie)
	}
	share := make([]float64, len(p.nodes))
	quota := make([]int, len(p.nodes))
	for ci := range groups {
		for k := 1; k <= MaxReplicationFactor; k++ {
			if groups[ci][k] == 0 {
				continue
			}
			fz := 0
			if ci == largestClass && k == largest {
				fz = frozen
			}
			p.classShares(&p.classes[ci], groups[ci][k], k, takers, weight, fz, tie, share, quota)
		}
	}
	return share, quota
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

// replaced reports whether a live migration of part replaces holder.
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
	if ls := p.ls; ls != nil {
		// The apps' figures: each holder's slot (load.go), found here
		// rather than looked up again.
		guess := len(p.c.Partitions) * (p.c.Settings.ReplicationFactor + 1)
		ls.off = make([]int32, len(p.c.Partitions)+1)
		ls.node, ls.slotLive = make([]int32, 0, guess), make([]bool, 0, guess)
	}
	for pi := range p.c.Partitions {
		part := &p.c.Partitions[pi]
		if part.DataLost && part.Primary == "" {
			p.lost++
		}
		if p.ls != nil {
			p.ls.off[pi] = int32(len(p.ls.node))
		}
		if part.Primary != "" {
			i, ok := p.idx[part.Primary]
			if ok {
				p.prims[i]++
			}
			p.countHolder(part, part.Primary, i, ok)
		}
		for _, r := range part.Replicas {
			i, ok := p.idx[r]
			p.countHolder(part, r, i, ok)
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
	if p.ls != nil {
		p.ls.off[len(p.c.Partitions)] = int32(len(p.ls.node))
	}
}

// countHolder counts holder h of part, node i (ok: h is a member).
func (p *planner) countHolder(part *Partition, h string, i int, ok bool) {
	if p.ls != nil {
		// A slot is live when its holder is alive or suspect and not
		// being replaced.
		live := ok && p.nodes[i].hold && !(len(part.Migrations) > 0 && p.replaced(part, h))
		if !ok {
			i = -1
		}
		p.ls.node, p.ls.slotLive = append(p.ls.node, int32(i)), append(p.ls.slotLive, live)
	}
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
		if nd.lead && !nd.draining {
			leaders = append(leaders, i)
		}
	}
	p.copyShare, p.copyQuota = p.copySharesByFactor(takers, weight, zoneOf, frozen, tie)
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

// zoneCounts fills p.zc with the copies of part per zone (live and waiting
// holders, live migration targets; holders replaced by a migration, except,
// and copies on nodes part's resource may not use are left out) and
// returns the number of copies and covered zones.
func (p *planner) zoneCounts(part *Partition, except string) (copies, covered int) {
	p.pk = p.kOf(part)
	p.pclass = p.classOf(part.ID)
	p.prule = p.pclass.rules[p.pk]
	for i := range p.zc {
		p.zc[i] = 0
	}
	add := func(i int) {
		if !p.pclass.mayHold(i) {
			return // a copy its resource's selector rules out is on its way out
		}
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
//
// It also says whether part's placement lets node i hold a copy at all
// (its resource's node selector); with ZonesNone the zones do not matter.
func (p *planner) zoneOK(i, copies, covered int) bool {
	if !p.pclass.mayHold(i) {
		return false
	}
	if p.pclass.zonesRule == ZonesNone {
		return true
	}
	z := p.nodes[i].zone
	if z >= len(p.zoneNames) {
		return false
	}
	if p.zc[z] >= p.prule.maxPer {
		return false
	}
	if p.zc[z] > 0 {
		// Adding to a covered zone must leave room to cover the rest.
		if p.prule.spread()-covered > p.pk-copies-1 {
			return false
		}
	}
	return true
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
//
// A holder whose app is unhealthy is no source while another holder could
// be, even a busy one (the copy then waits for it): its app may not
// answer, and one back from a failure lacks the writes made while it was
// away until its app has re-synced and acknowledged node.rejoin (its agent
// announces the app unhealthy until then). When every holder's app is
// unhealthy, one of them is the source all the same: no copy has more.
func (p *planner) sourceFor(part *Partition) (int, string) {
	healthy := false
	p.eachSource(part, func(i int) bool {
		healthy = !p.nodes[i].appDown
		return !healthy
	})
	first := -1
	per := p.lim.MaxMigrationsPerNode
	found := -1
	p.eachSource(part, func(i int) bool {
		if healthy && p.nodes[i].appDown {
			return true
		}
		if first < 0 {
			first = i
		}
		if per <= 0 || p.busy[i] < per {
			found = i
			return false
		}
		return true
	})
	if found < 0 {
		found = first
	}
	if found < 0 {
		return -1, ""
	}
	return found, p.nodes[found].id
}

// eachSource calls f with each holder of part that may be a copy source,
// in sourceFor's order of preference, until f returns false.
func (p *planner) eachSource(part *Partition, f func(i int) bool) {
	if i, st := p.state(part.Primary); part.Primary != "" && st == holderLive && !f(i) {
		return
	}
	for _, r := range part.Replicas {
		if i, st := p.state(r); st == holderLive && !f(i) {
			return
		}
	}
	for _, h := range part.Holders() {
		if i, st := p.state(h); st == holderLeaving && !f(i) {
			return
		}
	}
}

func (p *planner) startMigration(part *Partition, t, src int, srcID, replaces string, prio int, reasons []string) {
	p.copies[t]++
	p.busy[t]++
	if src >= 0 {
		p.busy[src]++
	}
	r := -1
	if i, st := p.state(replaces); replaces != "" && i >= 0 && (st == holderLive) {
		p.copies[i]--
		r = i
	}
	if p.ls != nil {
		p.ls.project(part.ID, t, r, src)
	}
	if p.rt != nil {
		p.rt.moved(p, part.ID, t, replaces)
	}
	p.inflight++
	p.copyWork = true
	p.emit(Action{Kind: ActionStartMigration, Partition: part.ID, Epoch: part.Epoch, Node: p.nodes[t].id, Source: srcID, Replaces: replaces, Priority: prio, Reasons: reasons})
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
