package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/steward-dev/steward/raftctl"
)

// This file is the agent's side of primary leases (the leader's
// bookkeeping and the safety argument are in control/lease.go): every agent
// renews its lease with the leader, serves it to its app on GET /v1/lease,
// and counts the time since the leader last answered as the age of its
// view of the cluster; the leader confirms its leadership and grants.

// heldLease is the last grant this agent received.
type heldLease struct {
	mu sync.Mutex
	// sentAt is when the request of the current grant left (monotonic):
	// the grant runs from it.
	sentAt time.Time
	grant  raftctl.LeaseGrant
	// via is the raft ID of the server that relayed the grant ("": the
	// leader answered directly).
	via string
	// current is when the request left of the newest grant this agent's
	// raft log has caught up with: it held, by then or since, every entry
	// the leader had applied when it granted. That is the agent's contact
	// with the leader as readiness counts it. A grant alone would not do:
	// a non-voter cut off from the leader still reaches it through a
	// relay, and gets grants while its own state falls behind. behind
	// are the newer grants, oldest first, not caught up with yet.
	current time.Time
	behind  []grantMark
}

// grantMark is a grant not caught up with yet: when its request left, and
// the leader's applied entry it was granted at.
type grantMark struct {
	sent        time.Time
	index, term uint64
}

// maxBehind bounds the grants kept until this agent's log catches up with
// them; the oldest are dropped (a newer one caught up with counts for more).
const maxBehind = 8

// catchUp moves current to the newest of the marks whose entry the log
// holds, and returns the marks it does not hold yet.
func catchUp(current time.Time, marks []grantMark, holds func(index, term uint64) bool) (time.Time, []grantMark) {
	kept := marks[:0]
	for _, m := range marks {
		if !holds(m.index, m.term) {
			kept = append(kept, m)
			continue
		}
		if m.sent.After(current) {
			current = m.sent
		}
	}
	return current, kept
}

// leaseView is the lease as of one instant.
type leaseView struct {
	// Remaining is how long the lease still runs; 0 when it has run out.
	Remaining time.Duration
	// Primaries are the partitions (with epochs) the app may serve as
	// primary while Remaining lasts; empty when it has run out.
	Primaries map[int]uint64
	// ContactAge is how long ago the request left of the newest grant
	// whose leader's applied entry this agent's log holds (-1: none): how
	// old its view of the cluster may be.
	ContactAge time.Duration
	// GrantAge is how long ago the request of the newest grant left,
	// caught up with or not (-1: none).
	GrantAge time.Duration
	// Behind is set while the newest grant is not caught up with: the
	// leader's applied index it came with; Last is this agent's last log
	// index (a log that ends past Behind but holds another term's entry
	// there has not caught up either).
	Behind, Last uint64
}

func (h *heldLease) set(sentAt time.Time, g raftctl.LeaseGrant, via string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if sentAt.Before(h.sentAt) {
		return // an answer overtaken by a later one
	}
	h.sentAt, h.grant, h.via = sentAt, g, via
	if len(h.behind) == maxBehind {
		h.behind = append(h.behind[:0], h.behind[1:]...)
	}
	h.behind = append(h.behind, grantMark{sent: sentAt, index: g.AppliedIndex, term: g.AppliedTerm})
}

// relayedBy is the raft ID of the server that relayed the last grant, ""
// when the leader answered directly or there was none.
func (h *heldLease) relayedBy() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.via
}

// view is the lease at now, for an agent whose raft log ends at last and
// holds the entries holds says.
func (h *heldLease) view(now time.Time, last uint64, holds func(index, term uint64) bool) leaseView {
	h.mu.Lock()
	defer h.mu.Unlock()
	v := leaseView{ContactAge: -1, GrantAge: -1, Primaries: map[int]uint64{}}
	h.current, h.behind = catchUp(h.current, h.behind, holds)
	if !h.current.IsZero() {
		v.ContactAge = now.Sub(h.current)
	}
	if len(h.behind) > 0 {
		v.Behind, v.Last = h.behind[len(h.behind)-1].index, last
	}
	if h.sentAt.IsZero() {
		return v
	}
	v.GrantAge = now.Sub(h.sentAt)
	if rem := h.sentAt.Add(h.grant.Duration).Sub(now); rem > 0 {
		v.Remaining = rem
		for p, e := range h.grant.Primaries {
			v.Primaries[p] = e
		}
	}
	return v
}

// leaseLoop renews this agent's lease every Renew, whoever leads.
func (a *Agent) leaseLoop() { a.every(a.leaseTimings.Renew, a.renewLease) }

// renewLease asks the leader (itself when it leads) for a grant once.
func (a *Agent) renewLease() {
	req := raftctl.LeaseRequest{NodeID: a.cfg.NodeID}
	sent := time.Now()
	leaderID, addr := a.raft.Leader()
	req.Load, req.LoadAge = a.loadToSend(leaderID, sent)
	var g raftctl.LeaseGrant
	var via string
	var err error
	if a.raft.IsLeader() {
		g, err = a.raft.GrantLocal(req)
	} else if addr != "" {
		// A grant that arrives after half the lease is of little use. A
		// slow answer (a busy leader) is waited for rather than replaced:
		// the renewal due meanwhile is sent as soon as this one ends.
		ctx, cancel := context.WithTimeout(a.ctx, a.leaseTimings.Duration/2)
		g, via, err = a.requestLease(ctx, leaderID, addr, req)
		cancel()
	} else {
		return
	}
	if err != nil {
		a.log.Trace("lease not renewed", "error", err)
		return
	}
	if req.Load != nil {
		a.loadSent(leaderID, sent)
	}
	a.lease.set(sent, g, via)
}

// requestLease asks for a grant through this agent's relay
// (leaserelay.go), or from the leader at addr directly when it has none or
// the relay fails and ctx leaves time for it. via is the relay's raft ID
// when it answered.
func (a *Agent) requestLease(ctx context.Context, leaderID, addr string, req raftctl.LeaseRequest) (g raftctl.LeaseGrant, via string, err error) {
	relay, ok := a.leaseRelays.pick(a.raftID, leaderID, time.Now(), a.raft.Configuration)
	if ok {
		if g, err = a.raft.RequestLease(ctx, relay.Address, req); err == nil {
			return g, relay.ID, nil
		}
		if errors.Is(err, raftctl.ErrLeaderRefused) {
			// The leader's own refusal, passed on (after an election it
			// grants nothing until its predecessor's grants ran out):
			// asking it directly would get the same answer, and the
			// relay did its part.
			return g, "", err
		}
		a.leaseRelays.failed(relay.ID, time.Now())
		a.log.Debug("lease relay failed, asking the leader directly", "relay", relay.ID, "error", err)
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < a.leaseTimings.Duration/8 {
			return g, "", err
		}
	}
	g, err = a.raft.RequestLease(ctx, addr, req)
	return g, "", err
}

// leaseVerifyLoop runs the leader's side of the leases
// (control.Controller.LeaseRound): every VerifyEvery while this agent
// leads, and once more after it stopped (the round then drops the
// ledger). A follower waits for raft to tell it of a change of leader
// instead: a round on a follower does nothing but costs a wake-up, nine a
// second on every agent on local, and an idle agent's CPU is mostly its
// wake-ups (docs/benchmarks.md, "Where an idle agent's CPU goes"). An
// agent that wins an election is told so at once (raftctl.SubscribeLeader),
// so its first round is no later than a tick would have made it.
func (a *Agent) leaseVerifyLoop() {
	leaders, unsubscribe := a.raft.SubscribeLeader()
	defer unsubscribe()
	ticker := time.NewTicker(a.leaseTimings.VerifyEvery)
	defer ticker.Stop()
	for {
		a.ctrl.LeaseRound()
		tick := ticker.C
		if !a.raft.IsLeader() {
			// Only a change of leader can make this agent lead. A ticker
			// nobody waits on does not wake the process (Go 1.23 timers).
			tick = nil
		}
		select {
		case <-a.ctx.Done():
			return
		case <-leaders:
		case <-tick:
		}
	}
}

// leaseView is this agent's lease now.
func (a *Agent) leaseView() leaseView {
	return a.lease.view(time.Now(), a.raft.LastIndex(), a.raft.HoldsEntry)
}

// inContact reports whether the leader answered this agent within the
// lease duration, and its log has caught up with what the leader had
// applied then: otherwise its view of the cluster may be stale (cut off,
// paused, no quorum).
func (a *Agent) inContact() bool {
	age := a.leaseView().ContactAge
	return age >= 0 && age <= a.leaseTimings.Duration
}

// readiness says whether this agent's view of the cluster is current: its
// raft store takes writes, it caught up after its start, and the leader
// answered it within the lease duration. The reason is for /v1/status and errors.
func (a *Agent) readiness() (bool, string) {
	if err := a.raft.StorageError(); err != nil {
		return false, err.Error()
	}
	if !a.ready.Load() {
		return false, "this agent has not caught up with the cluster yet"
	}
	v := a.leaseView()
	if v.ContactAge >= 0 && v.ContactAge <= a.leaseTimings.Duration {
		return true, ""
	}
	switch {
	case v.GrantAge < 0:
		return false, "no leader has answered this agent yet"
	case v.GrantAge > a.leaseTimings.Duration:
		return false, "no contact with the leader for " + v.GrantAge.Round(time.Millisecond).String()
	case v.ContactAge < 0:
		return false, fmt.Sprintf("the leader answers, but this agent's raft log (to index %d) does not hold the leader's applied index %d yet", v.Last, v.Behind)
	default:
		return false, fmt.Sprintf("the leader answers, but this agent's raft log (to index %d) has not held the leader's applied index (%d) for %s", v.Last, v.Behind, v.ContactAge.Round(time.Millisecond))
	}
}

// leaseResponse is GET /v1/lease.
type leaseResponse struct {
	NodeID string `json:"node_id"`
	// Valid: the app may serve the partitions of Primaries as primary
	// for RemainingMS from the moment it sent this request.
	Valid       bool  `json:"valid"`
	RemainingMS int64 `json:"remaining_ms"`
	DurationMS  int64 `json:"duration_ms"`
	// Primaries maps partition numbers to the epoch at which this node is
	// their primary.
	Primaries map[string]uint64 `json:"primaries"`
	// LeaderContactMS is how long ago the leader last answered this agent
	// with a grant its raft log has since caught up with (-1: never).
	LeaderContactMS int64 `json:"leader_contact_ms"`
}

// handleLease is GET /v1/lease, polled by the app (hooks.LeaseKeeper).
func (a *Agent) handleLease(w http.ResponseWriter, r *http.Request) {
	v := a.leaseView()
	out := leaseResponse{
		NodeID:          a.cfg.NodeID,
		Valid:           v.Remaining > 0,
		RemainingMS:     v.Remaining.Milliseconds(), // rounded down: never longer than granted
		DurationMS:      a.leaseTimings.Duration.Milliseconds(),
		Primaries:       make(map[string]uint64, len(v.Primaries)),
		LeaderContactMS: -1,
	}
	if v.ContactAge >= 0 {
		out.LeaderContactMS = v.ContactAge.Milliseconds()
	}
	for p, e := range v.Primaries {
		out.Primaries[strconv.Itoa(p)] = e
	}
	writeJSON(w, http.StatusOK, out)
}
