package agent

import (
	"fmt"
	"net/http"
	"time"

	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/gossip"
	"github.com/steward-dev/steward/health"
)

// This file forgets members that are gone for good: automatically, once
// failed or departed for longer than -reap-after, and on an operator's
// word (agent force-leave). Without it a cluster under churn (nodes dying
// and replaced under new IDs) accumulates failed members forever: they
// crowd the member list, and the "member failed" alert never resolves.
//
// Forgetting is failover.CmdForgetMember: a member that holds nothing is
// removed from the state at once (then its raft server is stale and the
// leader removes it); one that still holds copies is marked left and
// Forget, its copies are re-created elsewhere at once (a left holder is
// gone for the planner, whatever the replace delay), its raft server is
// removed as a departed one's, and the leader removes the member once it
// holds nothing.

// forgetting is one member the leader forgets now, and why.
type forgetting struct {
	node string
	why  string
}

// membersToForget decides which members to forget now; it is pure, with
// time given as ages. inStatus is how long each member has had its status,
// on the leader's monotonic clock; involved marks the members that still
// hold a copy or take part in a copy in flight; self is never forgotten.
// A member marked Forget is forgotten once it is involved in nothing; a
// failed or departed member once its status is reapAfter old, unless an
// operator switched maintenance on (automatic removals paused).
func membersToForget(state *failover.Cluster, inStatus map[string]time.Duration, involved map[string]bool, reapAfter time.Duration, self string) []forgetting {
	var out []forgetting
	for _, id := range state.MemberIDs() {
		m := state.Members[id]
		if id == self {
			continue
		}
		switch {
		case m.Forget:
			if !involved[id] {
				out = append(out, forgetting{id, "its copies are re-created elsewhere"})
			}
		case state.Maintenance || reapAfter <= 0:
		case m.Status == failover.StatusFailed || m.Status == failover.StatusLeft:
			if age := inStatus[id]; age >= reapAfter {
				out = append(out, forgetting{id, fmt.Sprintf("%s for %s, longer than -reap-after %s", m.Status, age.Round(time.Second), reapAfter)})
			}
		}
	}
	return out
}

// reapMembers is the leader's reaper, one round of it per reconcile.
func (a *Agent) reapMembers() error {
	state := a.memberState()
	inStatus := a.ages.observeMembers(state, a.clock.Elapsed())
	var candidates []string
	for id, m := range state.Members {
		if m.Forget || m.Status == failover.StatusFailed || m.Status == failover.StatusLeft {
			candidates = append(candidates, id)
		}
	}
	if len(candidates) == 0 {
		return nil
	}
	for _, f := range membersToForget(state, inStatus, a.involvedInPartitions(candidates), a.cfg.ReapAfter.D(), a.cfg.NodeID) {
		if _, err := a.forgetMember(f.node, f.why); err != nil {
			return fmt.Errorf("forget %s: %w", f.node, err)
		}
	}
	return nil
}

// ForgetOutcome is what forgetting one member did.
type ForgetOutcome struct {
	Node string `json:"node"`
	// Forgotten: the member is no longer in the cluster state. Otherwise it
	// is left and marked to be forgotten once CopiesRemaining are
	// re-created elsewhere.
	Forgotten       bool `json:"forgotten"`
	CopiesRemaining int  `json:"copies_remaining"`
}

// forgetMember commits failover.CmdForgetMember for id, with the
// promotions its primaries need.
func (a *Agent) forgetMember(id, why string) (ForgetOutcome, error) {
	state := a.raft.Snapshot()
	m, ok := state.Members[id]
	if !ok {
		return ForgetOutcome{Node: id, Forgotten: true}, nil
	}
	copies, _, sourcing := holdings(state, id)
	out := ForgetOutcome{Node: id, Forgotten: copies == 0 && sourcing == 0, CopiesRemaining: copies}
	actions := failover.PlanStatus(state, id, failover.StatusLeft, a.planSeed())
	if _, err := a.apply(failover.Command{Kind: failover.CmdForgetMember, At: a.clock.Now().UnixNano(), Node: id, Actions: actions}); err != nil {
		return out, err
	}
	if out.Forgotten {
		a.log.Warn("member forgotten", "member", id, "was", m.Status, "why", why)
		a.recordEvent("member.forgotten", fmt.Sprintf("%s forgotten: %s", id, why), nil)
	} else {
		a.log.Warn("member marked left, to be forgotten once its copies are re-created", "member", id, "was", m.Status, "copies", copies, "why", why)
		a.recordEvent("member.forgetting", fmt.Sprintf("%s marked left, %d copies to re-create: %s", id, copies, why), actions)
	}
	return out, nil
}

// memberIsLive reports whether id looks alive from here: gossip has it
// alive or merely suspect, and this agent's detector does not hold it
// failed. Such a member is not forgotten by hand; it leaves with agent leave.
func (a *Agent) memberIsLive(id string) bool {
	n, ok := a.gossip.Member(id)
	if !ok || (n.State != gossip.StateAlive && n.State != gossip.StateSuspect) {
		return false
	}
	h, known := a.monitor.Node(id)
	return !known || (h.State != health.StateFailed && h.State != health.StateHeldDown)
}

// handleForceLeave is POST /v1/members/{id}/force-leave: forget a member
// that is gone for good, now rather than after -reap-after.
func (a *Agent) handleForceLeave(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !a.ready.Load() {
		writeError(w, http.StatusServiceUnavailable, "this agent has not caught up with the cluster yet")
		return
	}
	m, ok := a.memberState().Members[id]
	switch {
	case !ok:
		writeError(w, http.StatusNotFound, fmt.Sprintf("%q is not a member of the cluster (never was, or already forgotten)", id))
		return
	case id == a.cfg.NodeID:
		writeError(w, http.StatusConflict, fmt.Sprintf("%q is the agent answering this request, and alive: stop it with agent leave", id))
		return
	case a.memberIsLive(id):
		writeError(w, http.StatusConflict, fmt.Sprintf("%q is alive (status %s, gossip and probes reach it): force-leave is for members gone for good; make it leave with agent leave on its host", id, m.Status))
		return
	}
	out, err := a.forgetMember(id, "agent force-leave")
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	code := http.StatusOK
	if !out.Forgotten {
		code = http.StatusAccepted
	}
	writeJSON(w, code, out)
}
