package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/steward-dev/steward/control"
	"github.com/steward-dev/steward/failover"
)

// A planned restart, step by step (agent restart, POST /v1/restart,
// SIGTERM with -on-sigterm restart, or the leader's rolling restart):
//
//  1. Refuse when the node's absence would lose the quorum, or (the state
//     machine decides) when -max-unavailable members are away already.
//  2. Mark the member restarting in raft for -restart-grace, with the
//     promotions of its primaries in the same entry (no copy is made: its
//     copies stay assigned to it; the new primaries serve once the old
//     lease has run out).
//  3. A leader hands leadership over.
//  4. Wait until the leader has demoted it, if it is a voter.
//  5. Leave gossip, so that peers see it left rather than dead. The owner
//     then shuts the agent down and exits 0, for its supervisor to start
//     it again (systemd Restart=always, Kubernetes restartPolicy Always).
//
// Back with the same node ID and data dir, the agent announces its return
// in gossip (Meta.Returning) until the leader takes it back: alive, a new
// incarnation, so that its app is told it rejoined and re-syncs what it
// missed; a voter again once stable; primaries back by the rebalance. Not
// back within the grace, the leader marks it failed.

// RestartPhase names the steps, for GET /v1/restart.
type RestartPhase string

// The phases of a restart, in order; RestartFailed ends it early.
const (
	RestartNone        RestartPhase = ""
	RestartMarking     RestartPhase = "marking"
	RestartHandingOver RestartPhase = "handing-over"
	RestartDemoting    RestartPhase = "demoting"
	RestartLeaving     RestartPhase = "leaving-gossip"
	RestartDone        RestartPhase = "done"
	RestartFailed      RestartPhase = "failed"
)

// Values of Config.OnSigterm.
const (
	OnSigtermLeave   = "leave"
	OnSigtermRestart = "restart"
)

// restartPollEvery is how often the restart looks at its progress.
const restartPollEvery = 100 * time.Millisecond

// RestartProgress is GET /v1/restart.
type RestartProgress struct {
	Phase   RestartPhase `json:"phase"`
	Started time.Time    `json:"started,omitzero"`
	// Grace is how long the node may stay away.
	Grace string `json:"grace,omitempty"`
	// PrimariesHandedOver counts the promotions of the restart entry.
	PrimariesHandedOver int    `json:"primaries_handed_over"`
	Error               string `json:"error,omitempty"`
}

// restartState guards one restart per agent.
type restartState struct {
	mu       sync.Mutex
	progress RestartProgress
	started  bool
	marked   bool
	done     chan struct{}
	err      error
	// requests carries API requests to the agent's owner (RestartRequests).
	requests chan struct{}
	// returning is what this agent announces in gossip (Meta.Returning).
	returning atomic.Bool
	// catchingUp: this agent is back from a planned restart and its app
	// has not yet acknowledged node.rejoin (it re-syncs what it missed).
	// It is announced as an unhealthy app, so that the leader records it
	// with the return and the planner hands no primary back before the
	// app has caught up.
	catchingUp atomic.Bool
	// toldIncarnation is the incarnation the webhooks have handled (the
	// app told of the rejoin when it went up), for catchingUp's end.
	toldIncarnation atomic.Uint64
	// rejoinAtStart is the incarnation of a node.rejoin that the last
	// process sent and the app had not acknowledged when it ended (the
	// rejoin-pending file): this process is catching up until the app has
	// acknowledged that incarnation or a later one.
	rejoinAtStart uint64
}

// ErrRestartRefused wraps refusals of a restart: another member is away
// already (-max-unavailable), the node is not in service, or its absence
// would lose the quorum. A refused restart changed nothing.
var ErrRestartRefused = control.ErrRestartRefused

// Restart goes away for a planned restart (the steps above), bounded by
// Config.LeaveTimeout and ctx. A second call waits for the first. Restart
// does not stop the agent: call Shutdown after it, then exit 0.
func (a *Agent) Restart(ctx context.Context) error {
	a.restart.mu.Lock()
	if a.restart.started {
		done := a.restart.done
		a.restart.mu.Unlock()
		<-done
		a.restart.mu.Lock()
		defer a.restart.mu.Unlock()
		return a.restart.err
	}
	a.restart.started = true
	a.restart.done = make(chan struct{})
	if a.restart.progress.Phase == RestartNone || a.restart.progress.Phase == RestartFailed {
		a.restart.progress = RestartProgress{Phase: RestartMarking, Started: time.Now().UTC(), Grace: a.cfg.RestartGrace.String()}
	}
	a.restart.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, a.cfg.LeaveTimeout.D())
	stop := context.AfterFunc(a.ctx, cancel)
	err := a.restartSteps(ctx)
	stop()
	cancel()

	a.restart.mu.Lock()
	a.restart.err = err
	if err != nil {
		a.restart.progress.Phase = RestartFailed
		a.restart.progress.Error = err.Error()
		if errors.Is(err, ErrRestartRefused) {
			a.restart.started = false // it changed nothing: may be tried again
		}
	} else {
		a.restart.progress.Phase = RestartDone
	}
	close(a.restart.done)
	a.restart.mu.Unlock()
	return err
}

// RestartProgress is how far a restart has gone.
func (a *Agent) RestartProgress() RestartProgress {
	a.restart.mu.Lock()
	defer a.restart.mu.Unlock()
	return a.restart.progress
}

func (a *Agent) setRestartPhase(p RestartPhase) {
	a.restart.mu.Lock()
	defer a.restart.mu.Unlock()
	a.restart.progress.Phase = p
}

// markRestart is steps 1 and 2, once: the part a caller waits for, so
// that POST /v1/restart can answer a refusal with 409.
func (a *Agent) markRestart(ctx context.Context) error {
	a.restart.mu.Lock()
	defer a.restart.mu.Unlock()
	if a.restart.marked {
		return nil
	}
	state := a.raft.Snapshot()
	me, registered := state.Members[a.cfg.NodeID]
	if !registered || !state.Bootstrapped {
		a.restart.marked = true // never part of a cluster: nothing to hand over
		return nil
	}
	if me.Status != failover.StatusRestarting {
		if err := a.ctrl.CheckRestartSafe(state); err != nil {
			return err
		}
	}
	a.ctrl.SetRestarting(true)
	if a.restart.returning.Load() || a.restart.catchingUp.Load() {
		a.publishReturn(false, false)
	}
	promoted, err := a.ctrl.MarkOwnRestart(ctx, a.cfg.RestartGrace.D(), a.cfg.MaxUnavailable)
	if err != nil {
		a.ctrl.SetRestarting(false)
		return err
	}
	a.restart.marked = true
	a.restart.progress.PrimariesHandedOver = promoted
	a.log.Info("planned restart: marked restarting", "grace", a.cfg.RestartGrace.String(), "primaries_promoted", promoted)
	return nil
}

func (a *Agent) restartSteps(ctx context.Context) error {
	if err := a.markRestart(ctx); err != nil {
		return fmt.Errorf("marking this node restarting: %w", err)
	}
	state := a.raft.Snapshot()
	if _, registered := state.Members[a.cfg.NodeID]; !registered || !state.Bootstrapped {
		return nil
	}
	poll := time.NewTicker(restartPollEvery)
	defer poll.Stop()
	wait := func(done func() bool) bool {
		for !done() {
			select {
			case <-ctx.Done():
				return false
			case <-poll.C:
			}
		}
		return true
	}
	// The hand-over and the demotion are judged on this agent's own copy of
	// the state: first wait until it shows the mark.
	wait(func() bool {
		var st failover.MemberStatus
		a.raft.Read(func(c *failover.Cluster) { st = c.Members[a.cfg.NodeID].Status })
		return st == failover.StatusRestarting
	})

	a.setRestartPhase(RestartHandingOver)
	if a.raft.IsLeader() {
		if err := a.ctrl.HandOverLeadership(ctx); err != nil {
			a.log.Warn("leadership hand-over failed", "error", err)
		}
	}

	a.setRestartPhase(RestartDemoting)
	if !wait(func() bool { return !a.ctrl.IsVoter() }) {
		a.log.Warn("restart: still a voter at the timeout; going anyway (the leader demotes it while it is away)")
	}

	a.setRestartPhase(RestartLeaving)
	remaining := time.Second
	if d, ok := ctx.Deadline(); ok && time.Until(d) > remaining {
		remaining = time.Until(d)
	}
	if err := a.gossip.Leave(remaining); err != nil {
		a.log.Warn("leaving gossip before the restart", "error", err)
	}
	a.log.Info("planned restart: going away", "grace", a.cfg.RestartGrace.String())
	return nil
}

// handleRestart is POST /v1/restart: it marks this node restarting (409
// when refused) and answers 202 with the progress; the agent's owner then
// finishes the restart and exits 0.
func (a *Agent) handleRestart(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.LeaveTimeout.D())
	defer cancel()
	if err := a.markRestart(ctx); err != nil {
		writeRestartError(w, err)
		return
	}
	a.requestRestart()
	writeJSON(w, http.StatusAccepted, a.RestartProgress())
}

// writeRestartError answers a failed restart request: 409 for a refusal
// (it changed nothing), 503 otherwise (no leader, say: try again).
func writeRestartError(w http.ResponseWriter, err error) {
	code := http.StatusServiceUnavailable
	if errors.Is(err, ErrRestartRefused) {
		code = http.StatusConflict
	}
	writeError(w, code, err.Error())
}

// handleRestartProgress is GET /v1/restart.
func (a *Agent) handleRestartProgress(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.RestartProgress())
}

// requestRestart passes a restart request on to the owner of the agent.
func (a *Agent) requestRestart() {
	select {
	case a.restart.requests <- struct{}{}:
	default:
	}
}

// RestartRequests delivers restart requests made through the API (POST
// /v1/restart, or the leader's rolling restart): the agent's owner is
// expected to call Restart, then Shutdown, and exit 0 for its supervisor
// to start it again. At most one request waits; more are dropped.
func (a *Agent) RestartRequests() <-chan struct{} { return a.restart.requests }

// publishReturn sets Meta.Returning, and the catching up shown as
// Meta.AppUnhealthy, in this node's gossip metadata, both in one update:
// the leader sees the member back and its app not ready in the same view.
func (a *Agent) publishReturn(returning, catchingUp bool) {
	a.restart.returning.Store(returning)
	a.restart.catchingUp.Store(catchingUp)
	if a.gossip == nil {
		return
	}
	if err := a.gossip.UpdateMeta(a.localMeta()); err != nil && a.ctx.Err() == nil {
		a.log.Warn("publishing the return from a restart", "error", err)
	}
	a.kickLeader()
}

// returnView is what returnAnnouncement decides from.
type returnView struct {
	// awayInState: the state shows this member restarting.
	awayInState bool
	// goingAway: this process is the one going away for the restart.
	goingAway bool
	// hasApp: webhooks go to an app (-webhook-url).
	hasApp bool
	// incarnation is the member's in the state; told is the one the
	// webhooks have handled; rejoinPending: node.rejoin not acknowledged.
	incarnation, told uint64
	rejoinPending     bool
	// catchingUp is what is announced now.
	catchingUp bool
}

// returnAnnouncement decides (purely) what this agent announces about its
// return from a planned restart: returning while the state shows its
// member restarting and this process is not the one going away (the
// leader then takes it back: alive, a new incarnation); catching up from
// then until the webhooks have handled that incarnation and the app has
// acknowledged node.rejoin. Any other rejoin (after a failure or a leave)
// is caught up the same way while its node.rejoin is unacknowledged: the
// app gets no partition event meanwhile, so a primary given to it would
// only stall its partitions' writes.
func returnAnnouncement(v returnView) (returning, catchingUp bool) {
	returning = v.awayInState && !v.goingAway
	switch {
	case !v.hasApp || v.goingAway:
		catchingUp = false
	case returning, v.rejoinPending:
		catchingUp = true
	case v.catchingUp:
		catchingUp = v.told < v.incarnation
	}
	return returning, catchingUp
}

// returnLoop keeps the announcement of returnAnnouncement up to date.
func (a *Agent) returnLoop() {
	a.every(250*time.Millisecond, func() {
		var me failover.Member
		a.raft.Read(func(c *failover.Cluster) { me = c.Members[a.cfg.NodeID] })
		v := returnView{
			awayInState: me.Status == failover.StatusRestarting,
			goingAway:   a.ctrl.Restarting(),
			hasApp:      a.deliverer != nil,
			incarnation: max(me.Incarnation, a.restart.rejoinAtStart),
			told:        a.restart.toldIncarnation.Load(),
			catchingUp:  a.restart.catchingUp.Load(),
		}
		v.rejoinPending = v.hasApp && a.deliverer.Rejoining()
		returning, catchingUp := returnAnnouncement(v)
		if returning == a.restart.returning.Load() && catchingUp == a.restart.catchingUp.Load() {
			return
		}
		switch {
		case returning && !a.restart.returning.Load():
			a.log.Info("back from a planned restart: announcing the return")
		case !catchingUp && a.restart.catchingUp.Load():
			a.log.Info("back from a planned restart: the app has caught up", "incarnation", me.Incarnation)
		}
		a.publishReturn(returning, catchingUp)
	})
}

// memberRestarter is the controller's Restarter: this agent's own restart
// for itself, POST /v1/restart on the member's API otherwise.
type memberRestarter struct{ a *Agent }

// restartRequestTimeout bounds one request to a member's agent; the
// member marks itself restarting before it answers.
const restartRequestTimeout = 15 * time.Second

func (r memberRestarter) RequestRestart(ctx context.Context, m failover.Member) error {
	a := r.a
	if m.ID == a.cfg.NodeID {
		if err := a.markRestart(ctx); err != nil {
			return err
		}
		a.requestRestart()
		return nil
	}
	if m.APIAddr == "" {
		return fmt.Errorf("%s has no API address", m.ID)
	}
	ctx, cancel := context.WithTimeout(ctx, restartRequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+m.APIAddr+"/v1/restart", strings.NewReader("{}"))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if a.apiToken != "" {
		req.Header.Set("Authorization", "Bearer "+a.apiToken)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch {
	case resp.StatusCode == http.StatusAccepted:
		return nil
	case resp.StatusCode == http.StatusConflict:
		return fmt.Errorf("%w: %s", ErrRestartRefused, apiErrorText(body))
	default:
		return fmt.Errorf("%s answered %s: %s", m.ID, resp.Status, apiErrorText(body))
	}
}

// apiErrorText is the error of a JSON error answer, or the body.
func apiErrorText(body []byte) string {
	var e APIError
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return e.Error
	}
	return strings.TrimSpace(string(body))
}
