package hooks

import "github.com/steward-dev/steward/failover"

// Assignment is what one node's app should hold of one partition, as the
// cluster state says it.
type Assignment struct {
	// Partition is the partition ID.
	Partition int
	// Resource names the partition's resource.
	Resource string
	// Epoch is the partition's placement epoch.
	Epoch uint64
	// Role is RolePrimary or RoleReplica.
	Role string
	// Source, for the target of a migration, is where to copy from; nil
	// for a migration with nothing to copy from (see MigrationID).
	Source *Source
	// MigrationID names that migration; empty when not copying. With a nil
	// Source it names a new, empty copy: the planner's repair of a
	// partition no copy of which is left (or one created while no member
	// could hold it). The app is sent a plain partition.assign (hold it,
	// empty), and its acknowledgement completes the migration.
	MigrationID string
	// Split, for the primary of a partition being split, are its children:
	// the app is to split its data (a partition.split event).
	Split []failover.SplitChild
}

// same reports whether two assignments ask the app for the same thing.
func (a Assignment) same(b Assignment) bool {
	if a.Partition != b.Partition || a.Epoch != b.Epoch || a.Role != b.Role || a.MigrationID != b.MigrationID || len(a.Split) != len(b.Split) {
		return false
	}
	if (a.Source == nil) != (b.Source == nil) {
		return false
	}
	return a.Source == nil || *a.Source == *b.Source
}

// Desired returns, for every partition that node holds or is copying in c,
// what its app should hold: RolePrimary or RoleReplica at the partition's
// epoch, and for the target of a migration RoleReplica with the migration's
// Source (node ID and that member's AppAddr; nil when it has none) and
// MigrationID. It is pure;
// the caller passes a state it does not mutate meanwhile.
func Desired(c *failover.Cluster, node string) map[int]Assignment {
	out := map[int]Assignment{}
	if c == nil || node == "" {
		return out
	}
	for _, p := range c.Partitions {
		switch {
		case p.Primary == node:
			a := Assignment{Partition: p.ID, Resource: p.ResourceName(), Epoch: p.Epoch, Role: RolePrimary}
			if p.Splitting() && p.SplitBy == node {
				a.Split = c.SplitChildren(&p)
			}
			out[p.ID] = a
		case p.Holds(node):
			out[p.ID] = Assignment{Partition: p.ID, Resource: p.ResourceName(), Epoch: p.Epoch, Role: RoleReplica}
		default:
			if m, ok := p.MigrationTo(node); ok {
				a := Assignment{Partition: p.ID, Resource: p.ResourceName(), Epoch: p.Epoch, Role: RoleReplica, MigrationID: m.ID}
				if m.Source != "" {
					a.Source = &Source{NodeID: m.Source, AppAddr: c.Members[m.Source].AppAddr}
				}
				out[p.ID] = a
			}
		}
	}
	return out
}
