package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/steward-dev/steward/failover"
)

// Errors of Route.
var (
	// ErrNoTable: the router has not received a table yet (WaitReady).
	ErrNoTable = errors.New("client: the router has no partition table yet")
	// ErrNoPartition: no partition of the resource owns the key (an
	// unknown resource).
	ErrNoPartition = errors.New("client: no partition owns the key")
	// ErrNoPrimary: the key's partition has no primary now (a failover
	// in progress); ask again after Changed.
	ErrNoPrimary = errors.New("client: the key's partition has no primary now")
)

// RouterConfig tunes a Router.
type RouterConfig struct {
	// MinBackoff and MaxBackoff bound the pause before a reconnection once
	// every agent has failed in a row (doubling from MinBackoff, with full
	// jitter). After a stream that worked, the next agent is tried at
	// once.
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// IdleTimeout drops a stream on which nothing, not even a heartbeat,
	// arrived for this long.
	IdleTimeout time.Duration
}

// DefaultRouterConfig suits a router next to the cluster.
func DefaultRouterConfig() RouterConfig {
	return RouterConfig{MinBackoff: 50 * time.Millisecond, MaxBackoff: 5 * time.Second, IdleTimeout: 15 * time.Second}
}

// Router keeps the partition table and the members' app addresses
// current by following the agents' watch stream, and answers which app
// serves a key. Run does the following (in a goroutine the caller owns);
// Route, Table and Changed may be called from anywhere meanwhile.
//
// The stream comes from one agent at a time. When that agent goes away,
// shuts down or loses contact with the leader (its table could be stale),
// the router moves to the next agent of the client's Config.Addresses at
// once, and backs off only when all of them failed in a row. In between it
// keeps the last table it had; Route then says Stale.
type Router struct {
	c   *Client
	cfg RouterConfig

	mu sync.RWMutex
	// table and members are the last views received; index is the state
	// index of the newer of the two.
	table   *Table
	members map[string]Member
	index   uint64
	// agent is the base URL of the agent being followed ("" between
	// streams).
	agent string
	// changed is closed (and replaced) at every update.
	changed chan struct{}
}

// NewRouter returns a router over c's agents; it follows nothing until Run.
func NewRouter(c *Client, cfg RouterConfig) *Router {
	def := DefaultRouterConfig()
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = def.MinBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(def.MaxBackoff, cfg.MinBackoff)
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = def.IdleTimeout
	}
	return &Router{c: c, cfg: cfg, changed: make(chan struct{})}
}

// Run follows the watch stream until ctx ends, and returns ctx's error.
func (r *Router) Run(ctx context.Context) error {
	at := r.c.agentIndex()
	failures := 0
	for ctx.Err() == nil {
		base := r.c.bases[at]
		received := false
		_, _ = r.c.watchAt(ctx, base, WatchOptions{Topics: []string{TopicPartitions, TopicMembers}, IdleTimeout: r.cfg.IdleTimeout},
			func(ev Event) error {
				received = true
				r.apply(base, ev)
				return nil
			})
		r.detach()
		if received {
			failures = 0
		} else {
			failures++
		}
		at = (at + 1) % len(r.c.bases)
		if failures >= len(r.c.bases) {
			// Every agent failed in a row: back off before the next round.
			if !sleepCtx(ctx, backoff(r.cfg.MinBackoff, r.cfg.MaxBackoff, failures-len(r.c.bases))) {
				break
			}
		}
	}
	return ctx.Err()
}

// backoff is a full-jitter exponential pause for the n-th retry.
func backoff(minimum, maximum time.Duration, n int) time.Duration {
	d := minimum
	for i := 0; i < n && d < maximum; i++ {
		d *= 2
	}
	d = min(d, maximum)
	return d/2 + rand.N(d/2+1)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// apply records one event of the stream from base.
func (r *Router) apply(base string, ev Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.agent = base
	switch ev.Topic {
	case TopicPartitions:
		r.table = ev.Table
	case TopicMembers:
		r.members = make(map[string]Member, len(ev.Members))
		for _, m := range ev.Members {
			r.members[m.ID] = m
		}
	default:
		return // a heartbeat changes nothing
	}
	// Another agent may be a little behind the last one: its views are
	// still the freshest the router can have now.
	r.index = ev.Index
	close(r.changed)
	r.changed = make(chan struct{})
}

// detach marks the router as following no agent.
func (r *Router) detach() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.agent == "" {
		return
	}
	r.agent = ""
	close(r.changed)
	r.changed = make(chan struct{})
}

// Changed returns a channel closed at the router's next update (a new
// table or member list, or the loss of its agent).
func (r *Router) Changed() <-chan struct{} {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.changed
}

// WaitReady waits until the router has a table and the member list.
func (r *Router) WaitReady(ctx context.Context) error {
	for {
		changed := r.Changed()
		r.mu.RLock()
		ready := r.table != nil && r.members != nil
		r.mu.RUnlock()
		if ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// Table returns the last table received (nil before the first) and its
// state index. The table is shared: do not modify it.
func (r *Router) Table() (*Table, uint64) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.table, r.index
}

// Snapshot returns the last table and member list by ID (nil before the
// first; shared: do not modify them), their state index, and whether the
// router follows an agent whose view is current right now.
func (r *Router) Snapshot() (table *Table, members map[string]Member, index uint64, current bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.table, r.members, r.index, r.agent != "" && r.table != nil && !r.table.Stale
}

// Route is where the requests of one key go.
type Route struct {
	// Partition is the ID of the key's partition, Epoch its epoch (an app
	// refuses requests tagged with an older one).
	Partition int
	Epoch     uint64
	// Primary is the node ID of the partition's primary, AppAddr its
	// app's data address (-app-addr).
	Primary string
	AppAddr string
	// Index is the state index of the table the route was read from.
	Index uint64
	// Stale: the router follows no agent in contact with the leader right
	// now (between agents, or all cut off), so the route may be out of
	// date; the app refuses a request a stale route sends to a node no
	// longer primary.
	Stale bool
}

// Route answers which app serves key of resource, from the table the
// router keeps ("" or "default" is the default resource). Keys map to
// partitions with the project's one mapping, failover.PartitionForKey.
func (r *Router) Route(resource, key string) (Route, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.table == nil {
		return Route{}, ErrNoTable
	}
	if resource == "" {
		resource = failover.DefaultResource
	}
	p, ok := failover.PartitionForKey(r.table.Partitions, resource, key)
	if !ok {
		return Route{}, fmt.Errorf("%w: resource %q", ErrNoPartition, resource)
	}
	out := Route{Partition: p.ID, Epoch: p.Epoch, Primary: p.Primary, Index: r.index,
		Stale: r.agent == "" || r.table.Stale}
	if p.Primary == "" {
		return out, fmt.Errorf("%w (partition %d)", ErrNoPrimary, p.ID)
	}
	out.AppAddr = r.members[p.Primary].AppAddr
	return out, nil
}
