package failover

import (
	"errors"
	"fmt"
	"sort"
)

// Copies an app lost.
//
// An app that keeps its data on disk tells its agent at start-up which
// partitions it really holds. A partition the table gives the node, and
// which the app had acknowledged holding, but which the app no longer has
// (its data dir was wiped, its disk replaced) is a lost copy: it must never
// be promoted, it no longer counts towards the replication factor, and
// nothing may be copied from it. The agent commits one CmdCopiesLost with
// an ActionDropLostCopy per such partition; the planner then does the rest
// with what it already knows: a partition left without a primary gets its
// best live replica promoted, and the missing copy is re-created from a
// live holder. When the lost copy was the last one that may still have
// the data, the partition is marked DataLost and left without a primary:
// the planner never makes up an empty one for it.

// PlanLostCopies returns the ActionDropLostCopy actions for the partitions
// in lost that node holds in c (as primary or replica), in partition
// order, each naming the partition's current epoch. Partitions node does
// not hold, unknown partitions and repeats are left out. It is pure: the
// caller commits the actions in a CmdCopiesLost about node.
func PlanLostCopies(c *Cluster, node string, lost []int) []Action {
	if c == nil || !c.Bootstrapped || node == "" {
		return nil
	}
	ids := append([]int(nil), lost...)
	sort.Ints(ids)
	var out []Action
	for i, id := range ids {
		if id < 0 || id >= len(c.Partitions) || (i > 0 && ids[i-1] == id) {
			continue
		}
		p := &c.Partitions[id]
		if !p.Holds(node) {
			continue
		}
		reasons := []string{fmt.Sprintf("the app of %s reported that it does not have the partition", node)}
		if !c.othersHaveData(p, node) {
			reasons = append(reasons, "no other copy may have the data: the partition's data is lost")
		} else if p.Primary == node {
			reasons = append(reasons, "it was the primary: a live replica is promoted instead")
		}
		out = append(out, Action{Kind: ActionDropLostCopy, Partition: id, Epoch: p.Epoch, Node: node, Priority: PriorityPromote, Reasons: reasons})
	}
	return out
}

// checkCopiesLost refuses a CmdCopiesLost that is not what PlanLostCopies
// makes: about a known member, with only ActionDropLostCopy actions about
// that member.
func (c *Cluster) checkCopiesLost(cmd Command) error {
	if !c.Bootstrapped {
		return errors.New("failover: copies lost before bootstrap")
	}
	if _, ok := c.Members[cmd.Node]; !ok {
		return fmt.Errorf("%w %q", ErrUnknownMember, cmd.Node)
	}
	for _, a := range cmd.Actions {
		if a.Kind != ActionDropLostCopy {
			return fmt.Errorf("failover: %s carries a %s action", CmdCopiesLost, a.Kind)
		}
		if a.Node != cmd.Node {
			return fmt.Errorf("failover: %s about %q carries an action about %q", CmdCopiesLost, cmd.Node, a.Node)
		}
	}
	return nil
}

// onlyPlannerActions refuses ActionDropLostCopy outside CmdCopiesLost: a
// copy is lost only on its own app's word.
func onlyPlannerActions(cmd Command) error {
	for _, a := range cmd.Actions {
		if a.Kind == ActionDropLostCopy {
			return fmt.Errorf("failover: %s is only applied by a %s command, not %s", ActionDropLostCopy, CmdCopiesLost, cmd.Kind)
		}
	}
	return nil
}

// dropLostCopy applies ActionDropLostCopy to p: node leaves the holders,
// the migrations it was the source of are cancelled, and p is marked
// DataLost when no holder that may have the data is left.
func (c *Cluster) dropLostCopy(p *Partition, node string) bool {
	if !p.Holds(node) {
		return false
	}
	if p.Primary == node {
		p.Primary = ""
	} else {
		p.Replicas = removeAt(p.Replicas, indexOf(p.Replicas, node))
	}
	var kept []Migration
	for _, m := range p.Migrations {
		if m.Source != node {
			kept = append(kept, m)
		}
	}
	p.Migrations = kept
	if !c.othersHaveData(p, node) {
		p.DataLost = true
	}
	return true
}

// othersHaveData reports whether a holder of p other than node may still
// have the data: a member that is alive, suspect, leaving or restarting.
func (c *Cluster) othersHaveData(p *Partition, node string) bool {
	for _, h := range p.Holders() {
		if h == node {
			continue
		}
		if m, ok := c.Members[h]; ok && (m.CanHold() || m.Status == StatusLeaving || m.Status == StatusRestarting) {
			return true
		}
	}
	return false
}

// LostPartitions lists the partitions marked DataLost, in order.
func (c *Cluster) LostPartitions() []int {
	var out []int
	for _, p := range c.Partitions {
		if p.DataLost {
			out = append(out, p.ID)
		}
	}
	return out
}
