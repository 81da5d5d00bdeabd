package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/steward-dev/steward/control"
	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/gossip"
)

// A graceful leave, step by step (SIGTERM, `agent leave`, POST /v1/leave):
//
//  1. Refuse, unless forced, when leaving would lose quorum or the last
//     copy of a partition.
//  2. Announce "leaving" in gossip metadata (so that the leader does not
//     take the node back as a rejoin) and mark the member leaving in raft,
//     with the promotions of its primaries in the same entry.
//  3. Wait while the planner moves its copies away; the node still serves
//     as a copy source meanwhile. Stop waiting when it holds nothing, when
//     the planner has nothing more to do (no place for the rest), or at
//     -leave-timeout.
//  4. A leader hands leadership over (promoting a voter first if it is the
//     only one).
//  5. Mark the member left; the leader drops its remaining copies and
//     removes it from the raft configuration.
//  6. Leave gossip. The caller then shuts the agent down and exits 0.

// LeavePhase names the steps, for GET /v1/leave and `agent leave`.
type LeavePhase string

// The phases of a leave, in order; LeaveFailed ends it early.
const (
	LeaveNone          LeavePhase = ""
	LeaveDraining      LeavePhase = "draining"
	LeaveHandingOver   LeavePhase = "handing-over"
	LeaveLeavingRaft   LeavePhase = "leaving-raft"
	LeaveLeavingGossip LeavePhase = "leaving-gossip"
	LeaveDone          LeavePhase = "done"
	LeaveFailed        LeavePhase = "failed"
)

const (
	leavePollEvery = 100 * time.Millisecond
	// drainIdleFor is how long the planner must have nothing for a leaving
	// node before it gives up moving its remaining copies: several rounds
	// of the leader's reconcile loop (one second apart at worst).
	drainIdleFor = 3 * time.Second
)

// LeaveProgress is GET /v1/leave: how far a leave has gone.
type LeaveProgress struct {
	Phase           LeavePhase `json:"phase"`
	Started         time.Time  `json:"started,omitzero"`
	CopiesRemaining int        `json:"copies_remaining"`
	Primaries       int        `json:"primaries"`
	Error           string     `json:"error,omitempty"`
}

// leaveState guards one leave per agent.
type leaveState struct {
	mu       sync.Mutex
	progress LeaveProgress
	started  bool
	done     chan struct{}
	err      error
}

// ErrLeaveRefused wraps refusals that force overrides: leaving would lose
// the quorum or the last copy of a partition. A refused leave changed
// nothing; the agent is still a member.
var ErrLeaveRefused = control.ErrLeaveRefused

// Leave leaves the cluster gracefully (the steps above), bounded by
// Config.LeaveTimeout and by ctx. A second call waits for the first. force
// skips the safety checks. Leave does not stop the agent: call Shutdown
// after it.
func (a *Agent) Leave(ctx context.Context, force bool) error {
	a.leave.mu.Lock()
	if a.leave.started {
		done := a.leave.done
		a.leave.mu.Unlock()
		<-done
		a.leave.mu.Lock()
		defer a.leave.mu.Unlock()
		return a.leave.err
	}
	a.leave.started = true
	a.leave.done = make(chan struct{})
	a.leave.progress = LeaveProgress{Phase: LeaveDraining, Started: time.Now().UTC()}
	a.leave.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, a.cfg.LeaveTimeout.D())
	stop := context.AfterFunc(a.ctx, cancel) // Shutdown ends a leave too
	err := a.leaveSteps(ctx, force)
	stop()
	cancel()

	a.leave.mu.Lock()
	a.leave.err = err
	if err != nil {
		a.leave.progress.Phase = LeaveFailed
		a.leave.progress.Error = err.Error()
		if errors.Is(err, ErrLeaveRefused) {
			// A refused leave changed nothing; it may be tried again.
			a.leave.started = false
			a.ctrl.SetLeaving(false)
		}
	} else {
		a.leave.progress.Phase = LeaveDone
	}
	close(a.leave.done)
	a.leave.mu.Unlock()
	return err
}

func (a *Agent) setLeavePhase(p LeavePhase, copies, primaries int) {
	a.leave.mu.Lock()
	defer a.leave.mu.Unlock()
	a.leave.progress.Phase = p
	a.leave.progress.CopiesRemaining = copies
	a.leave.progress.Primaries = primaries
}

func (a *Agent) leaveSteps(ctx context.Context, force bool) error {
	state := a.raft.Snapshot()
	me, registered := state.Members[a.cfg.NodeID]
	if !registered || !state.Bootstrapped {
		// Never part of a cluster: nothing to hand over.
		return a.leaveGossip(ctx)
	}
	if !force {
		if err := a.ctrl.CheckLeaveSafe(state); err != nil {
			return err
		}
	}
	a.ctrl.SetLeaving(true)

	// 2. Announce and mark leaving.
	meta := a.localMeta()
	meta.Leaving = true
	if err := a.gossip.UpdateMeta(meta); err != nil {
		a.log.Warn("announcing the leave in gossip", "error", err)
	}
	if me.Status != failover.StatusLeaving && me.Status != failover.StatusLeft {
		promoted, err := a.ctrl.SetOwnStatus(ctx, failover.StatusLeaving)
		if err != nil {
			return fmt.Errorf("marking this node leaving: %w", err)
		}
		a.log.Info("leaving the cluster: moving partitions away", "primaries_promoted", promoted)
	}

	// 3. Drain. The plan is judged on this agent's own copy of the state,
	// so first wait until that copy shows the node leaving; then stop when
	// the node holds nothing, or when nothing involves it and the planner
	// has had nothing to do for a while (no place for the rest: the
	// migration limits are per round, so one empty plan proves nothing).
	poll := time.NewTicker(leavePollEvery)
	defer poll.Stop()
	idleSince := time.Time{}
drain:
	for {
		state = a.raft.Snapshot()
		copies, primaries, sourcing := control.Holdings(state, a.cfg.NodeID)
		a.setLeavePhase(LeaveDraining, copies, primaries)
		if copies == 0 && sourcing == 0 {
			break
		}
		leaving := state.Members[a.cfg.NodeID].Status == failover.StatusLeaving
		if leaving && sourcing == 0 && a.ctrl.NothingToPlanFor(state) {
			if idleSince.IsZero() {
				idleSince = time.Now()
			}
			if time.Since(idleSince) >= drainIdleFor {
				a.log.Warn("no place for the remaining copies; leaving them", "copies", copies)
				break
			}
		} else {
			idleSince = time.Time{}
		}
		select {
		case <-ctx.Done():
			a.log.Warn("leave timeout reached while moving partitions", "copies_remaining", copies)
			break drain
		case <-poll.C:
		}
	}

	// 4. Hand leadership over.
	a.setLeavePhase(LeaveHandingOver, 0, 0)
	if a.raft.IsLeader() {
		if err := a.ctrl.HandOverLeadership(ctx); err != nil {
			a.log.Warn("leadership hand-over failed", "error", err)
		}
	}

	// 5. Mark left; the leader removes this server from raft.
	a.setLeavePhase(LeaveLeavingRaft, 0, 0)
	if _, err := a.ctrl.SetOwnStatus(ctx, failover.StatusLeft); err != nil {
		a.log.Warn("marking this node left", "error", err)
	}
	for ctx.Err() == nil && a.ctrl.InConfiguration() {
		select {
		case <-ctx.Done():
		case <-poll.C:
		}
	}

	// 6. Leave gossip, with at least a moment even if the timeout is spent.
	return a.leaveGossip(ctx)
}

func (a *Agent) leaveGossip(ctx context.Context) error {
	a.setLeavePhase(LeaveLeavingGossip, 0, 0)
	remaining := time.Second
	if d, ok := ctx.Deadline(); ok && time.Until(d) > remaining {
		remaining = time.Until(d)
	}
	err := a.gossip.Leave(remaining)
	if errors.Is(err, gossip.ErrLeft) {
		return nil
	}
	return err
}

// handleLeave starts a graceful leave (POST /v1/leave, ?force=true to skip
// the safety checks) and answers 202 with the progress; the agent exits
// once it has left.
func (a *Agent) handleLeave(w http.ResponseWriter, r *http.Request) {
	force := r.URL.Query().Get("force") == "true"
	state := a.raft.Snapshot()
	if !force && state.Bootstrapped {
		if err := a.ctrl.CheckLeaveSafe(state); err != nil {
			writeError(w, http.StatusConflict, err.Error())
			return
		}
	}
	a.requestLeave(force)
	writeJSON(w, http.StatusAccepted, a.LeaveProgress())
}

// handleLeaveProgress is GET /v1/leave.
func (a *Agent) handleLeaveProgress(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.LeaveProgress())
}

func (a *Agent) LeaveProgress() LeaveProgress {
	a.leave.mu.Lock()
	defer a.leave.mu.Unlock()
	return a.leave.progress
}

// requestLeave passes a leave request on to the owner of the agent (the
// command: it performs the leave, then exits), see LeaveRequests.
func (a *Agent) requestLeave(force bool) {
	select {
	case a.leaveRequests <- force:
	default:
	}
}

// LeaveRequests delivers leave requests made through the API (POST
// /v1/leave; the value is its force): the agent's owner is expected to call
// Leave with it, then Shutdown. At most one request waits; more are dropped.
func (a *Agent) LeaveRequests() <-chan bool { return a.leaveRequests }
