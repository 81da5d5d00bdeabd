// Package failover holds Steward's cluster model (members, partitions,
// epochs, migrations) and the planner that decides how to heal it.
//
// Everything here is pure: no clocks, no goroutines, no I/O. Time enters as
// explicit values: timestamps (unix nanoseconds) carried by commands, so that
// every agent applying the same raft log computes exactly the same state, and
// the ages the planner's timeouts compare (Ages), measured by its caller on
// a monotonic clock. So the planner can be tested with tables, golden files
// and properties.
package failover

import (
	"errors"
	"fmt"
	"sort"
)

// MemberStatus is a member's place in its life cycle. The strings are part of
// the HTTP API contract.
type MemberStatus string

const (
	// StatusAlive: the member is in the cluster and healthy as far as we know.
	StatusAlive MemberStatus = "alive"
	// StatusSuspect: gossip suspects the member; confirming probes are running.
	StatusSuspect MemberStatus = "suspect"
	// StatusFailed: the health module confirmed the member is gone; the
	// leader removes it from raft and moves its partitions away.
	StatusFailed MemberStatus = "failed"
	// StatusLeaving: the member asked to leave; its partitions move away.
	StatusLeaving MemberStatus = "leaving"
	// StatusLeft: the member left gracefully.
	StatusLeft MemberStatus = "left"
	// StatusRestarting: the member is away for a planned restart (agent
	// restart) and is expected back with the same node ID and data dir
	// within Member.RestartGrace. Its copies stay assigned to it and are not
	// re-created elsewhere meanwhile; it leads nothing and is no copy
	// source. Not back in time, the leader marks it failed.
	StatusRestarting MemberStatus = "restarting"
)

// Valid reports whether s is one of the known statuses.
func (s MemberStatus) Valid() bool {
	switch s {
	case StatusAlive, StatusSuspect, StatusFailed, StatusLeaving, StatusLeft, StatusRestarting:
		return true
	}
	return false
}

// Member is one agent (and the app next to it) as the cluster knows it.
type Member struct {
	// ID is the stable logical node ID given by -node-id. It survives
	// restarts and rejoins; every API and webhook uses it.
	ID string `json:"id"`
	// RaftID is the raft server ID of the member's current incarnation. It
	// differs from ID so that a node that comes back with an empty data dir
	// can be a fresh raft server under the same logical ID.
	RaftID string `json:"raft_id,omitempty"`
	// GossipAddr is host:port of the member's memberlist.
	GossipAddr string `json:"gossip_addr,omitempty"`
	// RaftAddr is host:port of the member's raft transport.
	RaftAddr string `json:"raft_addr,omitempty"`
	// APIAddr is host:port of the member's HTTP API (used to forward writes
	// to the leader and to probe the agent).
	APIAddr string `json:"api_addr,omitempty"`
	// AppAddr is the data address of the member's app, given to peers that
	// copy partitions from it.
	AppAddr string `json:"app_addr,omitempty"`
	// Zone is the failure domain; copies of one partition go to distinct
	// zones when there are enough of them.
	Zone string `json:"zone,omitempty"`
	// Weight is the member's relative capacity; 0 means 1.
	Weight int `json:"weight,omitempty"`
	// Tags are the member's labels (its agent's -tags, set by CmdSetTags),
	// which resources' node selectors match (see placement.go).
	Tags map[string]string `json:"tags,omitempty"`
	// Status is where the member is in its life cycle.
	Status MemberStatus `json:"status"`
	// Voter reports whether the member is a raft voter.
	Voter bool `json:"voter"`
	// Incarnation counts the member's (re)joins; it goes up on every rejoin.
	Incarnation uint64 `json:"incarnation"`
	// AppUnhealthy is set when the member's own app fails its health checks;
	// such a member stays in the cluster but must not hold primaries.
	AppUnhealthy bool `json:"app_unhealthy,omitempty"`
	// StatusSince is when Status last changed, in unix nanoseconds, as
	// carried by the command that changed it: the proposing leader's wall
	// clock, for display. No timeout is measured from it (see Ages).
	StatusSince int64 `json:"status_since,omitempty"`
	// Forget marks a member that is gone for good but still held copies
	// when it was to be forgotten (CmdForgetMember): it is left, its copies
	// are re-created elsewhere, and the leader removes it once it holds
	// nothing. A rejoin clears it.
	Forget bool `json:"forget,omitempty"`
	// RestartGrace, while Status is StatusRestarting, is how long the
	// member may stay away (nanoseconds), as its restart command carried
	// it. The leader measures it on its own monotonic clock from when it
	// saw the status (control's AgeTracker), never from StatusSince.
	RestartGrace int64 `json:"restart_grace,omitempty"`
	// ReplacedBy names the member that takes this member's copies (agent
	// replace OLD NEW, CmdReplaceMember): the planner moves each copy to
	// it, add before remove, and the member leaves once it holds nothing.
	// A rejoin clears it.
	ReplacedBy string `json:"replaced_by,omitempty"`
}

// EffectiveWeight is the member's weight, at least 1.
func (m Member) EffectiveWeight() int {
	if m.Weight < 1 {
		return 1
	}
	return m.Weight
}

// CanHold reports whether the member may receive new copies of partitions.
func (m Member) CanHold() bool { return m.Status == StatusAlive || m.Status == StatusSuspect }

// CanLead reports whether the member may be a partition's primary.
func (m Member) CanLead() bool { return m.CanHold() && !m.AppUnhealthy }

// Migration is a copy of a partition in flight: Target is copying the
// partition from Source and becomes a replica only once its app
// acknowledges the copy (add before remove).
type Migration struct {
	// ID names the migration in the API (/v1/migrations/{id}/complete) and
	// in webhooks. It is unique for the life of the cluster.
	ID string `json:"id"`
	// Target is the node that receives the copy.
	Target string `json:"target"`
	// Source is the node to copy from: a holder of the partition when the
	// migration began, the primary unless its migration slots were all
	// taken (then a live replica, or a leaving holder).
	Source string `json:"source"`
	// Replaces, if set, is the holder this copy is meant to replace; it is
	// released once the copy completes.
	Replaces string `json:"replaces,omitempty"`
	// StartedAt is when the migration began, unix nanoseconds of the
	// proposing leader's wall clock, for display. The migration timeout is
	// measured on a monotonic clock instead (see Ages).
	StartedAt int64 `json:"started_at"`
}

// Partition is one shard of the app's data and where its copies live.
type Partition struct {
	// ID is the partition number, its index in the table, unique across
	// resources (the default resource's partitions are 0 to
	// Settings.Partitions-1).
	ID int `json:"id"`
	// Epoch goes up by one on every committed change to the partition's
	// placement (primary, replicas or migrations). Commands name the epoch
	// they were planned against and apply only if it still holds, and apps
	// use it as a fencing token.
	Epoch uint64 `json:"epoch"`
	// Primary is the node ID of the copy that takes writes; empty when no
	// live copy is left.
	Primary string `json:"primary"`
	// Replicas are the other holders, in a stable order.
	Replicas []string `json:"replicas"`
	// Migrations are the copies in flight, by target.
	Migrations []Migration `json:"migrations,omitempty"`
	// DataLost is set when the last copy that may still have the data was
	// reported lost by its app (ActionDropLostCopy): the partition keeps no
	// primary rather than get a new, empty one, until a holder that still
	// has the data is promoted (a failed holder that comes back).
	DataLost bool `json:"data_lost,omitempty"`
	// Pins are the operator's placements of this partition (agent move,
	// CmdSetPin): the planner keeps a copy on each pinned node, and the
	// primary on the node pinned as primary, until they are unpinned. A
	// pin on a node that cannot hold yields (see pin.go).
	Pins []Pin `json:"pins,omitempty"`
	// CopyFailures count the copies of this partition that failed (the
	// app refused them, or they timed out) per target node since the last
	// copy to that node succeeded: the planner backs off before trying the
	// node again, and gives up on it after Limits.MaxCopyFailures (see
	// copyfailure.go).
	CopyFailures []CopyFailure `json:"copy_failures,omitempty"`
	// Resource names the resource the partition belongs to; empty means
	// DefaultResource (every partition written before resources existed).
	Resource string `json:"resource,omitempty"`
	// KeyStart and KeyEnd are the key range [KeyStart, KeyEnd) the
	// partition owns within its resource (see keys.go). KeyEnd 0 means the
	// even range of a default-resource bootstrap partition (Cluster.KeyRange).
	KeyStart uint64 `json:"key_start,omitempty"`
	KeyEnd   uint64 `json:"key_end,omitempty"`
	// Retired is set on the partitions of a deleted resource and on a
	// split's parent once its children took over: they hold nothing, the
	// planner leaves them alone, and their IDs are not reused.
	Retired bool `json:"retired,omitempty"`
	// SplitInto, on a partition being split (or split), are its two
	// children; SplitBy is the primary whose app splits the data (see
	// split.go).
	SplitInto []int  `json:"split_into,omitempty"`
	SplitBy   string `json:"split_by,omitempty"`
	// SplitPending marks a child of a split that has not finished: it holds
	// nothing yet and the planner leaves it alone.
	SplitPending bool `json:"split_pending,omitempty"`
}

// Holders returns the primary (if any) followed by the replicas.
func (p Partition) Holders() []string {
	out := make([]string, 0, len(p.Replicas)+1)
	if p.Primary != "" {
		out = append(out, p.Primary)
	}
	return append(out, p.Replicas...)
}

// Holds reports whether node holds a copy (primary or replica) of p.
func (p Partition) Holds(node string) bool {
	if p.Primary == node {
		return true
	}
	for _, r := range p.Replicas {
		if r == node {
			return true
		}
	}
	return false
}

// MigrationTo returns the migration towards node, if any.
func (p Partition) MigrationTo(node string) (Migration, bool) {
	for _, m := range p.Migrations {
		if m.Target == node {
			return m, true
		}
	}
	return Migration{}, false
}

// Clone returns a deep copy.
func (p Partition) Clone() Partition {
	c := p
	c.Replicas = append([]string(nil), p.Replicas...)
	if p.SplitInto != nil {
		c.SplitInto = append([]int(nil), p.SplitInto...)
	}
	if p.Migrations != nil {
		c.Migrations = append([]Migration(nil), p.Migrations...)
	}
	if p.Pins != nil {
		c.Pins = append([]Pin(nil), p.Pins...)
	}
	if p.CopyFailures != nil {
		c.CopyFailures = append([]CopyFailure(nil), p.CopyFailures...)
	}
	return c
}

// Settings are the default resource's parameters, set at bootstrap.
type Settings struct {
	// Partitions is how many partitions the default resource was created
	// with.
	Partitions int `json:"partitions"`
	// ReplicationFactor is how many copies (primary included) each
	// partition of the default resource should have, as set at bootstrap
	// (a change at run time goes to Cluster.DefaultReplicationFactor, so
	// that the bootstrap flags can still be checked against these).
	ReplicationFactor int `json:"replication_factor"`
}

// Validate checks the settings.
func (s Settings) Validate() error {
	if s.Partitions < 1 || s.Partitions > MaxPartitions {
		return fmt.Errorf("failover: partitions must be between 1 and %d, got %d", MaxPartitions, s.Partitions)
	}
	if s.ReplicationFactor < 1 || s.ReplicationFactor > MaxReplicationFactor {
		return fmt.Errorf("failover: replication factor must be between 1 and %d, got %d", MaxReplicationFactor, s.ReplicationFactor)
	}
	return nil
}

const (
	// MaxPartitions bounds the partition table so that one snapshot stays a
	// few megabytes.
	MaxPartitions = 65536
	// MaxReplicationFactor: more copies than this is a configuration error
	// rather than a deliberate choice.
	MaxReplicationFactor = 7
)

// Cluster is the whole replicated state. Every agent holds an identical copy,
// built by applying the same raft log.
type Cluster struct {
	// Bootstrapped is set by the first command; before it the cluster has no
	// settings and no partition table.
	Bootstrapped bool `json:"bootstrapped"`
	// Settings are the default resource's, set at bootstrap.
	Settings Settings `json:"settings"`
	// Resources are the resources other than the default one, by name.
	Resources []Resource `json:"resources,omitempty"`
	// DefaultReplicationFactor, when not 0, is the default resource's
	// replication factor as changed at run time (CmdSetReplicationFactor).
	DefaultReplicationFactor int `json:"default_replication_factor,omitempty"`
	// DefaultTargetSize is the default resource's target size
	// (CmdSetTargetSize; 0: no automatic splits).
	DefaultTargetSize int64 `json:"default_target_size_bytes,omitempty"`
	// DefaultZones and DefaultNodes are the default resource's zones rule
	// and node selector (CmdSetPlacement; "" and "": spread, every node).
	DefaultZones ZonesRule `json:"default_zones,omitempty"`
	DefaultNodes string    `json:"default_nodes,omitempty"`
	// Members by node ID.
	Members map[string]Member `json:"members"`
	// Partitions indexed by ID.
	Partitions []Partition `json:"partitions"`
	// NextMigration numbers migrations so that IDs never repeat.
	NextMigration uint64 `json:"next_migration"`
	// Maintenance is set by an operator (agent maintenance on): automatic
	// removals of failed members are frozen cluster-wide until it is
	// cleared, and the planner moves nothing that is not needed to keep
	// data safe (no rebalancing, no zone-spread moves, no removal of
	// surplus copies). Promotions of partitions led by failed, leaving or
	// left members, copies that restore the replication factor, and the
	// operator's own moves (pins, replace) still happen.
	Maintenance bool `json:"maintenance,omitempty"`
	// Rolling is the last rolling restart (agent rolling-restart), kept in
	// raft so that a new leader carries it on; nil before the first.
	Rolling *RollingRestart `json:"rolling,omitempty"`
}

// NewCluster returns an empty, not yet bootstrapped cluster.
func NewCluster() *Cluster {
	return &Cluster{Members: map[string]Member{}}
}

// Clone returns a deep copy that shares nothing with c.
func (c *Cluster) Clone() *Cluster {
	out := &Cluster{
		Bootstrapped:  c.Bootstrapped,
		Settings:      c.Settings,
		Members:       make(map[string]Member, len(c.Members)),
		Partitions:    make([]Partition, len(c.Partitions)),
		NextMigration: c.NextMigration,
		Maintenance:   c.Maintenance,
		Rolling:       c.Rolling.Clone(),

		DefaultReplicationFactor: c.DefaultReplicationFactor,
		DefaultTargetSize:        c.DefaultTargetSize,
		DefaultZones:             c.DefaultZones,
		DefaultNodes:             c.DefaultNodes,
	}
	if c.Resources != nil {
		out.Resources = append([]Resource(nil), c.Resources...)
	}
	for id, m := range c.Members {
		out.Members[id] = m
	}
	for i, p := range c.Partitions {
		out.Partitions[i] = p.Clone()
	}
	return out
}

// MemberIDs returns the member IDs in sorted order (the only order the
// planner ever iterates in, so that map order never leaks into a result).
func (c *Cluster) MemberIDs() []string {
	ids := make([]string, 0, len(c.Members))
	for id := range c.Members {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Validate checks the structural invariants that must hold after every
// command: partition IDs match their index, no node holds two copies of one
// partition, every holder is a known member.
func (c *Cluster) Validate() error {
	if !c.Bootstrapped {
		if len(c.Partitions) != 0 {
			return errors.New("failover: partitions before bootstrap")
		}
		return nil
	}
	if err := c.Settings.Validate(); err != nil {
		return err
	}
	if len(c.Partitions) < c.Settings.Partitions {
		return fmt.Errorf("failover: %d partitions in table, settings say %d", len(c.Partitions), c.Settings.Partitions)
	}
	if err := c.validateResources(); err != nil {
		return err
	}
	for id, m := range c.Members {
		if id == "" || id != m.ID {
			return fmt.Errorf("failover: member key %q does not match its ID %q", id, m.ID)
		}
		if !m.Status.Valid() {
			return fmt.Errorf("failover: member %q has unknown status %q", id, m.Status)
		}
	}
	for i, p := range c.Partitions {
		if p.ID != i {
			return fmt.Errorf("failover: partition at index %d has ID %d", i, p.ID)
		}
		seen := map[string]bool{}
		for _, h := range p.Holders() {
			if seen[h] {
				return fmt.Errorf("failover: partition %d holds %q twice", i, h)
			}
			seen[h] = true
			if _, ok := c.Members[h]; !ok {
				return fmt.Errorf("failover: partition %d held by unknown node %q", i, h)
			}
		}
		for _, m := range p.Migrations {
			if seen[m.Target] {
				return fmt.Errorf("failover: partition %d migrates to %q, which already holds it", i, m.Target)
			}
			seen[m.Target] = true
		}
	}
	return nil
}
