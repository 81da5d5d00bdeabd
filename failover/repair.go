package failover

import (
	"fmt"
	"sort"
)

// Repair: promotions, copies that restore the replication factor, the end
// of broken migrations, removal of failed and surplus copies, zone spread.

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
	// prefer is the node the copy should go to when it can (a pinned node,
	// the replacement of the holder it replaces); "" lets the scores decide.
	prefer string
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
		out := []string{fmt.Sprintf("replace %s (%s)", nd.replaces, p.describe(nd.replaces)), fmt.Sprintf("%d of %d copies", nd.present, p.want[nd.part])}
		if p.c.Partitions[nd.part].Pinned(nd.replaces) {
			out = append(out, fmt.Sprintf("the pin on %s yields: it is %s", nd.replaces, p.describe(nd.replaces)))
		}
		return out
	case needAdd:
		return []string{fmt.Sprintf("missing copy: %d of %d", nd.present, p.want[nd.part])}
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
		if part.Retired || part.SplitPending {
			continue
		}
		if part.Splitting() {
			// Only a promotion, which calls the split off.
			p.planPrimary(part, true, &needs)
			continue
		}
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
	// The replica pinned as primary if it can lead, else the best live,
	// app-healthy replica (see leading).
	pinned, hasPin := part.PinnedPrimary()
	if i, ok := p.idx[pinned]; hasPin && ok && p.nodes[i].lead && indexOf(part.Replicas, pinned) >= 0 {
		p.promote(part, i, PriorityPromote, why, "pinned primary (agent move -primary)")
		return true
	}
	leader := choice{d: &leading}
	for _, r := range part.Replicas {
		if i, ok := p.idx[r]; ok && p.nodes[i].lead {
			c := p.leaderCandidate(i, part.ID)
			leader.offer(&c)
		}
	}
	if leader.ok {
		if hasPin {
			p.promote(part, leader.best.node, PriorityPromote, why, fmt.Sprintf("the primary pin on %s yields: it is %s", pinned, p.describe(pinned)))
		} else {
			p.promote(part, leader.best.node, PriorityPromote, why)
		}
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
	switch {
	case len(part.Holders()) == 0 && part.Epoch == 1:
		// Never held: every placement change raises the epoch. A resource
		// created while no member could take a copy (apps unhealthy,
		// disks full, no member matching its selector) is laid out so.
		reasons = append(reasons, "no copy yet (no member could take one when it was created): new empty primary")
	case len(part.Holders()) == 0 || p.source(part) < 0 && !p.hasLeavingSource(part):
		reasons = append(reasons, "all copies lost: new empty primary")
	default:
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

func (p *planner) promote(part *Partition, i, prio int, reasons ...string) {
	c := p.leaderCandidate(i, part.ID)
	reasons = c.appendReasons(reasons, leading)
	if old, ok := p.idx[part.Primary]; ok {
		p.prims[old]--
	}
	p.prims[i]++
	p.emit(Action{Kind: ActionPromote, Partition: part.ID, Epoch: part.Epoch, Node: c.id, Priority: prio, Reasons: reasons})
}

// planMigrations cancels broken or timed-out migrations and, with Instant,
// completes live ones.
func (p *planner) planMigrations(part *Partition) bool {
	for _, m := range part.Migrations {
		var why string
		if i, ok := p.idx[m.Target]; !ok || !p.nodes[i].hold {
			why = fmt.Sprintf("target %s %s", m.Target, p.describe(m.Target))
		}
		timedOut := false
		if age := p.ages.migration(m.ID); why == "" && p.lim.MigrationTimeout > 0 && int64(age) > p.lim.MigrationTimeout {
			why, timedOut = fmt.Sprintf("timed out after %s", age), true
		}
		if why != "" {
			p.copyWork = true
			p.emit(Action{Kind: ActionCancelMigration, Partition: part.ID, Epoch: part.Epoch, Node: m.Target, MigrationID: m.ID, Priority: PriorityFinish, Reasons: []string{why}, CopyFailed: timedOut})
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
	if p.planPinnedPrimary(part) {
		return
	}
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
	k := p.kOf(part)
	deficit := k - present
	misplaced := p.misplacedHolder(part)
	switch {
	case deficit > 0 && len(dead) > 0:
		*needs = append(*needs, need{part: part.ID, priority: PriorityReplace + deficit, replaces: dead[0], kind: needReplace, present: present, prefer: p.preferredTarget(part, dead[0])})
	case deficit > 0:
		*needs = append(*needs, need{part: part.ID, priority: PriorityAdd + deficit, kind: needAdd, present: present, prefer: p.preferredTarget(part, "")})
	case len(dead) > 0:
		h := dead[0]
		if h == part.Primary {
			return // a promotion comes first
		}
		p.copyWork = true
		p.emit(Action{Kind: ActionRemoveReplica, Partition: part.ID, Epoch: part.Epoch, Node: h, Priority: PriorityRemoveFailed,
			Reasons: []string{fmt.Sprintf("%s %s", h, p.describe(h)), fmt.Sprintf("%d of %d copies without it", present, k)}})
	case len(part.Migrations) == 0 && misplaced != "":
		p.planMisplaced(part, misplaced, live, k, needs)
	case live > k && len(part.Migrations) == 0:
		p.dropSurplus(part, live)
	case len(part.Migrations) == 0 && p.planOperatorMove(part, needs):
	case len(part.Migrations) == 0 && len(p.zoneNames) > 1 && !p.c.Maintenance && p.classOf(part.ID).zonesRule != ZonesNone:
		p.planZoneSpread(part, needs)
	}
}

// dropSurplus removes one live copy above the replication factor: the copy
// of a node being replaced if there is one, else the replica that dropping
// prefers; never a pinned copy. In maintenance only the copy of a node
// being replaced goes (the operator asked for that move).
func (p *planner) dropSurplus(part *Partition, live int) {
	surplus := choice{d: &dropping}
	why := fmt.Sprintf("surplus copy: %d live of %d", live, p.kOf(part))
	for _, r := range part.Replicas {
		if i, ok := p.idx[r]; ok && p.nodes[i].hold && p.nodes[i].draining {
			why = fmt.Sprintf("%s is being replaced by %s (agent replace), which holds the partition", r, p.c.Members[r].ReplacedBy)
			c := p.copyCandidate(i, part.ID)
			surplus.offer(&c)
		}
	}
	if !surplus.ok && !p.c.Maintenance {
		for _, r := range part.Replicas {
			if i, ok := p.idx[r]; ok && p.nodes[i].hold && !part.Pinned(r) {
				c := p.copyCandidate(i, part.ID)
				surplus.offer(&c)
			}
		}
	}
	if !surplus.ok {
		return
	}
	drop := surplus.best
	p.copies[drop.node]--
	p.copyWork = true
	p.emit(Action{Kind: ActionRemoveReplica, Partition: part.ID, Epoch: part.Epoch, Node: drop.id, Priority: PriorityRemoveSurplus,
		Reasons: drop.appendReasons([]string{why}, dropping)})
}

// planZoneSpread moves a copy out of a crowded zone when a node in an
// uncovered zone could take it.
func (p *planner) planZoneSpread(part *Partition, needs *[]need) {
	copies, covered := p.zoneCounts(part, "")
	want := p.prule.spread()
	if copies > p.pk {
		copies = p.pk
	}
	if covered >= want || covered >= copies {
		return
	}
	// The copy to move: a live one in the most crowded zone (a zone where
	// no node takes copies counts as the most crowded), a replica rather
	// than the primary; among equals the first in holder order.
	var from string
	fromCrowd, fromReplica := 0, false
	for _, h := range part.Holders() {
		i, st := p.state(h)
		if st != holderLive || part.Pinned(h) {
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
		replica := h != part.Primary
		if from == "" || crowd > fromCrowd || crowd == fromCrowd && replica && !fromReplica {
			from, fromCrowd, fromReplica = h, crowd, replica
		}
	}
	if from == "" {
		return
	}
	// Is there a node in an uncovered zone that could take it (and has
	// the disk room for it)?
	for i, nd := range p.nodes {
		if nd.take && p.pclass.mayHold(i) && nd.zone < len(p.zoneNames) && p.zc[nd.zone] == 0 && !part.Holds(nd.id) && p.roomFor(i, part.ID) {
			*needs = append(*needs, need{part: part.ID, priority: PriorityZoneSpread, replaces: from,
				reasons: []string{fmt.Sprintf("zone spread: zone %q has no copy", p.zoneNames[nd.zone])}})
			return
		}
	}
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
	// A copy that restores the replication factor goes to a node without
	// disk room when no other can take it; a zone-spread move waits.
	restoring := nd.priority >= PriorityAdd
	t, ok := p.bestTarget(part, except, nd.lead, src, false, nd.prefer, restoring)
	if !ok {
		// No node with a healthy app can take it. Rather than lose the
		// copy (a leaving or failed holder), put it on a live node whose
		// app is unhealthy; never move a live primary that way (two such
		// nodes would pass the partition back and forth).
		if i, st := p.state(nd.replaces); nd.lead && nd.replaces != "" && i >= 0 && st == holderLive {
			return
		}
		if t, ok = p.bestTarget(part, except, false, src, true, "", restoring); !ok {
			return
		}
	}
	reasons := p.reasonsOf(nd)
	switch {
	case t.id == nd.prefer && part.Pinned(t.id):
		reasons = append(reasons, fmt.Sprintf("pinned to %s (agent move)", t.id))
	case t.id == nd.prefer:
		reasons = append(reasons, fmt.Sprintf("%s replaces %s (agent replace)", t.id, nd.replaces))
	default:
		reasons = t.appendReasons(reasons, placing)
	}
	if t.failures > 0 {
		reasons = append(reasons, fmt.Sprintf("retry: %d earlier copies to %s failed", t.failures, t.id))
	}
	if t.avoided != "" {
		reasons = append(reasons, t.avoided)
	}
	p.startMigration(part, t.node, src, srcID, nd.replaces, nd.priority, reasons)
}

// bestTarget chooses the target of a new copy of part among the nodes that
// pass the hard constraints (takes copies, and can lead if lead is set;
// does not hold or receive part; has a free migration slot), by the
// criteria of placing. A node that keeps the zone spread but is throttled
// makes the copy wait rather than go to a node that breaks the spread.
//
// prefer, when set and a candidate, wins over the scores and the zone
// spread (the operator chose it); throttled, it makes the copy wait.
//
// Copies that failed on a node (see copyfailure.go): a node still within
// its retry wait makes the copy wait when it is the best choice; a node
// that failed Limits.MaxCopyFailures times is chosen only when no other
// node can take the copy.
//
// With unhealthy set, the candidates are instead the live nodes whose app is
// unhealthy (the last resort of placeCopy).
//
// Disk (with figures): a node that would go over DiskHigh with the copy
// is a candidate only when no node with room can take it, and only when
// cramped is set (the copy restores the replication factor: a copy on a
// node short of room beats a partition short of a copy; the node sheds
// copies again once it is over DiskFull and another node has room). The
// operator's choice (prefer) is not weighed against its disk.
func (p *planner) bestTarget(part *Partition, except string, lead bool, src int, unhealthy bool, prefer string, cramped bool) (candidate, bool) {
	copies, covered := p.zoneCounts(part, except)
	target := choice{d: &placing}
	spent := choice{d: &placing} // nodes that failed too often
	short := choice{d: &placing} // nodes without disk room for the copy
	var spentNote string
	zoneBlocked := false
	for i := range p.nodes {
		nd := &p.nodes[i]
		if unhealthy {
			if !nd.hold || nd.take {
				continue
			}
		} else if !nd.take || (lead && !nd.lead) {
			continue
		}
		if part.Holds(nd.id) || !p.pclass.mayHold(i) {
			continue // the resource's node selector rules it out
		}
		if _, busy := part.MigrationTo(nd.id); busy {
			continue
		}
		zok := p.zoneOK(i, copies, covered)
		if !zok && p.pclass.zonesRule == ZonesStrict {
			continue // never two copies in one zone
		}
		if !p.budget(i, src) {
			if nd.id == prefer {
				return candidate{}, false // the operator's choice is throttled: wait for it
			}
			// Throttled now; if it keeps the zones spread, wait for it
			// rather than settle for a node that does not.
			zoneBlocked = zoneBlocked || zok
			continue
		}
		judged := p.judgeCopyTarget(part, nd.id)
		c := p.copyCandidate(i, part.ID)
		c.zoneOK, c.lastResort = zok, unhealthy
		c.failures, c.retryWait = judged.failures, judged.waiting
		if nd.id == prefer && !judged.exhausted {
			if judged.waiting {
				return candidate{}, false
			}
			return c, true
		}
		if judged.exhausted {
			if !judged.waiting {
				spent.offer(&c)
			}
			spentNote = fmt.Sprintf("not %s: %d copies to it failed", nd.id, judged.failures)
			continue
		}
		if !p.roomFor(i, part.ID) {
			if cramped && !judged.waiting {
				short.offer(&c)
			}
			continue
		}
		target.offer(&c)
	}
	if !target.ok {
		if spent.ok && !zoneBlocked {
			best := spent.best
			best.avoided = "no other node can take it"
			return best, true
		}
		if short.ok && !zoneBlocked {
			best := short.best
			best.avoided = p.ls.shortNote(best.node, p.ls.copySize(part.ID))
			return best, true
		}
		return candidate{}, false
	}
	if !target.best.zoneOK && zoneBlocked {
		return candidate{}, false
	}
	if target.best.retryWait {
		// The best node failed this copy lately: retry it after its wait.
		return candidate{}, false
	}
	best := target.best
	best.avoided = spentNote
	return best, true
}

// preferredTarget is the node a new copy of part should go to if it can: a
// pinned node that lacks the partition, else the replacement of the holder
// the copy replaces (agent replace). "" when neither applies.
func (p *planner) preferredTarget(part *Partition, replaces string) string {
	for _, pin := range part.Pins {
		if i, ok := p.idx[pin.Node]; ok && p.nodes[i].take && !part.Holds(pin.Node) {
			if _, busy := part.MigrationTo(pin.Node); !busy {
				return pin.Node
			}
		}
	}
	if replaces != "" {
		return p.c.Members[replaces].ReplacedBy
	}
	return ""
}
