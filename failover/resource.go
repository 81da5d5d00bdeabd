package failover

import (
	"errors"
	"fmt"
	"sort"
)

// Resources: named sets of partitions (a table of a database, a topic of a
// queue), each with its own partition count and replication factor, in one
// partition table.
//
// The default resource is the one the bootstrap flags make. Its settings
// stay in Cluster.Settings as the bootstrap set them (a replication factor
// changed at run time is in Cluster.DefaultReplicationFactor), so that a raft log or a snapshot
// written before resources existed applies unchanged: its partitions carry
// no resource name and no key range, and mean the default resource with
// even key ranges. Every other resource is in Cluster.Resources.
//
// Partition IDs are unique in the whole table, across resources: a
// resource created later gets the next free IDs, and a deleted resource's
// partitions stay in the table as retired rows (no holders), so an ID is
// never reused and the apps, which key their data and their events by
// partition ID, never confuse two partitions.

// DefaultResource names the resource the bootstrap flags create.
const DefaultResource = "default"

// MaxResourceNameLength keeps resource names short enough for log lines and
// URLs.
const MaxResourceNameLength = 64

// Resource is one named set of partitions.
type Resource struct {
	// Name identifies the resource: letters, digits, '-', '_' and '.'.
	Name string `json:"name"`
	// Partitions is the partition count the resource was created with.
	Partitions int `json:"partitions"`
	// ReplicationFactor is how many copies (primary included) each of its
	// partitions should have. It may change at run time.
	ReplicationFactor int `json:"replication_factor"`
	// TargetSize, when above 0, is the size in bytes above which a
	// partition is split automatically (with a jittered threshold; see
	// PlanSplits).
	TargetSize int64 `json:"target_size_bytes,omitempty"`
	// Zones is the resource's zones rule ("" is ZonesSpread; see
	// placement.go).
	Zones ZonesRule `json:"zones,omitempty"`
	// Nodes is the resource's node selector, "k=v,k2=v2" with its keys
	// sorted: only members whose tags match hold its copies ("" : every
	// member).
	Nodes string `json:"nodes,omitempty"`
}

// Validate checks the resource's name and settings.
func (r Resource) Validate() error {
	if err := ValidateResourceName(r.Name); err != nil {
		return err
	}
	if r.TargetSize < 0 {
		return fmt.Errorf("failover: resource %q: the target size must not be negative, got %d", r.Name, r.TargetSize)
	}
	if err := validatePlacement(r.Name, r.Zones, r.Nodes); err != nil {
		return err
	}
	return Settings{Partitions: r.Partitions, ReplicationFactor: r.ReplicationFactor}.Validate()
}

// ValidateResourceName checks a resource name.
func ValidateResourceName(name string) error {
	if name == "" {
		return errors.New("failover: resource name is empty")
	}
	if len(name) > MaxResourceNameLength {
		return fmt.Errorf("failover: resource name %q is longer than %d bytes", name, MaxResourceNameLength)
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
		if !ok {
			return fmt.Errorf("failover: resource name %q may hold only letters, digits, '-', '_' and '.'", name)
		}
	}
	return nil
}

// ResourceName is the resource p belongs to (DefaultResource for a
// partition written before resources existed).
func (p Partition) ResourceName() string {
	if p.Resource == "" {
		return DefaultResource
	}
	return p.Resource
}

// ErrUnknownResource is returned for commands about a resource the cluster
// does not know.
var ErrUnknownResource = errors.New("failover: unknown resource")

// Resource returns the named resource's current settings.
func (c *Cluster) Resource(name string) (Resource, bool) {
	if name == DefaultResource {
		if !c.Bootstrapped {
			return Resource{}, false
		}
		return Resource{Name: DefaultResource, Partitions: c.Settings.Partitions, ReplicationFactor: c.defaultReplicationFactor(), TargetSize: c.DefaultTargetSize,
			Zones: c.DefaultZones, Nodes: c.DefaultNodes}, true
	}
	for _, r := range c.Resources {
		if r.Name == name {
			return r, true
		}
	}
	return Resource{}, false
}

// ResourceList returns every resource, the default one first, then the
// others by name.
func (c *Cluster) ResourceList() []Resource {
	if !c.Bootstrapped {
		return nil
	}
	def, _ := c.Resource(DefaultResource)
	return append([]Resource{def}, c.Resources...)
}

// replicationFactorOf returns the replication factor the partition should
// have: 0 for a retired one.
func (c *Cluster) replicationFactorOf(p *Partition) int {
	if p.Retired || p.SplitPending {
		return 0
	}
	if p.Resource == "" || p.Resource == DefaultResource {
		return c.defaultReplicationFactor()
	}
	for i := range c.Resources {
		if c.Resources[i].Name == p.Resource {
			return c.Resources[i].ReplicationFactor
		}
	}
	return 0
}

func (c *Cluster) defaultReplicationFactor() int {
	if c.DefaultReplicationFactor != 0 {
		return c.DefaultReplicationFactor
	}
	return c.Settings.ReplicationFactor
}

// ActivePartitions counts the partitions that are neither retired nor a
// pending child of a split.
func (c *Cluster) ActivePartitions() int {
	n := 0
	for i := range c.Partitions {
		if !c.Partitions[i].Retired && !c.Partitions[i].SplitPending {
			n++
		}
	}
	return n
}

// LayoutResource computes the partitions of a new resource r over the
// members of c, as InitialTable lays out a bootstrap table (balanced
// within the resource), numbered from the table's next free ID, with even
// key ranges. The proposer computes it once and carries it in the
// CmdCreateResource entry, as it does the bootstrap table.
func LayoutResource(c *Cluster, r Resource) []Partition {
	pl := Placement{Zones: r.Zones.orSpread(), Nodes: r.Nodes}
	members := eligibleMembers(c.Members, pl)
	rf := r.ReplicationFactor
	if z := distinctZones(members); pl.Zones == ZonesStrict && rf > z {
		rf = z // one copy per zone, no more
	}
	table := InitialTable(Settings{Partitions: r.Partitions, ReplicationFactor: max(rf, 1)}, members)
	base := len(c.Partitions)
	for i := range table {
		table[i].ID = base + i
		table[i].Resource = r.Name
		table[i].KeyStart, table[i].KeyEnd = EvenKeyRange(i, r.Partitions)
	}
	return table
}

func (c *Cluster) applyCreateResource(cmd Command) error {
	if !c.Bootstrapped {
		return errors.New("failover: resource created before bootstrap")
	}
	if cmd.Resource == nil {
		return errors.New("failover: create resource without a resource")
	}
	r := *cmd.Resource
	if err := r.Validate(); err != nil {
		return err
	}
	if r.Zones == ZonesSpread {
		r.Zones = "" // one spelling in the state: "" is the default
	}
	if _, exists := c.Resource(r.Name); exists {
		return fmt.Errorf("failover: resource %q already exists", r.Name)
	}
	if c.ActivePartitions()+r.Partitions > MaxPartitions || len(c.Partitions)+r.Partitions > MaxTableRows {
		return fmt.Errorf("failover: resource %q: %d more partitions would exceed the table's limit of %d", r.Name, r.Partitions, MaxPartitions)
	}
	table := cmd.Table
	if table == nil {
		table = LayoutResource(c, r)
	} else {
		table = clonePartitions(table)
	}
	if len(table) != r.Partitions {
		return fmt.Errorf("failover: resource %q: table has %d partitions, settings say %d", r.Name, len(table), r.Partitions)
	}
	for i := range table {
		p := &table[i]
		start, end := EvenKeyRange(i, r.Partitions)
		if p.ID != len(c.Partitions)+i || p.Resource != r.Name || p.KeyStart != start || p.KeyEnd != end {
			return fmt.Errorf("failover: resource %q: partition %d is not the one its layout gives (ID %d, resource %q, keys %d-%d)", r.Name, i, p.ID, p.Resource, p.KeyStart, p.KeyEnd)
		}
		if p.Epoch == 0 || len(p.Migrations) > 0 || p.Retired {
			return fmt.Errorf("failover: resource %q: partition %d must start active at an epoch above 0 with no migration", r.Name, p.ID)
		}
		for _, h := range p.Holders() {
			if _, ok := c.Members[h]; !ok {
				return fmt.Errorf("failover: resource %q: partition %d held by unknown node %q", r.Name, p.ID, h)
			}
		}
	}
	c.Resources = append(c.Resources, r)
	sort.Slice(c.Resources, func(i, j int) bool { return c.Resources[i].Name < c.Resources[j].Name })
	c.Partitions = append(c.Partitions, table...)
	return nil
}

// applyDeleteResource retires every partition of the resource: their
// holders are dropped (the agents tell their apps to release them) and
// their rows stay, empty, so that their IDs are never reused.
func (c *Cluster) applyDeleteResource(cmd Command) (Result, error) {
	if cmd.Resource == nil {
		return Result{}, errors.New("failover: delete resource without a resource")
	}
	name := cmd.Resource.Name
	if name == DefaultResource {
		return Result{}, errors.New("failover: the default resource cannot be deleted")
	}
	i := -1
	for j, r := range c.Resources {
		if r.Name == name {
			i = j
		}
	}
	if i < 0 {
		return Result{}, fmt.Errorf("%w %q", ErrUnknownResource, name)
	}
	c.Resources = append(c.Resources[:i:i], c.Resources[i+1:]...)
	var res Result
	for pi := range c.Partitions {
		p := &c.Partitions[pi]
		if p.Resource != name || p.Retired {
			continue
		}
		p.retire()
		res.Applied++
		res.Changed = append(res.Changed, p.ID)
	}
	return res, nil
}

// retire empties p for good (a deleted resource's partition, a split
// parent): no copies, nothing in flight, no pins; its epoch goes up, so
// that every holder's agent releases it and no plan made before applies.
func (p *Partition) retire() {
	p.Retired = true
	p.Primary = ""
	p.Replicas = []string{}
	p.Migrations = nil
	p.DataLost = false
	p.Pins = nil
	p.CopyFailures = nil
	p.Epoch++
}

// applySetReplicationFactor changes a resource's replication factor. The
// planner then adds copies (add before remove) or drops surplus ones, as
// for any partition with too few or too many copies.
func (c *Cluster) applySetReplicationFactor(cmd Command) error {
	if cmd.Resource == nil {
		return errors.New("failover: replication factor change without a resource")
	}
	rf := cmd.Resource.ReplicationFactor
	if rf < 1 || rf > MaxReplicationFactor {
		return fmt.Errorf("failover: replication factor must be between 1 and %d, got %d", MaxReplicationFactor, rf)
	}
	name := cmd.Resource.Name
	if name == DefaultResource {
		if !c.Bootstrapped {
			return errors.New("failover: replication factor changed before bootstrap")
		}
		c.DefaultReplicationFactor = rf
		return nil
	}
	for i := range c.Resources {
		if c.Resources[i].Name == name {
			c.Resources[i].ReplicationFactor = rf
			return nil
		}
	}
	return fmt.Errorf("%w %q", ErrUnknownResource, name)
}

// applySetTargetSize sets the target size of the resource named by
// cmd.Resource to its TargetSize (0: no automatic splits).
func (c *Cluster) applySetTargetSize(cmd Command) error {
	if cmd.Resource == nil {
		return errors.New("failover: target size change without a resource")
	}
	size := cmd.Resource.TargetSize
	if size < 0 {
		return fmt.Errorf("failover: the target size must not be negative, got %d", size)
	}
	name := cmd.Resource.Name
	if name == DefaultResource {
		if !c.Bootstrapped {
			return errors.New("failover: target size changed before bootstrap")
		}
		c.DefaultTargetSize = size
		return nil
	}
	for i := range c.Resources {
		if c.Resources[i].Name == name {
			c.Resources[i].TargetSize = size
			return nil
		}
	}
	return fmt.Errorf("%w %q", ErrUnknownResource, name)
}

// validateResources checks the resource invariants of a bootstrapped
// cluster: known, distinct resources; every partition of a known resource
// or retired; the active partitions of each resource cover its key space
// exactly once.
func (c *Cluster) validateResources() error {
	if rf := c.DefaultReplicationFactor; rf < 0 || rf > MaxReplicationFactor {
		return fmt.Errorf("failover: default replication factor %d out of range", rf)
	}
	if c.DefaultTargetSize < 0 {
		return fmt.Errorf("failover: default target size %d is negative", c.DefaultTargetSize)
	}
	if err := validatePlacement(DefaultResource, c.DefaultZones, c.DefaultNodes); err != nil {
		return err
	}
	seen := map[string]bool{DefaultResource: true}
	for _, r := range c.Resources {
		if err := r.Validate(); err != nil {
			return err
		}
		if seen[r.Name] {
			return fmt.Errorf("failover: resource %q twice", r.Name)
		}
		seen[r.Name] = true
	}
	ranges := map[string][][2]uint64{}
	for i := range c.Partitions {
		p := &c.Partitions[i]
		if p.Retired || p.SplitPending {
			if len(p.Holders()) > 0 || len(p.Migrations) > 0 {
				return fmt.Errorf("failover: retired or pending partition %d has copies", p.ID)
			}
			continue
		}
		name := p.ResourceName()
		if !seen[name] {
			return fmt.Errorf("failover: partition %d belongs to unknown resource %q", p.ID, name)
		}
		start, end := c.KeyRange(p)
		ranges[name] = append(ranges[name], [2]uint64{start, end})
	}
	for name, rs := range ranges {
		sort.Slice(rs, func(i, j int) bool { return rs[i][0] < rs[j][0] })
		next := uint64(0)
		for _, r := range rs {
			if r[0] != next || r[1] <= r[0] {
				return fmt.Errorf("failover: resource %q: key ranges do not tile the key space at %d", name, next)
			}
			next = r[1]
		}
		if next != KeySpace {
			return fmt.Errorf("failover: resource %q: key ranges end at %d, not %d", name, next, KeySpace)
		}
	}
	return nil
}

// MaxTableRows bounds the rows of the table, retired ones included, so that
// creating and deleting resources cannot grow a snapshot without end.
const MaxTableRows = 4 * MaxPartitions
