package gossip

import (
	"fmt"
	"sync"
	"time"
)

// EventType says what happened to a remote node.
type EventType int

const (
	// EventJoin: the node is alive, first seen or back after dead or left.
	EventJoin EventType = iota + 1
	// EventSuspect: this node's own probe of the node failed; memberlist
	// now suspects it and it will be declared dead unless it refutes.
	EventSuspect
	// EventAlive: a node this member suspected answered a probe again
	// (the suspicion was refuted).
	EventAlive
	// EventDead: memberlist declared the node dead (failed, not left).
	EventDead
	// EventLeft: the node left gracefully (Gossip.Leave).
	EventLeft
	// EventUpdate: the node's metadata changed.
	EventUpdate
)

// String returns "join", "suspect", "alive", "dead", "left" or "update".
func (t EventType) String() string {
	switch t {
	case EventJoin:
		return "join"
	case EventSuspect:
		return "suspect"
	case EventAlive:
		return "alive"
	case EventDead:
		return "dead"
	case EventLeft:
		return "left"
	case EventUpdate:
		return "update"
	default:
		return fmt.Sprintf("EventType(%d)", int(t))
	}
}

// NodeState is a node's state as this member sees it.
type NodeState string

const (
	// StateAlive: the node answers probes.
	StateAlive NodeState = "alive"
	// StateSuspect: this member's probe failed; not yet dead.
	StateSuspect NodeState = "suspect"
	// StateDead: declared dead by memberlist.
	StateDead NodeState = "dead"
	// StateLeft: left gracefully.
	StateLeft NodeState = "left"
)

// Node is a member as this Gossip sees it.
type Node struct {
	// ID is the node's Steward node ID (its memberlist name).
	ID string
	// Addr is the node's gossip host:port.
	Addr string
	// Meta is the node's last known metadata; the zero Meta if it could
	// not be decoded (a warning is logged).
	Meta Meta
	// State is the node's state as this member sees it.
	State NodeState
	// Since is when this member saw the node enter State.
	Since time.Time
}

// Event is one change to a remote node. Node is a snapshot taken when the
// change happened.
type Event struct {
	// Type is what happened.
	Type EventType
	// Node is the node it happened to, after the change.
	Node Node
}

// eventQueue is an unbounded FIFO between memberlist's callbacks, which run
// with memberlist's locks held and must never block, and the one goroutine
// that feeds the Events channel.
type eventQueue struct {
	mu     sync.Mutex
	items  []Event
	closed bool
	wake   chan struct{} // capacity 1: "items may be non-empty"
}

func newEventQueue() *eventQueue {
	return &eventQueue{wake: make(chan struct{}, 1)}
}

// push appends ev; it never blocks. After close it drops ev.
func (q *eventQueue) push(ev Event) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	q.items = append(q.items, ev)
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// pop returns the oldest event, waiting for one until stop is closed.
func (q *eventQueue) pop(stop <-chan struct{}) (Event, bool) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			ev := q.items[0]
			q.items[0] = Event{}
			q.items = q.items[1:]
			if len(q.items) == 0 {
				q.items = nil // let the backing array go after a burst
			}
			q.mu.Unlock()
			return ev, true
		}
		q.mu.Unlock()
		select {
		case <-q.wake:
		case <-stop:
			return Event{}, false
		}
	}
}

func (q *eventQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.items = nil
}
