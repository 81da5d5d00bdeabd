package agent

import (
	"context"
	"fmt"
	"net/http"

	"github.com/steward-dev/steward/control"
	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/gossip"
	"github.com/steward-dev/steward/health"
)

// ForgetOutcome is the answer of POST /v1/members/{id}/force-leave.
type ForgetOutcome = control.ForgetOutcome

// memberIsLive reports whether id looks alive from here: gossip counts it
// in (alive or suspect) and this agent's detector does not hold it failed;
// and, when the cluster holds it failed, it also answers a probe now. Such
// a member is not forgotten by hand; it leaves with agent leave. A member
// the leader found failed may still be alive in this agent's gossip for a
// few seconds after its death (the leader suspects a follower its raft
// heartbeats miss before gossip notices anything, and this agent may never
// have probed it): gossip's word is then no sign of life, an answer is.
func (a *Agent) memberIsLive(ctx context.Context, id string, status failover.MemberStatus) bool {
	n, ok := a.gossip.Member(id)
	if !ok || (n.State != gossip.StateAlive && n.State != gossip.StateSuspect) {
		return false
	}
	if h, known := a.monitor.Node(id); known && (h.State == health.StateFailed || h.State == health.StateHeldDown) {
		return false
	}
	if status != failover.StatusFailed {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, a.monitor.Config().ProbeTimeout)
	defer cancel()
	return peerProber{a: a}.Probe(ctx, id) == nil
}

// handleForceLeave is POST /v1/members/{id}/force-leave: forget a member
// that is gone for good, now rather than after -reap-after.
func (a *Agent) handleForceLeave(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !a.ready.Load() {
		writeError(w, http.StatusServiceUnavailable, "this agent has not caught up with the cluster yet")
		return
	}
	m, ok := a.ctrl.MemberState().Members[id]
	switch {
	case !ok:
		writeError(w, http.StatusNotFound, fmt.Sprintf("%q is not a member of the cluster (never was, or already forgotten)", id))
		return
	case id == a.cfg.NodeID:
		writeError(w, http.StatusConflict, fmt.Sprintf("%q is the agent answering this request, and alive: stop it with agent leave", id))
		return
	case a.memberIsLive(r.Context(), id, m.Status):
		writeError(w, http.StatusConflict, fmt.Sprintf("%q is alive (status %s, and reachable from this agent): force-leave is for members gone for good; make it leave with agent leave on its host", id, m.Status))
		return
	}
	out, err := a.ctrl.ForgetMember(a.ctx, id, "agent force-leave")
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
