package failover

import "fmt"

// The planner's part of the operator's moves: pins (pin.go) and
// replacements (replace.go). They rank below every copy that restores the
// replication factor (PriorityOperatorMove), and they go ahead in
// maintenance mode: the operator asked for them by hand.

// planPinnedPrimary promotes the replica pinned as part's primary, when it
// can lead and does not lead yet. It reports whether it planned that.
func (p *planner) planPinnedPrimary(part *Partition) bool {
	pinned, ok := part.PinnedPrimary()
	if !ok || pinned == part.Primary || indexOf(part.Replicas, pinned) < 0 {
		return false
	}
	i, known := p.idx[pinned]
	if !known || !p.nodes[i].lead {
		return false // the pin yields while its node cannot lead
	}
	p.promote(part, i, PriorityOperatorMove, "pinned primary (agent move -primary)")
	return true
}

// planOperatorMove asks for a copy of part on a pinned node that lacks it
// (replacing an unpinned holder, add before remove), or for the copy of a
// holder being replaced to move to its replacement. It reports whether it
// asked for one.
func (p *planner) planOperatorMove(part *Partition, needs *[]need) bool {
	for _, pin := range part.Pins {
		i, ok := p.idx[pin.Node]
		if !ok || !p.nodes[i].take || part.Holds(pin.Node) {
			continue
		}
		victim := p.unpinnedHolder(part)
		if victim == "" {
			continue
		}
		*needs = append(*needs, need{part: part.ID, priority: PriorityOperatorMove, replaces: victim, prefer: pin.Node,
			lead: victim == part.Primary, reasons: []string{fmt.Sprintf("move %s's copy to the pinned node %s", victim, pin.Node)}})
		return true
	}
	if p.draining == 0 {
		return false
	}
	for _, h := range p.holders(part) {
		i, st := p.state(h)
		if st != holderLive || !p.nodes[i].draining {
			continue
		}
		by := p.c.Members[h].ReplacedBy
		*needs = append(*needs, need{part: part.ID, priority: PriorityOperatorMove, replaces: h, prefer: by,
			lead: h == part.Primary, reasons: []string{fmt.Sprintf("%s is being replaced by %s (agent replace)", h, by)}})
		return true
	}
	return false
}

// unpinnedHolder is the holder of part a pinned node's copy replaces: a
// live replica without a pin, the one dropping prefers, else the primary
// if it has no pin; "" if every live copy is pinned.
func (p *planner) unpinnedHolder(part *Partition) string {
	drop := choice{d: &dropping}
	for _, r := range part.Replicas {
		if i, st := p.state(r); st == holderLive && !part.Pinned(r) {
			c := p.copyCandidate(i, part.ID)
			drop.offer(&c)
		}
	}
	if drop.ok {
		return drop.best.id
	}
	if _, st := p.state(part.Primary); part.Primary != "" && st == holderLive && !part.Pinned(part.Primary) {
		return part.Primary
	}
	return ""
}

// leavePinnedAlone keeps the rebalancer off pinned partitions: the
// operator placed them.
func (p *planner) leavePinnedAlone() {
	for pi := range p.c.Partitions {
		if len(p.c.Partitions[pi].Pins) > 0 {
			p.touched[pi] = true
		}
	}
}
