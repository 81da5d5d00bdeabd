package hooks

import (
	"errors"
	"fmt"

	"github.com/steward-dev/steward/failover"
)

// Event types. The strings are part of the webhook contract.
const (
	// TypeAssign: hold Partition in Role at Epoch. With a Source, copy the
	// partition from Source.AppAddr first (answer 202 and call AckMigration
	// when the copy is done, or do it within the request and answer 204).
	TypeAssign = "partition.assign"
	// TypePromote: this node's copy of Partition is now its primary.
	TypePromote = "partition.promote"
	// TypeDemote: this node's copy of Partition is now a replica; refuse
	// writes for it.
	TypeDemote = "partition.demote"
	// TypeRelease: this node no longer holds Partition; drop it.
	TypeRelease = "partition.release"
	// TypeSplit: this node, the primary of Partition, is to split it into
	// Children: stop taking writes for Partition, write each child's keys
	// (those whose KeyHash is in its range) into the child durably, and
	// acknowledge. Reads of Partition may go on. The children are then
	// assigned (as primary, at their Epoch, with no source: the app has
	// them) and Partition released; until then writes wait (answer them
	// with a retryable error).
	TypeSplit = "partition.split"
	// TypeRejoin: the node came back into the cluster; Partitions lists the
	// partitions the app may keep from before (they missed what was
	// written while it was away: catch up before acknowledging). No
	// partition event is sent until it is acknowledged.
	TypeRejoin = "node.rejoin"
	// TypeQuorum: the cluster gained or lost its raft quorum (Quorum is
	// QuorumOK or QuorumLost). Without quorum no failover can happen.
	TypeQuorum = "cluster.quorum"
)

// Roles a node can have for a partition.
const (
	// RolePrimary takes the partition's writes.
	RolePrimary = "primary"
	// RoleReplica keeps a copy and follows the primary.
	RoleReplica = "replica"
	// RoleNone: the node does not hold the partition.
	RoleNone = "none"
)

// Values of Event.Quorum.
const (
	QuorumOK   = "ok"
	QuorumLost = "lost"
)

// Event is the JSON body of one webhook.
type Event struct {
	// ID is the delivery's idempotency key, equal to its webhook-id header.
	// It is stable per (node, partition, epoch, type): every retry and every
	// redelivery after a crash carries the same ID.
	ID string `json:"id"`
	// Type is one of the Type constants.
	Type string `json:"type"`
	// NodeID is the -node-id of the agent (and so of this app).
	NodeID string `json:"node_id"`
	// Partition is the partition concerned (0 for node-wide events). IDs
	// are unique across resources.
	Partition int `json:"partition"`
	// Resource names the partition's resource ("default" for the one the
	// bootstrap flags make); empty for node-wide events.
	Resource string `json:"resource,omitempty"`
	// Epoch is the partition's placement epoch, the fencing token: an app
	// must ignore an event older than one it has applied for the partition.
	Epoch uint64 `json:"epoch"`
	// Role is the node's role for the partition after the event (empty for
	// node-wide events).
	Role string `json:"role"`
	// Source, on an assign, is where to copy the partition from.
	Source *Source `json:"source,omitempty"`
	// MigrationID, with a Source, names the copy for AckMigration.
	MigrationID string `json:"migration_id,omitempty"`
	// Children, on partition.split, are the partition's two children with
	// their key ranges and the epoch they will be assigned at.
	Children []failover.SplitChild `json:"children,omitempty"`
	// Partitions, on node.rejoin, are the partitions it may still hold.
	Partitions []int `json:"partitions,omitempty"`
	// Quorum, on cluster.quorum, is QuorumOK or QuorumLost.
	Quorum string `json:"quorum,omitempty"`
	// Timestamp is when the agent created the event, unix seconds.
	Timestamp int64 `json:"timestamp"`
}

// Source is a peer to copy a partition from.
type Source struct {
	// NodeID is the peer's -node-id.
	NodeID string `json:"node_id"`
	// AppAddr is the peer app's data address (host:port).
	AppAddr string `json:"app_addr"`
}

// ErrInvalidEvent is wrapped by every validation failure of an event body.
var ErrInvalidEvent = errors.New("hooks: invalid event")

// ErrUnknownType is returned (wrapped) by Validate and ParseEvent for an
// event whose type this version does not know. The event is otherwise
// decoded; Handler acknowledges such events so that a newer agent never
// blocks an older app.
var ErrUnknownType = errors.New("hooks: unknown event type")

// KnownType reports whether t is one of the Type constants.
func KnownType(t string) bool {
	switch t {
	case TypeAssign, TypePromote, TypeDemote, TypeRelease, TypeSplit, TypeRejoin, TypeQuorum:
		return true
	}
	return false
}

// IsPartitionEvent reports whether t is about one partition (as opposed to
// the whole node or cluster).
func IsPartitionEvent(t string) bool {
	switch t {
	case TypeAssign, TypePromote, TypeDemote, TypeRelease, TypeSplit:
		return true
	}
	return false
}

// SplitDoneHeader is the response header by which an app acknowledges a
// partition.split: a 2xx answer without it is not an acknowledgement (the
// agent delivers the split again), so that an app that acknowledges every
// event it does not know can never have a partition split under it.
// Handler sets it when OnSplit succeeds.
const SplitDoneHeader = "Steward-Split"

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidEvent, fmt.Sprintf(format, args...))
}

// Validate checks that the event is well formed: a known type, the role that
// type implies, a non-negative partition, a source only on an assign.
func (e Event) Validate() error {
	if e.ID == "" {
		return invalid("missing id")
	}
	if e.NodeID == "" {
		return invalid("missing node_id")
	}
	if e.Partition < 0 {
		return invalid("negative partition %d", e.Partition)
	}
	if !KnownType(e.Type) {
		return fmt.Errorf("%w %q", ErrUnknownType, e.Type)
	}
	switch e.Type {
	case TypeAssign:
		if e.Role != RolePrimary && e.Role != RoleReplica {
			return invalid("%s with role %q", e.Type, e.Role)
		}
	case TypePromote:
		if e.Role != RolePrimary {
			return invalid("%s with role %q", e.Type, e.Role)
		}
	case TypeDemote:
		if e.Role != RoleReplica {
			return invalid("%s with role %q", e.Type, e.Role)
		}
	case TypeRelease:
		if e.Role != RoleNone {
			return invalid("%s with role %q", e.Type, e.Role)
		}
	case TypeSplit:
		if e.Role != RolePrimary {
			return invalid("%s with role %q", e.Type, e.Role)
		}
		if len(e.Children) != 2 || e.Children[0].KeyStart >= e.Children[0].KeyEnd || e.Children[0].KeyEnd != e.Children[1].KeyStart || e.Children[1].KeyStart >= e.Children[1].KeyEnd {
			return invalid("%s without two adjacent children: %+v", e.Type, e.Children)
		}
	case TypeRejoin:
		for _, p := range e.Partitions {
			if p < 0 {
				return invalid("negative partition %d in partitions", p)
			}
		}
	case TypeQuorum:
		if e.Quorum != QuorumOK && e.Quorum != QuorumLost {
			return invalid("quorum %q", e.Quorum)
		}
	}
	if e.Source != nil {
		if e.Type != TypeAssign {
			return invalid("source on %s", e.Type)
		}
		if e.Source.NodeID == "" || e.Source.AppAddr == "" {
			return invalid("source without node_id or app_addr")
		}
	}
	if e.MigrationID != "" && e.Source == nil {
		return invalid("migration_id without source")
	}
	return nil
}
