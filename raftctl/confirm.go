package raftctl

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Confirming leadership with the voters.
//
// The primary leases (control/lease.go) rest on one claim: when the leader
// confirms its leadership at v, no other leader was elected before v. It
// holds when a majority of the voters acknowledged the leader's term after
// v: a newer leader needs the votes of a majority too, the two majorities
// share a voter, and that voter, still in the old term when it answered,
// cannot have voted in a newer one before.
//
// hashicorp/raft's VerifyLeader (v1.7.3 and v1.8.0) does not check that: it
// counts the heartbeat answers of every follower, non-voters included,
// against the voters' quorum. With five voters and forty-five non-voters, a
// leader cut off from the other voters, or paused while they elected
// another, is confirmed by any two non-voters it still reaches; its grants
// then overlap the new leader's. So the confirmation is counted here: the
// transport records, per server, the newest AppendEntries (raft's
// heartbeats included) answered in the sender's term, and when that request
// left; a leader is confirmed since the instant by which a majority of the
// voters of the latest configuration had each answered a request sent no
// earlier.
//
// Raft heartbeats every follower every HeartbeatTimeout/10 to /5, so the
// confirmation normally stays fresh without a message of its own; when it
// is older than asked, raft's VerifyLeader is called only to make raft
// heartbeat every follower at once (its own answer is not used), and the
// voters' answers are waited for.

// ackRecord is a server's newest answer in a term.
type ackRecord struct {
	term uint64
	// sent is when the request it answered left (monotonic): the server
	// answered after it.
	sent time.Time
}

// voterAcks are the answers the leader's AppendEntries got, per server.
type voterAcks struct {
	mu sync.Mutex
	by map[raft.ServerID]ackRecord
}

func newVoterAcks() *voterAcks {
	return &voterAcks{by: map[raft.ServerID]ackRecord{}}
}

// record notes that id answered, in term, a request sent at sent.
func (a *voterAcks) record(id raft.ServerID, term uint64, sent time.Time) {
	a.mu.Lock()
	if old, ok := a.by[id]; !ok || term > old.term || (term == old.term && sent.After(old.sent)) {
		a.by[id] = ackRecord{term: term, sent: sent}
	}
	a.mu.Unlock()
}

// confirmedSince is the instant since which no leader other than the
// caller can have been elected in a term after term, given the voters of
// the configuration (self among them or not, confirmed at now): the
// need-th newest answer in term among the other voters, where need makes
// a majority with self. ok is false while too few voters answered in term.
func (a *voterAcks) confirmedSince(term uint64, self raft.ServerID, voters []raft.ServerID, now time.Time) (time.Time, bool) {
	need := len(voters)/2 + 1
	var sent []time.Time
	a.mu.Lock()
	for _, id := range voters {
		if id == self {
			need--
			continue
		}
		if rec, ok := a.by[id]; ok && rec.term == term {
			sent = append(sent, rec.sent)
		}
	}
	a.mu.Unlock()
	if need <= 0 {
		return now, true
	}
	if len(sent) < need {
		return time.Time{}, false
	}
	slices.SortFunc(sent, func(x, y time.Time) int { return y.Compare(x) }) // newest first
	return sent[need-1], true
}

// ackingTransport is raft's transport, recording the answers to
// AppendEntries (heartbeats included) for the confirmation. Every other
// method is the NetworkTransport's.
type ackingTransport struct {
	*raft.NetworkTransport
	acks *voterAcks
}

// AppendEntries sends the request and records an answer given in the
// request's term: the server was then in that term, not a later one. An
// answer with a later term, or none, records nothing.
func (t ackingTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	sent := time.Now()
	err := t.NetworkTransport.AppendEntries(id, target, args, resp)
	if err == nil && resp.Term == args.Term {
		t.acks.record(id, args.Term, sent)
	}
	return err
}

// confirmPoll is how often a ConfirmLeadership call that waits looks at
// the answers again. The wait adds at most this to a lease round, not to
// the confirmation's age: that is the answered requests' sending time.
const confirmPoll = 5 * time.Millisecond

// ErrNotConfirmed is wrapped by ConfirmLeadership's error when the voters'
// answers did not come in time.
var ErrNotConfirmed = errors.New("raftctl: leadership not confirmed by a majority of the voters")

// ConfirmLeadership returns an instant since which no other server can
// have been elected leader: this server leads in term, and a majority of
// the voters answered it in term after that instant. A confirmation at
// most fresh old is returned at once; otherwise raft is made to heartbeat
// every follower now and the answers are waited for, up to timeout. The
// error is ErrNotLeader when this server does not lead in term, and wraps
// ErrNotConfirmed when the answers did not come.
func (n *Node) ConfirmLeadership(term uint64, fresh, timeout time.Duration) (time.Time, error) {
	start := time.Now()
	at, err := n.confirmedSince(term, start)
	if err != nil {
		return time.Time{}, err
	}
	if !at.IsZero() && start.Sub(at) <= fresh {
		return at, nil
	}
	// raft's own answer counts non-voters (above): only its heartbeats
	// are wanted. The future is answered into a buffered channel; nobody
	// needs to wait for it.
	n.raft.VerifyLeader()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	poll := time.NewTicker(confirmPoll)
	defer poll.Stop()
	for {
		select {
		case <-poll.C:
		case <-deadline.C:
			return time.Time{}, fmt.Errorf("%w within %s", ErrNotConfirmed, timeout)
		case <-n.shutdownCh:
			return time.Time{}, ErrShutdown
		}
		at, err := n.confirmedSince(term, time.Now())
		if err != nil {
			return time.Time{}, err
		}
		if !at.Before(start) {
			return at, nil
		}
	}
}

// confirmedSince is voterAcks.confirmedSince for this node's term and
// latest configuration; the zero time when not (yet) confirmed.
func (n *Node) confirmedSince(term uint64, now time.Time) (time.Time, error) {
	if n.raft.State() != raft.Leader || n.raft.CurrentTerm() != term {
		return time.Time{}, ErrNotLeader
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return time.Time{}, mapRaftError(err)
	}
	var voters []raft.ServerID
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters = append(voters, s.ID)
		}
	}
	at, _ := n.acks.confirmedSince(term, raft.ServerID(n.cfg.ServerID), voters, now)
	return at, nil
}
