package failover

import (
	"errors"
	"fmt"
	"sort"
)

// Splits: a partition's key range cut in two.
//
// CmdSplitPartition starts a split of partition P: two child rows are
// appended to the table (the next free IDs), each owning one half of P's
// key range, pending (no holders, not planned for), and P records them
// (SplitInto) with the primary that is to split its data (SplitBy); P's
// epoch goes up. P keeps serving reads; its primary's agent sends its app a
// partition.split event (parent, children, their key ranges and epochs),
// and the app stops taking writes for P, writes each child's keys into the
// child durably and acknowledges. The agent then commits CmdFinishSplit:
// the children become active with P's primary as their only copy (at
// P's epoch plus one), P is retired (every holder's app is told to release it), and the
// planner re-creates the children's replicas from that primary like any
// missing copy, then balances them like any partition. Making the replicas
// by copy from the one app that split the data, rather than letting each
// old replica split its own copy, means no replica can start a child from
// a copy that missed a write.
//
// While P splits the planner leaves it alone except for promotions; a
// change of P's primary before the split finishes (a failure) cancels the
// split: its pending children are retired unused. At most
// MaxSplitsInFlight splits run at once.

// MaxSplitsInFlight bounds the splits started and not yet finished.
const MaxSplitsInFlight = 4

// SplitChild is one child of a split, as the partition.split event
// describes it.
type SplitChild struct {
	Partition int    `json:"partition"`
	KeyStart  uint64 `json:"key_start"`
	KeyEnd    uint64 `json:"key_end"`
	// Epoch is the epoch the child will have once active: one above the
	// parent's, so that every version the app stamped on the parent's keys
	// is older than what the child's primary stamps (apps that order writes
	// by epoch need that).
	Epoch uint64 `json:"epoch"`
}

// Splitting reports whether p is being split.
func (p Partition) Splitting() bool { return len(p.SplitInto) > 0 && !p.Retired }

// SplitChildren describes the children of p's split, for its event.
func (c *Cluster) SplitChildren(p *Partition) []SplitChild {
	out := make([]SplitChild, 0, len(p.SplitInto))
	for _, id := range p.SplitInto {
		if id < 0 || id >= len(c.Partitions) {
			continue
		}
		ch := &c.Partitions[id]
		out = append(out, SplitChild{Partition: id, KeyStart: ch.KeyStart, KeyEnd: ch.KeyEnd, Epoch: p.Epoch + 1})
	}
	return out
}

// SplitsInFlight counts the partitions being split.
func (c *Cluster) SplitsInFlight() int {
	n := 0
	for i := range c.Partitions {
		if c.Partitions[i].Splitting() {
			n++
		}
	}
	return n
}

// CheckSplit returns why partition id (at epoch, 0 for any) cannot be split
// now, or nil.
func (c *Cluster) CheckSplit(id int, epoch uint64) error {
	if !c.Bootstrapped {
		return errors.New("failover: split before bootstrap")
	}
	if id < 0 || id >= len(c.Partitions) {
		return fmt.Errorf("failover: no partition %d", id)
	}
	p := &c.Partitions[id]
	switch {
	case p.Retired:
		return fmt.Errorf("failover: partition %d is retired (split or deleted)", id)
	case p.SplitPending:
		return fmt.Errorf("failover: partition %d is the child of a split that has not finished", id)
	case p.Splitting():
		return fmt.Errorf("failover: partition %d is already being split", id)
	case epoch != 0 && p.Epoch != epoch:
		return fmt.Errorf("failover: partition %d is at epoch %d, not %d", id, p.Epoch, epoch)
	case p.Primary == "":
		return fmt.Errorf("failover: partition %d has no primary to split its data", id)
	}
	if m, ok := c.Members[p.Primary]; !ok || !m.CanLead() {
		return fmt.Errorf("failover: the primary of partition %d, %q, cannot lead now", id, p.Primary)
	}
	if start, end := c.KeyRange(p); end-start < 2 {
		return fmt.Errorf("failover: partition %d owns a single key hash: it cannot be split", id)
	}
	if n := c.SplitsInFlight(); n >= MaxSplitsInFlight {
		return fmt.Errorf("failover: %d splits are in flight already, the most at once", n)
	}
	if c.ActivePartitions()+1 > MaxPartitions || len(c.Partitions)+2 > MaxTableRows {
		return fmt.Errorf("failover: the table is full (%d partitions)", c.ActivePartitions())
	}
	return nil
}

func (c *Cluster) applySplit(cmd Command) (Result, error) {
	if cmd.Split == nil {
		return Result{}, errors.New("failover: split without a partition")
	}
	id := cmd.Split.Partition
	if err := c.CheckSplit(id, cmd.Split.Epoch); err != nil {
		return Result{}, err
	}
	p := &c.Partitions[id]
	start, end := c.KeyRange(p)
	mid := start + (end-start)/2
	base := len(c.Partitions)
	for i, r := range [][2]uint64{{start, mid}, {mid, end}} {
		c.Partitions = append(c.Partitions, Partition{ID: base + i, Epoch: p.Epoch + 1, Replicas: []string{},
			Resource: p.Resource, KeyStart: r[0], KeyEnd: r[1], SplitPending: true})
	}
	p = &c.Partitions[id] // the append may have moved the table
	p.SplitInto = []int{base, base + 1}
	p.SplitBy = p.Primary
	p.Epoch++
	return Result{Applied: 1, Changed: []int{id}}, nil
}

// applyFinishSplit activates the children once the app of SplitBy has
// split the data (Command.Node, at the parent's epoch Command.Split.Epoch).
func (c *Cluster) applyFinishSplit(cmd Command) (Result, error) {
	if cmd.Split == nil {
		return Result{}, errors.New("failover: finish split without a partition")
	}
	id := cmd.Split.Partition
	if id < 0 || id >= len(c.Partitions) || !c.Partitions[id].Splitting() {
		return Result{}, fmt.Errorf("failover: partition %d is not being split", id)
	}
	p := &c.Partitions[id]
	if p.Epoch != cmd.Split.Epoch {
		return Result{}, fmt.Errorf("failover: partition %d is at epoch %d, not %d: the split is to be acknowledged again", id, p.Epoch, cmd.Split.Epoch)
	}
	if cmd.Node == "" || cmd.Node != p.SplitBy || p.Primary != p.SplitBy {
		return Result{}, fmt.Errorf("failover: partition %d is split by %q, not %q", id, p.SplitBy, cmd.Node)
	}
	changed := []int{id}
	for _, ch := range p.SplitInto {
		child := &c.Partitions[ch]
		child.SplitPending = false
		child.Primary = p.SplitBy
		child.Replicas = []string{}
		child.Epoch = p.Epoch + 1
		changed = append(changed, ch)
	}
	p.retire()
	sort.Ints(changed)
	return Result{Applied: 1, Changed: changed}, nil
}

// cancelSplitIfLeaderChanged calls p's split off when its primary is no
// longer the one that was to split the data: the pending children are
// retired unused.
func (c *Cluster) cancelSplitIfLeaderChanged(p *Partition) {
	if !p.Splitting() || p.Primary == p.SplitBy {
		return
	}
	for _, ch := range p.SplitInto {
		if ch >= 0 && ch < len(c.Partitions) {
			c.Partitions[ch].SplitPending = false
			c.Partitions[ch].Retired = true
		}
	}
	p.SplitInto = nil
	p.SplitBy = ""
}

// SplitRequest names the partition a split command is about, and the
// epoch it was planned against (CmdSplitPartition, 0: any) or the split
// acknowledged at (CmdFinishSplit).
type SplitRequest struct {
	Partition int    `json:"partition"`
	Epoch     uint64 `json:"epoch,omitempty"`
}

// SplitJitter is the fraction (±) by which a partition's split threshold
// differs from its resource's target size, so that partitions filled
// evenly do not all split at once.
const SplitJitter = 0.2

// SplitThreshold is the size above which partition id of a resource with
// target size target is split: target × (1 ± SplitJitter), the factor a
// fixed function of the partition's ID (the same on every agent and every
// run).
func SplitThreshold(id int, target int64) int64 {
	u := float64(mix(uint64(id), 0x5EED)>>11) / float64(1<<53) // [0, 1)
	return int64(float64(target) * (1 - SplitJitter + 2*SplitJitter*u))
}

// PlanSplits returns the partitions to split now, given their sizes in
// bytes (the primaries' reports): those of a resource with a target size
// whose size is above their jittered threshold (SplitThreshold), largest
// over its threshold first, as many as MaxSplitsInFlight leaves room for.
// It is pure; the leader commits one CmdSplitPartition for each.
func PlanSplits(c *Cluster, sizes map[int]int64) []SplitRequest {
	if c == nil || !c.Bootstrapped || len(sizes) == 0 {
		return nil
	}
	room := MaxSplitsInFlight - c.SplitsInFlight()
	if room <= 0 {
		return nil
	}
	targets := map[string]int64{}
	for _, r := range c.ResourceList() {
		if r.TargetSize > 0 {
			targets[r.Name] = r.TargetSize
		}
	}
	type over struct {
		id    int
		ratio float64
	}
	var cands []over
	for id, size := range sizes {
		if id < 0 || id >= len(c.Partitions) {
			continue
		}
		p := &c.Partitions[id]
		target, ok := targets[p.ResourceName()]
		if !ok || c.CheckSplit(id, 0) != nil {
			continue
		}
		if th := SplitThreshold(id, target); size > th {
			cands = append(cands, over{id, float64(size) / float64(th)})
		}
	}
	sort.Slice(cands, func(i, j int) bool {
		if cands[i].ratio != cands[j].ratio {
			return cands[i].ratio > cands[j].ratio
		}
		return cands[i].id < cands[j].id
	})
	var out []SplitRequest
	for _, o := range cands {
		if len(out) == room {
			break
		}
		out = append(out, SplitRequest{Partition: o.id, Epoch: c.Partitions[o.id].Epoch})
	}
	return out
}

// PrimarySizes are the partitions' sizes as their primaries' apps last
// reported them (figs), the input of PlanSplits: a partition whose primary
// has not reported it is left out.
func PrimarySizes(c *Cluster, figs *Figures) map[int]int64 {
	if c == nil || figs == nil {
		return nil
	}
	out := map[int]int64{}
	for i := range c.Partitions {
		p := &c.Partitions[i]
		if p.Primary == "" || p.Retired || p.SplitPending {
			continue
		}
		if cf, ok := figs.Nodes[p.Primary].Copies[p.ID]; ok {
			out[p.ID] = cf.Size
		}
	}
	return out
}
