package failover

import (
	"fmt"
	"sort"
)

// ActionKind is what an Action does to one partition.
type ActionKind string

const (
	// ActionPromote makes Node, a replica, the partition's primary. The old
	// primary, if any, becomes a replica (a failed one is removed later by
	// ActionRemoveReplica).
	ActionPromote ActionKind = "promote"
	// ActionStartMigration starts copying the partition from Source to
	// Node. Replaces, if set, is the holder the copy will replace.
	ActionStartMigration ActionKind = "start_migration"
	// ActionCompleteMigration turns the finished migration MigrationID into a
	// replica and releases the holder it replaces. If the partition has no
	// primary, or the migration replaces the primary, the target becomes
	// the primary instead (the planner relies on this for moving a primary
	// off an app-unhealthy node and for a partition whose copies are lost).
	ActionCompleteMigration ActionKind = "complete_migration"
	// ActionCancelMigration drops the migration MigrationID (timed out,
	// failed, or its target is gone).
	ActionCancelMigration ActionKind = "cancel_migration"
	// ActionRemoveReplica drops Node from the partition's holders. If Node
	// is the primary, the partition is left without a primary.
	ActionRemoveReplica ActionKind = "remove_replica"
	// ActionDropLostCopy drops Node from the partition's holders because
	// Node's app reported that it does not have the data (see
	// CmdCopiesLost, the only command that may carry it). Migrations
	// copying from Node are cancelled with it: their source has nothing to
	// give. When no holder that may still have the data is left (alive,
	// suspect, leaving or restarting), the partition is marked DataLost.
	ActionDropLostCopy ActionKind = "drop_lost_copy"
)

// Action is one step of a plan for one partition.
type Action struct {
	Kind ActionKind `json:"kind"`
	// Partition is the partition ID.
	Partition int `json:"partition"`
	// Epoch is the partition's epoch the action was planned against; the
	// action applies only if the partition is still at it.
	Epoch uint64 `json:"epoch"`
	// Node is the node the action is about (new primary, migration target,
	// replica to remove).
	Node string `json:"node,omitempty"`
	// Source is the node to copy from, for ActionStartMigration.
	Source string `json:"source,omitempty"`
	// Replaces is the holder a new copy replaces, for ActionStartMigration.
	Replaces string `json:"replaces,omitempty"`
	// MigrationID names the migration, for ActionCompleteMigration and
	// ActionCancelMigration.
	MigrationID string `json:"migration_id,omitempty"`
	// Priority orders actions: higher first.
	Priority int `json:"priority"`
	// Reasons say why this action and this target were chosen.
	Reasons []string `json:"reasons,omitempty"`
	// CopyFailed, for ActionCancelMigration: the copy failed (its app
	// refused it, or it timed out), rather than lost its target. The
	// failure is recorded against the target (Partition.CopyFailures) so
	// that the planner backs off before it tries that node again.
	CopyFailed bool `json:"copy_failed,omitempty"`
}

func (a Action) String() string {
	return fmt.Sprintf("%s p%d@%d node=%s", a.Kind, a.Partition, a.Epoch, a.Node)
}

// applyActions applies each action whose partition is still at the action's
// epoch and whose preconditions hold; the others are counted as stale.
func (c *Cluster) applyActions(actions []Action, at int64) Result {
	var res Result
	changed := map[int]bool{}
	for _, a := range actions {
		if a.Partition < 0 || a.Partition >= len(c.Partitions) {
			res.Stale++
			continue
		}
		p := &c.Partitions[a.Partition]
		if p.Epoch != a.Epoch || !c.applyAction(p, a, at) {
			res.Stale++
			continue
		}
		p.Epoch++
		res.Applied++
		changed[a.Partition] = true
		c.cancelSplitIfLeaderChanged(p)
	}
	for id := range changed {
		res.Changed = append(res.Changed, id)
	}
	sort.Ints(res.Changed)
	return res
}

// applyAction mutates p if a's preconditions hold and reports whether it did.
func (c *Cluster) applyAction(p *Partition, a Action, at int64) bool {
	switch a.Kind {
	case ActionPromote:
		i := indexOf(p.Replicas, a.Node)
		if i < 0 {
			return false
		}
		if m, ok := c.Members[a.Node]; !ok || !m.CanHold() {
			return false
		}
		old := p.Primary
		p.Replicas = removeAt(p.Replicas, i)
		p.Primary = a.Node
		p.DataLost = false
		if old != "" {
			p.Replicas = append(p.Replicas, old)
		}
		return true
	case ActionStartMigration:
		m, ok := c.Members[a.Node]
		if !ok || !m.CanHold() || p.Holds(a.Node) {
			return false
		}
		if _, busy := p.MigrationTo(a.Node); busy {
			return false
		}
		if a.Source != "" && !p.Holds(a.Source) {
			return false
		}
		if a.Replaces != "" && !p.Holds(a.Replaces) {
			return false
		}
		c.NextMigration++
		p.Migrations = append(p.Migrations, Migration{
			ID:        fmt.Sprintf("m%d", c.NextMigration),
			Target:    a.Node,
			Source:    a.Source,
			Replaces:  a.Replaces,
			StartedAt: at,
		})
		return true
	case ActionCompleteMigration:
		i := migrationIndex(p.Migrations, a.MigrationID)
		if i < 0 {
			return false
		}
		mig := p.Migrations[i]
		if m, ok := c.Members[mig.Target]; !ok || !m.CanHold() {
			return false
		}
		p.Migrations = append(p.Migrations[:i:i], p.Migrations[i+1:]...)
		if len(p.Migrations) == 0 {
			p.Migrations = nil
		}
		if len(p.CopyFailures) > 0 {
			p.CopyFailures = dropCopyFailure(p.CopyFailures, mig.Target)
		}
		switch {
		case p.Primary == "":
			p.Primary = mig.Target
			p.DataLost = false
		case mig.Replaces != "" && p.Primary == mig.Replaces:
			p.Primary = mig.Target
		default:
			p.Replicas = append(p.Replicas, mig.Target)
			if mig.Replaces != "" {
				if j := indexOf(p.Replicas, mig.Replaces); j >= 0 {
					p.Replicas = removeAt(p.Replicas, j)
				}
			}
		}
		return true
	case ActionCancelMigration:
		i := migrationIndex(p.Migrations, a.MigrationID)
		if i < 0 {
			return false
		}
		target := p.Migrations[i].Target
		p.Migrations = append(p.Migrations[:i:i], p.Migrations[i+1:]...)
		if len(p.Migrations) == 0 {
			p.Migrations = nil
		}
		if a.CopyFailed {
			recordCopyFailure(p, target, at)
		}
		return true
	case ActionRemoveReplica:
		if p.Primary == a.Node {
			p.Primary = ""
			return true
		}
		i := indexOf(p.Replicas, a.Node)
		if i < 0 {
			return false
		}
		p.Replicas = removeAt(p.Replicas, i)
		return true
	case ActionDropLostCopy:
		return c.dropLostCopy(p, a.Node)
	}
	return false
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

// removeAt returns list without element i, never sharing the result's tail
// with another partition's slice.
func removeAt(list []string, i int) []string {
	out := make([]string, 0, len(list)-1)
	out = append(out, list[:i]...)
	return append(out, list[i+1:]...)
}

func migrationIndex(ms []Migration, id string) int {
	for i, m := range ms {
		if m.ID == id {
			return i
		}
	}
	return -1
}
