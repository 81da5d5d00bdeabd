package control

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/steward-dev/steward/health"
	"github.com/steward-dev/steward/raftctl"
)

// Primary leases: fencing by time.
//
// An app serves a partition as primary only while it holds a lease for it,
// a deadline on its own monotonic clock that only renewals extend. Its agent
// renews every LeaseTimings.Renew by asking the raft leader, and the leader
// grants a partition to a node only when no other node can still hold a
// lease on it. The leader's bookkeeping is the LeaseLedger below; the
// argument that it is safe:
//
//  1. A holder counts its lease from the moment its request left (the app:
//     from when it asked its agent; the agent: from when it asked the
//     leader), so in real time a lease granted at leader time g ends before
//     g + Duration, stretched by at most maxClockDrift on the holder's
//     clock: before g + Wait.
//  2. The leader records, per partition, the last node it granted and when.
//     It grants the partition to another node only Wait after that record.
//     When raft moves a partition's primary from X to Y, grants to X stop
//     including it at once (they are computed from the leader's state), and
//     Y's first grant comes Wait after X's last: the two never overlap.
//  3. A leader grants only while a majority of the voters acknowledged its
//     term after v, no longer than VerifiedFor ago (raftctl's
//     ConfirmLeadership: not raft's VerifyLeader, which counts non-voters'
//     answers too): a newer leader
//     was elected after v (the majorities intersect in a voter that
//     acknowledged the old term before voting in the new one), so every
//     grant of an old leader precedes the new leader's election by less
//     than VerifiedFor. A new leader therefore grants nothing for
//     VerifiedFor + Wait after it takes over: the old grants have run out.
//
// Assumptions (docs/operations.md): clocks advance at rates within
// maxClockDrift of each other (wall-clock steps do not matter, only
// monotonic durations are used), and every agent of a cluster runs with the
// same lease timings (the same -profile, -probe-interval and
// -failure-threshold). A failed node's partitions are promoted in raft as
// soon as it is declared failed; its successor starts serving once the
// ledger allows, which, because the lease is shorter than failure detection,
// has normally already happened.

// maxClockDrift bounds how much faster or slower one node's monotonic clock
// may run than another's over a lease. Quartz oscillators drift by parts per
// million; 1 % is a wide margin for virtual machines whose clocks are
// slewed.
const maxClockDrift = 0.01

// LeaseTimings are the durations of the lease protocol.
type LeaseTimings struct {
	// Duration is how long a grant lasts, counted by its holder from the
	// moment it asked.
	Duration time.Duration
	// Renew is how often an agent asks for a new grant: several renewals
	// fit in one Duration, so one lost or slow request does not end it.
	Renew time.Duration
	// Wait is how long after its last grant to one node a partition may be
	// granted to another: Duration stretched by maxClockDrift, plus a
	// margin for the time between the holder's check and its answer.
	Wait time.Duration
	// VerifyEvery is how often the leader confirms its leadership with a
	// quorum; VerifiedFor is how old that confirmation may be for the
	// leader to grant.
	VerifyEvery time.Duration
	VerifiedFor time.Duration
	// RelayWait is how long a server that relays renewals to the leader
	// gathers them before it sends them as one batch, and RelayTimeout
	// bounds the batch's exchange (raftctl.LeaseRelay).
	RelayWait    time.Duration
	RelayTimeout time.Duration
}

// LeaseTimingsFor derives the lease from the failure detector's timings:
// three quarters of the confirmation window (FailureThreshold probes
// ProbeInterval apart), so that by the time a node is declared failed its
// lease has normally run out and promotion costs no extra wait.
// For the profiles: local 450ms, lan 675ms, wan 6.75s.
func LeaseTimingsFor(hc health.Config) LeaseTimings {
	window := time.Duration(hc.FailureThreshold) * hc.ProbeInterval
	d := window * 3 / 4
	return LeaseTimings{
		Duration: d,
		// A renewal every third of the lease, with 40 % fewer requests
		// than a fifth: each is a request the leader serves, per agent,
		// whether anything changes or not, the largest part of an idle
		// leader's work. Three renewals still fit in a lease; a slow
		// answer is waited for up to half a lease (agent/lease.go), and
		// after a lost one the next renewal has a sixth of the lease to
		// be answered before the grant runs out (it had 0.3 with a fifth).
		Renew: d / 3,
		Wait:  d + time.Duration(float64(d)*maxClockDrift) + d/10,
		// A check reads the voters' answers to raft's heartbeats, and
		// asks for fresh ones (raft then heartbeats every follower at
		// once) only when they are older than half a round; a quarter
		// of the lease leaves another quarter for that to be answered
		// before VerifiedFor runs out.
		VerifyEvery: d / 4,
		VerifiedFor: d / 2,
		// A relayed renewal waits up to half a renewal period for others
		// to join its batch: the leader then reads two batches per relay
		// per period instead of one request per agent, and a renewal
		// after a lost one still has a grant back (a sixth of the lease
		// plus a round trip in the worst case) before the lease runs out.
		RelayWait: d / 6,
		// The relay gives up on the leader after a quarter of the lease,
		// so that the agent, which waits up to half a lease, still has a
		// quarter to ask the leader directly.
		RelayTimeout: d / 4,
	}
}

// ErrLeadershipUnverified is the ledger's refusal while the leader has not
// confirmed its leadership recently.
var ErrLeadershipUnverified = errors.New("leadership not confirmed by a quorum recently")

// LeaseLedger is the leader's record of the grants it made. Time is an
// input (monotonic readings), so that it is tested without a clock.
type LeaseLedger struct {
	t LeaseTimings

	mu sync.Mutex
	// leading is set between BecameLeader and LostLeadership; term is the
	// raft term of that leadership (a node leads at most once per term).
	leading bool
	term    uint64
	// holdUntil: no partition is granted before it (a new leader waits out
	// its predecessors' grants).
	holdUntil time.Time
	// verifiedAt is when the last successful leadership check began.
	verifiedAt time.Time
	// last is, per partition, the last node granted and when.
	last map[int]leaseRecord
}

type leaseRecord struct {
	node string
	at   time.Time
}

func NewLeaseLedger(t LeaseTimings) *LeaseLedger {
	return &LeaseLedger{t: t, last: map[int]leaseRecord{}}
}

// BecameLeader starts a term of grants: nothing is granted before every
// grant of an earlier leader has run out.
func (l *LeaseLedger) BecameLeader(now time.Time, term uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.leading = true
	l.term = term
	l.holdUntil = now.Add(l.t.VerifiedFor + l.t.Wait)
	l.verifiedAt = time.Time{}
	l.last = map[int]leaseRecord{}
}

// LostLeadership stops grants.
func (l *LeaseLedger) LostLeadership() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.leading = false
	l.verifiedAt = time.Time{}
}

// LeadingIn reports whether the ledger grants for the given term.
func (l *LeaseLedger) LeadingIn(term uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.leading && l.term == term
}

// Verified records a successful leadership check, in the given term, that
// began at start.
func (l *LeaseLedger) Verified(start time.Time, term uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.leading && l.term == term && start.After(l.verifiedAt) {
		l.verifiedAt = start
	}
}

// Grant decides which of the partitions node is primary of it may serve
// now, and records them. primariesOf reads them (with their epochs) from
// the leader's state; it is called under the ledger's lock, so that a grant
// is never based on a state older than another grant's. grant refuses
// everything while leadership is unconfirmed; while a new leader waits out
// its predecessors, it grants contact but no partition.
func (l *LeaseLedger) Grant(now time.Time, term uint64, node string, primariesOf func() map[int]uint64) (map[int]uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.leading || l.term != term {
		return nil, errors.New("not leading in this term")
	}
	if l.verifiedAt.IsZero() || now.Sub(l.verifiedAt) > l.t.VerifiedFor {
		return nil, ErrLeadershipUnverified
	}
	out := map[int]uint64{}
	if now.Before(l.holdUntil) {
		return out, nil
	}
	for p, epoch := range primariesOf() {
		rec, ok := l.last[p]
		if ok && rec.node != node && now.Before(rec.at.Add(l.t.Wait)) {
			continue // the previous holder's lease may still run
		}
		if !ok || rec.node != node || now.After(rec.at) {
			l.last[p] = leaseRecord{node: node, at: now}
		}
		out[p] = epoch
	}
	return out, nil
}

// String is for logs.
func (t LeaseTimings) String() string {
	return fmt.Sprintf("lease %s, renewed every %s, handover wait %s", t.Duration, t.Renew, t.Wait)
}

// LeaseRound is the leader's side of the leases, run every
// LeaseTimings.VerifyEvery: it starts a ledger term when this agent becomes
// leader (by raft term, so that a leadership lost and won back between two
// rounds is still a new term) and confirms the leadership with a quorum.
func (c *Controller) LeaseRound() {
	if !c.raft.IsLeader() {
		c.leases.LostLeadership()
		return
	}
	term := c.raft.Term()
	if !c.leases.LeadingIn(term) {
		c.leases.BecameLeader(time.Now(), term)
		c.log.Info("granting primary leases", "term", term, "timings", c.cfg.Leases.String())
	}
	// A confirmation up to half a round old is taken as it is (raft's own
	// heartbeats keep it fresh); an older one is asked for. A grant made
	// just before the next round then relies on one at most 1.5 rounds
	// old, within VerifiedFor (two rounds).
	at, err := c.raft.ConfirmLeadership(term, c.cfg.Leases.VerifyEvery/2, c.cfg.Leases.VerifiedFor)
	if err != nil {
		c.log.Debug("leadership not confirmed; no lease granted until it is", "error", err)
		return
	}
	c.leases.Verified(at, term)
}

// GrantLease is the leader's raftctl.LeaseGranter: the partitions the
// asking node is primary of in the leader's state, as far as the ledger
// allows. A node that is not a live member gets contact but no partition.
// The partitions come from c.primaries, rebuilt only when the state
// changed.
func (c *Controller) GrantLease(req raftctl.LeaseRequest) (raftctl.LeaseGrant, error) {
	if req.Load != nil {
		c.load.Record(req.NodeID, *req.Load, req.LoadAge, c.clock.Elapsed())
	}
	var applied uint64
	primaries, err := c.leases.Grant(time.Now(), c.raft.Term(), req.NodeID, func() map[int]uint64 {
		// The index is read before the state (primariesIndex): a grant is
		// based on the state at that index or newer.
		index := c.raft.StateIndex()
		out := c.primaries.primariesOf(req.NodeID, index, c.raft.Read)
		applied = c.raft.Stats().AppliedIndex
		return out
	})
	if err != nil {
		return raftctl.LeaseGrant{}, err
	}
	return raftctl.LeaseGrant{Duration: c.cfg.Leases.Duration, Primaries: primaries, AppliedIndex: applied}, nil
}
