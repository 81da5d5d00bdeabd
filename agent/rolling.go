package agent

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/steward-dev/steward/failover"
)

// Rolling restarts through the API: POST /v1/rolling-restart starts one
// (any agent; the leader drives it, see control/rolling.go), GET
// /v1/rolling-restart, /v1/status, /v1/events and /ui show its progress.

// RollingView is a rolling restart as the API shows it.
type RollingView struct {
	Generation     uint64   `json:"generation"`
	State          string   `json:"state"`
	Order          []string `json:"order"`
	MaxUnavailable int      `json:"max_unavailable"`
	Done           []string `json:"done"`
	InFlight       []string `json:"in_flight"`
	Skipped        []string `json:"skipped,omitempty"`
	Error          string   `json:"error,omitempty"`
	// Summary is one line for people: "running: 2 of 5 done, n3 restarting".
	Summary string `json:"summary"`
}

// rollingView is the API's view of r (nil for nil).
func rollingView(r *failover.RollingRestart) *RollingView {
	if r == nil {
		return nil
	}
	v := &RollingView{Generation: r.Generation, State: string(r.State), Order: r.Order, MaxUnavailable: r.MaxUnavailable,
		Done: append([]string{}, r.Done...), InFlight: []string{}, Skipped: r.Skipped, Error: r.Error}
	for _, f := range r.InFlight {
		v.InFlight = append(v.InFlight, f.Node)
	}
	v.Summary = fmt.Sprintf("rolling restart %d %s: %d of %d done", r.Generation, r.State, len(r.Done), len(r.Order))
	if len(v.InFlight) > 0 {
		v.Summary += ", restarting " + strings.Join(v.InFlight, ", ")
	}
	if r.Error != "" {
		v.Summary += ": " + r.Error
	}
	return v
}

// RollingRestart is the last rolling restart (nil before the first).
func (a *Agent) RollingRestart() *RollingView {
	var v *RollingView
	a.raft.Read(func(c *failover.Cluster) { v = rollingView(c.Rolling) })
	return v
}

// handleRollingRestart is POST /v1/rolling-restart[?max_unavailable=N]:
// it starts a rolling restart of every member and answers 202 with it;
// 409 while one runs or a member is not in service.
func (a *Agent) handleRollingRestart(w http.ResponseWriter, r *http.Request) {
	maxUnavailable := 1
	if s := r.URL.Query().Get("max_unavailable"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("max_unavailable: %q is not a whole number of at least 1", s))
			return
		}
		maxUnavailable = n
	}
	began, err := a.ctrl.StartRollingRestart(r.Context(), maxUnavailable)
	if err != nil {
		writeRestartError(w, err)
		return
	}
	a.kickLeader()
	writeJSON(w, http.StatusAccepted, rollingView(began))
}

// handleRollingProgress is GET /v1/rolling-restart: the last rolling
// restart, 404 when there was none.
func (a *Agent) handleRollingProgress(w http.ResponseWriter, r *http.Request) {
	v := a.RollingRestart()
	if v == nil {
		writeError(w, http.StatusNotFound, "no rolling restart yet")
		return
	}
	writeJSON(w, http.StatusOK, v)
}
