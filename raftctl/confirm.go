package raftctl

import (
	"errors"
	"fmt"
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
// The answers are recorded by the transport (acks.go). Raft heartbeats
// every follower every HeartbeatTimeout/10 to /5, so the
// confirmation normally stays fresh without a message of its own; when it
// is older than asked, raft's VerifyLeader is called only to make raft
// heartbeat every follower at once (its own answer is not used), and the
// voters' answers are waited for.

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
