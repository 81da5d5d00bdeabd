package control

import (
	"sort"
	"sync"
	"time"

	"github.com/steward-dev/steward/failover"
)

// LoadBook is the leader's memory of the apps' load and disk reports: the
// latest report of each node with its age on this agent's monotonic clock.
// Reports reach it on the lease renewals (raftctl.LeaseRequest.Load), so
// the figures never go through gossip metadata (memberlist caps it at 512
// bytes) nor raft (only decisions do). A report older than the TTL is
// dropped: a node whose app stopped reporting, or a follower that lost
// touch, plans as a node without figures, never on stale ones.
type LoadBook struct {
	ttl time.Duration

	mu      sync.Mutex
	nodes   map[string]loadEntry
	expired uint64
}

// loadEntry is one node's latest report.
type loadEntry struct {
	figures failover.NodeFigures
	// madeAt is when the app made the report, on this agent's Elapsed
	// clock: when it arrived, less the age the sending agent gave it.
	madeAt time.Duration
}

// NewLoadBook keeps reports for ttl.
func NewLoadBook(ttl time.Duration) *LoadBook {
	return &LoadBook{ttl: ttl, nodes: map[string]loadEntry{}}
}

// Record keeps node's report, which was age old when it arrived at now
// (an Elapsed reading). An older report than the one kept is ignored.
func (b *LoadBook) Record(node string, f failover.NodeFigures, age, now time.Duration) {
	if age < 0 {
		age = 0
	}
	made := now - age
	b.mu.Lock()
	defer b.mu.Unlock()
	if old, ok := b.nodes[node]; ok && old.madeAt > made {
		return
	}
	b.nodes[node] = loadEntry{figures: f, madeAt: made}
}

// Fresh returns the reports younger than the TTL at now (nil when there
// are none), and forgets the others.
func (b *LoadBook) Fresh(now time.Duration) *failover.Figures {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.expireLocked(now)
	if len(b.nodes) == 0 {
		return nil
	}
	out := &failover.Figures{Nodes: make(map[string]failover.NodeFigures, len(b.nodes))}
	for id, e := range b.nodes {
		out.Nodes[id] = e.figures
	}
	return out
}

// NodeLoad is one node's report as the leader holds it.
type NodeLoad struct {
	Node string `json:"node"`
	// Age is how old the report is.
	Age     time.Duration        `json:"age"`
	Figures failover.NodeFigures `json:"figures"`
}

// Reports are the fresh reports at now, by node ID.
func (b *LoadBook) Reports(now time.Duration) []NodeLoad {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.expireLocked(now)
	out := make([]NodeLoad, 0, len(b.nodes))
	for id, e := range b.nodes {
		out = append(out, NodeLoad{Node: id, Age: since(e.madeAt, now), Figures: e.figures})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}

// Expired counts the reports dropped for their age so far.
func (b *LoadBook) Expired() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.expired
}

func (b *LoadBook) expireLocked(now time.Duration) {
	for id, e := range b.nodes {
		if since(e.madeAt, now) > b.ttl {
			delete(b.nodes, id)
			b.expired++
		}
	}
}
