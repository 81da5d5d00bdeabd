package failover

import (
	"errors"
	"fmt"
)

// Replacing a node (agent replace OLD NEW).
//
// CmdReplaceMember sets OLD's ReplacedBy. From then on the planner treats
// OLD as a node that keeps what it has but takes nothing new (like an
// app-unhealthy one, but it may still lead), and moves each of its copies
// to NEW: a migration to NEW that replaces OLD, so that the copy count never
// drops below the replication factor (add before remove; a primary copy
// hands the primary role to NEW when it completes). Where NEW cannot take a
// copy (it already holds the partition, or it is gone) the copy goes where
// the planner's scoring puts it. The moves rank below every copy that
// restores the replication factor (PriorityOperatorMove). Once OLD holds
// nothing, its agent leaves (or, if it is not alive, the leader marks it
// left): see Replaced.

// CheckReplace reports why old cannot be replaced by replacement now, or
// nil: unknown nodes, the same node twice, a replacement that is not alive
// with a healthy app or is itself being replaced, an old node that has
// already left, and a replacement in a zone that would break the zone
// spread of a partition old holds.
func (c *Cluster) CheckReplace(old, replacement string) error {
	if !c.Bootstrapped {
		return errors.New("failover: replace before bootstrap")
	}
	om, ok := c.Members[old]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownMember, old)
	}
	if replacement == "" {
		if om.ReplacedBy == "" {
			return fmt.Errorf("failover: %q is not being replaced", old)
		}
		return nil
	}
	nm, ok := c.Members[replacement]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownMember, replacement)
	}
	switch {
	case old == replacement:
		return fmt.Errorf("failover: %q cannot replace itself", old)
	case om.Status == StatusLeft:
		return fmt.Errorf("failover: %q has left: there is nothing to replace", old)
	case nm.Status != StatusAlive:
		return fmt.Errorf("failover: the replacement %q is %s: it must be alive", replacement, nm.Status)
	case nm.AppUnhealthy:
		return fmt.Errorf("failover: the app of the replacement %q is unhealthy", replacement)
	case nm.ReplacedBy != "":
		return fmt.Errorf("failover: the replacement %q is itself being replaced by %q", replacement, nm.ReplacedBy)
	}
	if err := c.checkReplaceSelectors(old, replacement); err != nil {
		return err
	}
	return c.checkReplaceZones(old, replacement)
}

// checkReplaceZones checks, with the planner's own zone rule over the
// cluster as it will be during the replacement, that every copy of old
// may move to replacement.
func (c *Cluster) checkReplaceZones(old, replacement string) error {
	view := *c
	view.Members = make(map[string]Member, len(c.Members))
	for id, m := range c.Members {
		view.Members[id] = m
	}
	om := view.Members[old]
	om.ReplacedBy = replacement
	view.Members[old] = om
	p := newPlanner(&view, Ages{}, 0, Limits{})
	if p == nil || len(p.zoneNames) < 2 {
		return nil
	}
	t := p.idx[replacement]
	for pi := range c.Partitions {
		part := &c.Partitions[pi]
		if !part.Holds(old) || part.Holds(replacement) {
			continue
		}
		copies, covered := p.zoneCounts(part, old)
		if !p.zoneOK(t, copies, covered) {
			return fmt.Errorf("failover: %q is in zone %q, where partition %d already has as many copies as the zone spread allows (%d zones, %d copies): pick a replacement in zone %q or another zone it lacks",
				replacement, c.Members[replacement].Zone, part.ID, len(p.zoneNames), p.pk, c.Members[old].Zone)
		}
	}
	return nil
}

func (c *Cluster) applyReplace(old, replacement string) error {
	if err := c.CheckReplace(old, replacement); err != nil {
		return err
	}
	m := c.Members[old]
	m.ReplacedBy = replacement
	c.Members[old] = m
	return nil
}

// Replaced lists the members being replaced that hold nothing any more
// (no copy, no copy on its way to them): their replacement is done, and
// they are to leave.
func (c *Cluster) Replaced() []string {
	var out []string
	for _, id := range c.MemberIDs() {
		m := c.Members[id]
		if m.ReplacedBy == "" || m.Status == StatusLeft {
			continue
		}
		if c.checkHoldsNothing(id) == nil {
			out = append(out, id)
		}
	}
	return out
}
