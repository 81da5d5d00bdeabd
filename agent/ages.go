package agent

import (
	"sync"
	"time"

	"github.com/steward-dev/steward/failover"
)

// ageTracker measures, on this agent's monotonic clock (clock.Elapsed), how
// long each migration has been in flight and how long each member has had
// its current status, counted from the moment this agent first saw them in
// its copy of the state. The leader's timeouts and ages (migration timeout,
// replace delay, the freeze window, reaping) are read from it, never from
// the wall-clock timestamps the state carries (see failover.Ages).
//
// Every agent keeps one, fed by watchAges with each change its state
// machine applies, so a follower that becomes leader already knows how
// long what it watched has been going on: an election does not restart the
// clocks. What the state held when the agent started (replayed from its
// raft log or a snapshot) is dated from that first look: ages then err
// short, so timeouts, the replace delay and reaping come late, never early.
type ageTracker struct {
	mu         sync.Mutex
	migrations map[string]time.Duration // migration ID: Elapsed when first seen
	statuses   map[string]statusEpisode // member ID: its current status, first seen
}

// statusEpisode is one stretch of a member in one status.
type statusEpisode struct {
	status failover.MemberStatus
	// since is Member.StatusSince, the stamp of the command that set the
	// status: with status it tells a new episode (a rejoin, then another
	// failure) from the one already being timed. It is compared for
	// equality only, never subtracted.
	since int64
	seen  time.Duration
}

// clusterAges is one look at the state through the tracker.
type clusterAges struct {
	// plan are the ages the planner compares with its limits.
	plan failover.Ages
	// inStatus is how long each member has had its current status.
	inStatus map[string]time.Duration
}

func newAgeTracker() *ageTracker {
	return &ageTracker{migrations: map[string]time.Duration{}, statuses: map[string]statusEpisode{}}
}

// observe records what c shows for the first time at now (an Elapsed
// reading), forgets the migrations and members c no longer has, and
// returns the ages of everything in c.
func (t *ageTracker) observe(c *failover.Cluster, now time.Duration) clusterAges {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := clusterAges{inStatus: t.observeMembersLocked(c, now)}
	out.plan.Failed = map[string]time.Duration{}
	for id, m := range c.Members {
		if m.Status == failover.StatusFailed {
			out.plan.Failed[id] = out.inStatus[id]
		}
	}
	out.plan.Migrations = map[string]time.Duration{}
	for _, p := range c.Partitions {
		for _, m := range p.Migrations {
			seen, ok := t.migrations[m.ID]
			if !ok {
				seen = now
				t.migrations[m.ID] = now
			}
			out.plan.Migrations[m.ID] = since(seen, now)
		}
	}
	for id := range t.migrations {
		if _, ok := out.plan.Migrations[id]; !ok {
			delete(t.migrations, id)
		}
	}
	return out
}

// observeMembers is observe for the members only, for callers that hold a
// state without its partition table (Agent.memberState): the migrations
// being timed are left alone.
func (t *ageTracker) observeMembers(c *failover.Cluster, now time.Duration) map[string]time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.observeMembersLocked(c, now)
}

func (t *ageTracker) observeMembersLocked(c *failover.Cluster, now time.Duration) map[string]time.Duration {
	out := make(map[string]time.Duration, len(c.Members))
	for id, m := range c.Members {
		ep, ok := t.statuses[id]
		if !ok || ep.status != m.Status || ep.since != m.StatusSince {
			ep = statusEpisode{status: m.Status, since: m.StatusSince, seen: now}
			t.statuses[id] = ep
		}
		out[id] = since(ep.seen, now)
	}
	for id := range t.statuses {
		if _, ok := c.Members[id]; !ok {
			delete(t.statuses, id)
		}
	}
	return out
}

// migrationAge is how long this agent has seen migration id in flight;
// false when it has not seen it.
func (t *ageTracker) migrationAge(id string, now time.Duration) (time.Duration, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	seen, ok := t.migrations[id]
	return since(seen, now), ok
}

// since is now-seen, never negative: two goroutines may take their
// readings in one order and reach the tracker in the other.
func since(seen, now time.Duration) time.Duration {
	if now < seen {
		return 0
	}
	return now - seen
}

// watchAges feeds the tracker every state this agent applies, so that it
// dates what it sees from about when it was committed.
func (a *Agent) watchAges() {
	changes, unsubscribe := a.raft.Subscribe()
	defer unsubscribe()
	for {
		a.raft.Read(func(c *failover.Cluster) { a.ages.observe(c, a.clock.Elapsed()) })
		select {
		case <-a.ctx.Done():
			return
		case <-changes:
		}
	}
}
