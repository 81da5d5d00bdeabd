package failover

import (
	"errors"
	"fmt"
)

// Pins: the operator's hand on the placement (agent move P NODE
// [-primary], agent move P -unpin).
//
// A pin says "keep a copy of this partition on this node" and, with
// Primary, "and let it lead". The planner honours pins in repair and in
// rebalancing: a pinned node that lacks the partition gets a copy (add
// before remove, replacing an unpinned holder), a primary pin is a
// promotion, a pinned copy is never the surplus one dropped or the one a
// zone-spread move takes away, and the rebalancer leaves pinned partitions
// alone. Safety comes first: a pin on a node that cannot hold or lead
// (failed, leaving, left, app-unhealthy) yields, so promotions and copies
// that restore the replication factor never wait for it, and the action's
// reasons say so.

// Pin is one operator placement of a partition.
type Pin struct {
	// Node is the pinned node's ID.
	Node string `json:"node"`
	// Primary pins the primary role on Node as well. At most one pin of a
	// partition has it.
	Primary bool `json:"primary,omitempty"`
}

// PinChange is the body of CmdSetPin.
type PinChange struct {
	// Partition is the partition pinned or unpinned.
	Partition int `json:"partition"`
	// Node is the node to pin; with Unpin, the node to unpin ("" unpins
	// every pin of the partition).
	Node string `json:"node,omitempty"`
	// Primary pins the primary role too (a primary pin on another node
	// becomes a plain pin).
	Primary bool `json:"primary,omitempty"`
	// Unpin removes pins instead of adding one.
	Unpin bool `json:"unpin,omitempty"`
}

// ErrNotPinned is returned when unpinning a node that has no pin.
var ErrNotPinned = errors.New("failover: not pinned")

// CheckPin reports why ch cannot apply to c, or nil. It is what CmdSetPin
// checks before it changes anything, for callers that want the error
// before they propose the command.
func (c *Cluster) CheckPin(ch PinChange) error {
	if !c.Bootstrapped {
		return errors.New("failover: pin before bootstrap")
	}
	if ch.Partition < 0 || ch.Partition >= len(c.Partitions) {
		return fmt.Errorf("failover: no partition %d (the cluster has %d: 0 to %d)", ch.Partition, len(c.Partitions), len(c.Partitions)-1)
	}
	part := c.Partitions[ch.Partition]
	if ch.Unpin {
		if ch.Node != "" && pinIndex(part.Pins, ch.Node) < 0 {
			return fmt.Errorf("%w: partition %d has no pin on %q", ErrNotPinned, ch.Partition, ch.Node)
		}
		return nil
	}
	m, ok := c.Members[ch.Node]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownMember, ch.Node)
	}
	if !m.CanHold() {
		return fmt.Errorf("failover: %q is %s: only an alive member can be pinned", ch.Node, m.Status)
	}
	if ch.Primary && m.AppUnhealthy {
		return fmt.Errorf("failover: the app of %q is unhealthy: it cannot be pinned as primary", ch.Node)
	}
	if m.ReplacedBy != "" {
		return fmt.Errorf("failover: %q is being replaced by %q: pin that one instead", ch.Node, m.ReplacedBy)
	}
	if part.Retired {
		return fmt.Errorf("failover: partition %d is retired: it holds no data to pin", ch.Partition)
	}
	if sel, _ := ParseNodeSelector(c.PlacementOf(part.ResourceName()).Nodes); !sel.Matches(m.Tags) {
		return fmt.Errorf("failover: %q does not match the node selector %q of resource %s, which partition %d belongs to: pin a node it matches, or change the selector (agent resource set-nodes)",
			ch.Node, c.PlacementOf(part.ResourceName()).Nodes, part.ResourceName(), ch.Partition)
	}
	if pinIndex(part.Pins, ch.Node) < 0 && len(part.Pins) >= c.replicationFactorOf(&part) {
		return fmt.Errorf("failover: partition %d already has %d pins, as many as its replication factor: unpin one first", ch.Partition, len(part.Pins))
	}
	return nil
}

// applyPin applies CmdSetPin. Pins change no placement by themselves, so
// the partition's epoch stays; the planner's next round acts on them.
func (c *Cluster) applyPin(ch *PinChange) error {
	if ch == nil {
		return errors.New("failover: set_pin without a pin")
	}
	if err := c.CheckPin(*ch); err != nil {
		return err
	}
	part := &c.Partitions[ch.Partition]
	if ch.Unpin {
		if ch.Node == "" {
			part.Pins = nil
			return nil
		}
		part.Pins = dropPin(part.Pins, ch.Node)
		return nil
	}
	pins := make([]Pin, 0, len(part.Pins)+1)
	for _, pin := range part.Pins {
		if pin.Node == ch.Node {
			continue
		}
		if ch.Primary {
			pin.Primary = false
		}
		pins = append(pins, pin)
	}
	part.Pins = append(pins, Pin{Node: ch.Node, Primary: ch.Primary})
	return nil
}

func pinIndex(pins []Pin, node string) int {
	for i, p := range pins {
		if p.Node == node {
			return i
		}
	}
	return -1
}

// dropPin returns pins without node's, never sharing memory with pins.
func dropPin(pins []Pin, node string) []Pin {
	var out []Pin
	for _, p := range pins {
		if p.Node != node {
			out = append(out, p)
		}
	}
	return out
}

// Pinned reports whether node has a pin on p.
func (p Partition) Pinned(node string) bool { return pinIndex(p.Pins, node) >= 0 }

// PinnedPrimary is the node pinned as p's primary, if any.
func (p Partition) PinnedPrimary() (string, bool) {
	for _, pin := range p.Pins {
		if pin.Primary {
			return pin.Node, true
		}
	}
	return "", false
}

// forgetNode drops every pin and copy-failure record that names node: a
// member that is removed leaves nothing behind that would name it.
func (c *Cluster) forgetNode(node string) {
	for i := range c.Partitions {
		part := &c.Partitions[i]
		if pinIndex(part.Pins, node) >= 0 {
			part.Pins = dropPin(part.Pins, node)
		}
		part.CopyFailures = dropCopyFailure(part.CopyFailures, node)
	}
}
