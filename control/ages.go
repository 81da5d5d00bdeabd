package control

import (
	"sync"
	"time"

	"github.com/steward-dev/steward/failover"
)

// AgeTracker measures, on this agent's monotonic clock (clock.Elapsed), how
// long each migration has been in flight and how long each member has had
// its current status, counted from the moment this agent first saw them in
// its copy of the state. The leader's timeouts and ages (migration timeout,
// replace delay, the freeze window, reaping) are read from it, never from
// the wall-clock timestamps the state carries (see failover.Ages).
//
// Every agent keeps one, fed (by the agent) with each change its state
// machine applies, so a follower that becomes leader already knows how
// long what it watched has been going on: an election does not restart the
// clocks. What the state held when the agent started (replayed from its
// raft log or a snapshot) is dated from that first look: ages then err
// short, so timeouts, the replace delay and reaping come late, never early.
type AgeTracker struct {
	mu         sync.Mutex
	migrations map[string]time.Duration // migration ID: Elapsed when first seen
	statuses   map[string]statusEpisode // member ID: its current status, first seen
	// copyFailures: failover.CopyFailureKey: the failure count last seen
	// and when it was first seen at that count.
	copyFailures map[string]copyFailureEpisode
	// placements: by partition, its epoch and when it was first seen.
	placements []epochSeen
}

// epochSeen is a partition's placement (its epoch) and when this agent
// first saw it, for the load hysteresis (failover.Ages.Moved).
type epochSeen struct {
	epoch uint64
	seen  time.Duration
}

// copyFailureEpisode is one failure count of a copy-failure record: a new
// failure raises the count and starts a new wait.
type copyFailureEpisode struct {
	count int
	seen  time.Duration
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

// ClusterAges is one look at the state through the tracker.
type ClusterAges struct {
	// Plan are the ages the planner compares with its limits.
	Plan failover.Ages
	// InStatus is how long each member has had its current status.
	InStatus map[string]time.Duration
}

func NewAgeTracker() *AgeTracker {
	return &AgeTracker{migrations: map[string]time.Duration{}, statuses: map[string]statusEpisode{}, copyFailures: map[string]copyFailureEpisode{}}
}

// Observe records what c shows for the first time at now (an Elapsed
// reading), forgets the migrations and members c no longer has, and
// returns the ages of everything in c.
func (t *AgeTracker) Observe(c *failover.Cluster, now time.Duration) ClusterAges {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := ClusterAges{InStatus: t.observeMembersLocked(c, now)}
	out.Plan.Failed = map[string]time.Duration{}
	for id, m := range c.Members {
		if m.Status == failover.StatusFailed {
			out.Plan.Failed[id] = out.InStatus[id]
		}
	}
	out.Plan.Migrations = map[string]time.Duration{}
	for _, p := range c.Partitions {
		for _, m := range p.Migrations {
			seen, ok := t.migrations[m.ID]
			if !ok {
				seen = now
				t.migrations[m.ID] = now
			}
			out.Plan.Migrations[m.ID] = since(seen, now)
		}
	}
	for id := range t.migrations {
		if _, ok := out.Plan.Migrations[id]; !ok {
			delete(t.migrations, id)
		}
	}
	out.Plan.CopyFailures = t.observeCopyFailuresLocked(c, now)
	out.Plan.Moved = t.observePlacementsLocked(c, now)
	return out
}

// observePlacementsLocked dates each partition's current epoch from when
// it was first seen and returns how long ago each placement changed.
func (t *AgeTracker) observePlacementsLocked(c *failover.Cluster, now time.Duration) map[int]time.Duration {
	if len(t.placements) != len(c.Partitions) {
		t.placements = make([]epochSeen, len(c.Partitions))
		for i, p := range c.Partitions {
			t.placements[i] = epochSeen{epoch: p.Epoch, seen: now}
		}
	}
	out := make(map[int]time.Duration, len(c.Partitions))
	for i, p := range c.Partitions {
		if t.placements[i].epoch != p.Epoch {
			t.placements[i] = epochSeen{epoch: p.Epoch, seen: now}
		}
		out[i] = since(t.placements[i].seen, now)
	}
	return out
}

// ObserveMembers is Observe for the members only, for callers that hold a
// state without its partition table (Controller.MemberState): the migrations
// being timed are left alone.
func (t *AgeTracker) ObserveMembers(c *failover.Cluster, now time.Duration) map[string]time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.observeMembersLocked(c, now)
}

func (t *AgeTracker) observeMembersLocked(c *failover.Cluster, now time.Duration) map[string]time.Duration {
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

// MigrationAge is how long this agent has seen migration id in flight;
// false when it has not seen it.
func (t *AgeTracker) MigrationAge(id string, now time.Duration) (time.Duration, bool) {
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

// observeCopyFailuresLocked dates each copy-failure record from when this
// agent first saw its current count, and forgets the records c no longer
// has.
func (t *AgeTracker) observeCopyFailuresLocked(c *failover.Cluster, now time.Duration) map[string]time.Duration {
	out := map[string]time.Duration{}
	for _, p := range c.Partitions {
		for _, f := range p.CopyFailures {
			key := failover.CopyFailureKey(p.ID, f.Node)
			ep, ok := t.copyFailures[key]
			if !ok || ep.count != f.Count {
				ep = copyFailureEpisode{count: f.Count, seen: now}
				t.copyFailures[key] = ep
			}
			out[key] = since(ep.seen, now)
		}
	}
	for key := range t.copyFailures {
		if _, ok := out[key]; !ok {
			delete(t.copyFailures, key)
		}
	}
	return out
}
