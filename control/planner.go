package control

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/steward-dev/steward/failover"
)

// This file runs the planner on the leader and keeps a bounded log of the
// decisions it applied.

// planLimits are the planner's bounds from the configuration.
func (c *Controller) planLimits() failover.Limits {
	l := failover.DefaultLimits()
	l.MaxMigrationsPerNode = c.cfg.MaxMigrationsPerNode
	l.MaxMigrations = c.cfg.MaxMigrations
	l.MigrationTimeout = int64(c.cfg.MigrationTimeout)
	l.ReplaceDelay = int64(c.cfg.ReplaceDelay)
	// Without an app to acknowledge copies, a copy is complete as soon as
	// it is started.
	l.Instant = c.cfg.InstantCopies
	return l
}

// planSeed breaks the planner's ties. It is the raft term, so that every
// agent computes the same dry-run plan as the leader (GET /v1/plan) and a
// new leader may spread primaries differently from the last.
func (c *Controller) planSeed() int64 { return int64(c.raft.Stats().Term) }

// PlanInput is the planner's input for state, with the ages of its
// migrations and failures as this agent's monotonic clock measured them.
func (c *Controller) PlanInput(state *failover.Cluster) failover.PlanInput {
	ages := c.ages.Observe(state, c.clock.Elapsed())
	return failover.PlanInput{Cluster: state, Ages: ages.Plan, Seed: c.planSeed(), Limits: c.planLimits(),
		Figures: c.load.Fresh(c.clock.Elapsed()), Load: c.cfg.Load}
}

// IdleReplanEvery is how often the leader plans again while the state
// has not changed since a plan that proposed nothing. Planning is pure: on
// the same state, with the same seed, it proposes the same nothing, except
// where time alone changes the answer (a failed node's -replace-delay or a
// copy's -migration-timeout running out, a failed copy's backoff, a moved
// partition's hysteresis, a load report going stale) or the apps' figures
// do (load and disk reports travel outside raft). Those decisions are taken
// up to this much later than their deadline when nothing else happens,
// and an idle leader does not plan every second: at 1,000 members and
// 65,536 partitions a plan costs about 0.1 s of CPU.
const IdleReplanEvery = 5 * time.Second

// idlePlan remembers the last plan that proposed nothing: the state index
// and seed it was computed for, and when. The leader's loop uses it, and
// so may a caller of Reconcile next to it (tests do).
type idlePlan struct {
	mu    sync.Mutex
	valid bool
	index uint64
	seed  int64
	at    time.Duration // clock.Elapsed
}

// fresh reports whether an empty plan was made for this index and seed
// less than IdleReplanEvery before now.
func (m *idlePlan) fresh(index uint64, seed int64, now time.Duration) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.valid && m.index == index && m.seed == seed && now-m.at < IdleReplanEvery
}

// record remembers the outcome of a plan made for index and seed at now.
func (m *idlePlan) record(empty bool, index uint64, seed int64, now time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.valid, m.index, m.seed, m.at = empty, index, seed, now
}

// runPlanner applies one round of the plan, all its actions in one raft
// entry. Every applied change wakes the leader's loop again, so rounds
// follow each other until the plan is empty. While the state stays the
// one an empty plan was made for, it plans again only every
// IdleReplanEvery.
func (c *Controller) runPlanner(ctx context.Context) error {
	// The index is read before the state: the plan is for that index or a
	// newer state, never an older one.
	index, seed, now := c.raft.StateIndex(), c.planSeed(), c.clock.Elapsed()
	if c.idle.fresh(index, seed, now) {
		return nil
	}
	state := c.raft.Snapshot()
	if !state.Bootstrapped {
		return nil
	}
	start := time.Now()
	actions := failover.Plan(c.PlanInput(state))
	c.obs.Planned(time.Since(start))
	c.idle.record(len(actions) == 0, index, seed, now)
	if len(actions) == 0 {
		return nil
	}
	res, err := c.Apply(ctx, failover.Command{Kind: failover.CmdApplyActions, At: c.clock.Now().UnixNano(), Actions: actions})
	if err != nil {
		return fmt.Errorf("apply plan: %w", err)
	}
	c.RecordEvent("plan.applied", fmt.Sprintf("%d actions applied, %d stale", res.Applied, res.Stale), actions)
	c.log.Debug("plan applied", "actions", len(actions), "applied", res.Applied, "stale", res.Stale)
	return nil
}

// maxEvents bounds the decision log kept in memory.
const maxEvents = 256

// Event is one entry of GET /v1/events: a decision this agent applied as
// leader.
type Event struct {
	Seq     uint64            `json:"seq"`
	Time    time.Time         `json:"time"`
	Type    string            `json:"type"`
	Summary string            `json:"summary"`
	Actions []failover.Action `json:"actions,omitempty"`
}

// eventLog is a bounded ring of the decisions this agent applied as leader.
type eventLog struct {
	mu   sync.Mutex
	seq  uint64
	ring []Event
}

func (l *eventLog) record(now time.Time, typ, summary string, actions []failover.Action) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	// Keep at most the first 64 actions of a large plan: the log is for
	// people, and /v1/partitions shows the result.
	if len(actions) > 64 {
		actions = actions[:64]
	}
	l.ring = append(l.ring, Event{Seq: l.seq, Time: now.UTC(), Type: typ, Summary: summary, Actions: actions})
	if len(l.ring) > maxEvents {
		l.ring = append([]Event(nil), l.ring[len(l.ring)-maxEvents:]...)
	}
}

func (l *eventLog) list() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Event{}, l.ring...)
}
