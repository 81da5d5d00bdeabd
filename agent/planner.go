package agent

import (
	"net/http"

	"github.com/steward-dev/steward/control"
	"github.com/steward-dev/steward/failover"
)

// Event is one entry of GET /v1/events: a decision this agent applied as
// leader.
type Event = control.Event

// handleEvents is GET /v1/events: the decisions this agent applied as
// leader, oldest first.
func (a *Agent) handleEvents(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"events": a.ctrl.Events()})
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
	actions := failover.Plan(a.ctrl.PlanInput(state))
	if actions == nil {
		actions = []failover.Action{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"actions": actions, "balance": failover.Balance(state)})
}
