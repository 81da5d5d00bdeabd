package agent

import (
	"fmt"
	"net/http"

	"github.com/steward-dev/steward/control"
	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/gossip"
	"github.com/steward-dev/steward/health"
)

// ForgetOutcome is the answer of POST /v1/members/{id}/force-leave.
type ForgetOutcome = control.ForgetOutcome

// memberIsLive reports whether id looks alive from here: gossip has it
// alive, or suspect while the cluster has not marked it failed, and this
// agent's detector does not hold it failed. Such a member is not forgotten
// by hand; it leaves with agent leave. A member the leader's probes found
// failed may still be only suspect in this agent's gossip for a few
// seconds after its death: that is no sign of life.
func (a *Agent) memberIsLive(id string, status failover.MemberStatus) bool {
	n, ok := a.gossip.Member(id)
	if !ok {
		return false
	}
	switch {
	case n.State == gossip.StateAlive:
	case n.State == gossip.StateSuspect && status != failover.StatusFailed:
	default:
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
	m, ok := a.ctrl.MemberState().Members[id]
	switch {
	case !ok:
		writeError(w, http.StatusNotFound, fmt.Sprintf("%q is not a member of the cluster (never was, or already forgotten)", id))
		return
	case id == a.cfg.NodeID:
		writeError(w, http.StatusConflict, fmt.Sprintf("%q is the agent answering this request, and alive: stop it with agent leave", id))
		return
	case a.memberIsLive(id, m.Status):
		writeError(w, http.StatusConflict, fmt.Sprintf("%q is alive (status %s, gossip and probes reach it): force-leave is for members gone for good; make it leave with agent leave on its host", id, m.Status))
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
