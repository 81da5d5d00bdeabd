package agent

import (
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/steward-dev/steward/failover"
)

// This file runs the planner on the leader and keeps a bounded log of the
// decisions it applied.

// planLimits are the planner's bounds from the configuration.
func (a *Agent) planLimits() failover.Limits {
	l := failover.DefaultLimits()
	l.MaxMigrationsPerNode = a.cfg.MaxMigrationsPerNode
	l.MaxMigrations = a.cfg.MaxMigrations
	l.MigrationTimeout = int64(a.cfg.MigrationTimeout.D())
	l.ReplaceDelay = int64(a.cfg.ReplaceDelay.D())
	// Without an app to acknowledge copies, a copy is complete as soon as
	// it is started.
	l.Instant = a.cfg.WebhookURL == ""
	return l
}

// planSeed breaks the planner's ties. It is the raft term, so that every
// agent computes the same dry-run plan as the leader (GET /v1/plan) and a
// new leader may spread primaries differently from the last.
func (a *Agent) planSeed() int64 { return int64(a.raft.Stats().Term) }

// planInput is the planner's input for the current state, with the ages of
// its migrations and failures as this agent's monotonic clock measured
// them.
func (a *Agent) planInput(state *failover.Cluster) failover.PlanInput {
	ages := a.ages.observe(state, a.clock.Elapsed())
	return failover.PlanInput{Cluster: state, Ages: ages.plan, Seed: a.planSeed(), Limits: a.planLimits()}
}

// runPlanner applies one round of the plan, all its actions in one raft
// entry. Every applied change wakes the loop again, so rounds follow each
// other until the plan is empty.
func (a *Agent) runPlanner() error {
	state := a.raft.Snapshot()
	if !state.Bootstrapped {
		return nil
	}
	start := time.Now()
	actions := failover.Plan(a.planInput(state))
	a.metrics.planSeconds.Observe(time.Since(start).Seconds())
	if len(actions) == 0 {
		return nil
	}
	res, err := a.apply(failover.Command{Kind: failover.CmdApplyActions, At: a.clock.Now().UnixNano(), Actions: actions})
	if err != nil {
		return fmt.Errorf("apply plan: %w", err)
	}
	for _, act := range actions {
		a.metrics.actions.WithLabelValues(string(act.Kind)).Inc()
	}
	a.recordEvent("plan.applied", fmt.Sprintf("%d actions applied, %d stale", res.Applied, res.Stale), actions)
	a.log.Debug("plan applied", "actions", len(actions), "applied", res.Applied, "stale", res.Stale)
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

func (a *Agent) recordEvent(typ, summary string, actions []failover.Action) {
	a.events.mu.Lock()
	defer a.events.mu.Unlock()
	a.events.seq++
	// Keep at most the first 64 actions of a large plan: the log is for
	// people, and /v1/partitions shows the result.
	if len(actions) > 64 {
		actions = actions[:64]
	}
	a.events.ring = append(a.events.ring, Event{Seq: a.events.seq, Time: time.Now().UTC(), Type: typ, Summary: summary, Actions: actions})
	if len(a.events.ring) > maxEvents {
		a.events.ring = append([]Event(nil), a.events.ring[len(a.events.ring)-maxEvents:]...)
	}
}

func (a *Agent) handleEvents(w http.ResponseWriter, r *http.Request) {
	a.events.mu.Lock()
	out := append([]Event{}, a.events.ring...)
	a.events.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"events": out})
}

// handlePlan is a dry run: the actions the leader's planner would take now.
func (a *Agent) handlePlan(w http.ResponseWriter, r *http.Request) {
	if !a.ready.Load() {
		writeError(w, http.StatusServiceUnavailable, "this agent has not caught up with the cluster yet")
		return
	}
	state := a.raft.Snapshot()
	if !state.Bootstrapped {
		writeError(w, http.StatusServiceUnavailable, "the cluster has not been bootstrapped yet")
		return
	}
	actions := failover.Plan(a.planInput(state))
	if actions == nil {
		actions = []failover.Action{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"actions": actions, "balance": failover.Balance(state)})
}
