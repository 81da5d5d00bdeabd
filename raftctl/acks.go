package raftctl

import (
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// The followers' answers to the leader's AppendEntries.
//
// raft keeps what its followers answered to itself. Two things here need
// it: the leases' confirmation of leadership (confirm.go: which voters
// answered in the leader's term, and since when) and the announcement of
// commits (announce.go: which followers hold the leader's newest entry).
// So raft's transport is wrapped, and every answer to an AppendEntries
// (raft's heartbeats, its replication whether pipelined or not, and the
// announcements) is recorded per server.
//
// A request that gets no answer at all (the connection refused, reset or
// timed out) is reported to the unreachable handler (SetUnreachableHandler):
// the leader heartbeats every follower several times a second, so this is
// its first sign of a dead follower, well before gossip's probe lottery
// reaches it.

// ackRecord is a server's newest answer in a term.
type ackRecord struct {
	term uint64
	// sent is when the request it answered left (monotonic): the server
	// answered after it.
	sent time.Time
	// match is the highest index known to be in the server's log as in the
	// leader's (raft's matchIndex): a successful answer to a request whose
	// entries ended at it. 0 when none was answered in term.
	match uint64
}

// followerAcks are the answers the leader's AppendEntries got, per server.
type followerAcks struct {
	mu sync.Mutex
	by map[raft.ServerID]ackRecord
	// advanced is signalled (without blocking) when a server's match
	// grows: the announcer waits on it for a follower to catch up.
	advanced chan struct{}
	// onUnreachable is the unreachable handler; nil: none.
	onUnreachable func(id string)
}

// unreachable reports to the handler that id did not answer.
func (a *followerAcks) unreachable(id raft.ServerID) {
	a.mu.Lock()
	h := a.onUnreachable
	a.mu.Unlock()
	if h != nil {
		h(string(id))
	}
}

func newFollowerAcks() *followerAcks {
	return &followerAcks{by: map[raft.ServerID]ackRecord{}, advanced: make(chan struct{}, 1)}
}

// record notes that id answered, in term, a request sent at sent; match is
// the index its log now holds as the leader's (0: the answer says nothing
// of it, a heartbeat's or a refusal's).
func (a *followerAcks) record(id raft.ServerID, term uint64, sent time.Time, match uint64) {
	a.mu.Lock()
	old, ok := a.by[id]
	rec := old
	switch {
	case !ok || term > old.term:
		rec = ackRecord{term: term, sent: sent, match: match}
	case term == old.term:
		if sent.After(old.sent) {
			rec.sent = sent
		}
		rec.match = max(old.match, match)
	}
	a.by[id] = rec
	a.mu.Unlock()
	if rec.match > old.match || rec.term > old.term && rec.match > 0 {
		select {
		case a.advanced <- struct{}{}:
		default:
		}
	}
}

// matchIndex is the index id's log is known to hold as the leader's in
// term; 0 when nothing is known.
func (a *followerAcks) matchIndex(id raft.ServerID, term uint64) uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	if rec, ok := a.by[id]; ok && rec.term == term {
		return rec.match
	}
	return 0
}

// answeredAt is when the newest request id answered in term left; ok is
// false when id answered nothing in term.
func (a *followerAcks) answeredAt(id raft.ServerID, term uint64) (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if rec, ok := a.by[id]; ok && rec.term == term {
		return rec.sent, true
	}
	return time.Time{}, false
}

// confirmedSince is the instant since which no leader other than the
// caller can have been elected in a term after term, given the voters of
// the configuration (self among them or not, confirmed at now): the
// need-th newest answer in term among the other voters, where need makes
// a majority with self. ok is false while too few voters answered in term.
func (a *followerAcks) confirmedSince(term uint64, self raft.ServerID, voters []raft.ServerID, now time.Time) (time.Time, bool) {
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

// recordAnswer records the answer resp to args, sent at sent, when it was
// given in the request's term (the server was then in that term, not a
// later one); an answer with a later term records nothing.
func (a *followerAcks) recordAnswer(id raft.ServerID, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse, sent time.Time) {
	if resp.Term != args.Term {
		return
	}
	var match uint64
	if resp.Success && (args.PrevLogEntry > 0 || len(args.Entries) > 0) {
		// raft's own rule for matchIndex: the follower's log agrees with
		// the leader's up to the last entry sent, or the previous one.
		match = args.PrevLogEntry
		if n := len(args.Entries); n > 0 {
			match = args.Entries[n-1].Index
		}
	}
	a.record(id, args.Term, sent, match)
}

// ackingTransport is raft's transport, recording the answers to
// AppendEntries, pipelined or not, and holding the heartbeats to a
// non-voter until it is due one (thin.go). Every other method is the
// NetworkTransport's.
type ackingTransport struct {
	*raft.NetworkTransport
	acks *followerAcks
	thin *heartbeatThinning
}

// AppendEntries sends the request and records the answer.
func (t ackingTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	if isHeartbeat(args) {
		if wait := t.thin.dueIn(id, args.Term, t.acks, time.Now()); wait > 0 {
			t.thin.held.Add(1)
			t.thin.hold(id, wait)
		}
	}
	sent := time.Now()
	err := t.NetworkTransport.AppendEntries(id, target, args, resp)
	if err != nil {
		t.thin.failed(id)
		t.acks.unreachable(id)
		return err
	}
	t.acks.recordAnswer(id, args, resp, sent)
	return nil
}

// AppendEntriesPipeline is the NetworkTransport's pipeline, its answers
// recorded as raft consumes them.
func (t ackingTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	p, err := t.NetworkTransport.AppendEntriesPipeline(id, target)
	if err != nil {
		t.acks.unreachable(id)
		return nil, err
	}
	ap := &ackingPipeline{
		AppendPipeline: p,
		id:             id,
		acks:           t.acks,
		done:           make(chan raft.AppendFuture),
		stop:           make(chan struct{}),
		stopped:        make(chan struct{}),
	}
	go ap.relay()
	return ap, nil
}

// ackingPipeline relays the pipeline's finished requests to raft,
// recording each answer on the way. Its relay goroutine is owned by the
// pipeline: raft closes every pipeline it opens, and Close waits for it.
type ackingPipeline struct {
	raft.AppendPipeline
	id   raft.ServerID
	acks *followerAcks
	// done is what raft consumes; stop ends the relay, stopped is closed
	// when it has ended.
	done     chan raft.AppendFuture
	stop     chan struct{}
	stopOnce sync.Once
	stopped  chan struct{}
}

func (p *ackingPipeline) relay() {
	defer close(p.stopped)
	in := p.AppendPipeline.Consumer()
	for {
		select {
		case f := <-in:
			// The pipeline hands over a request once answered or failed:
			// Error does not wait.
			if f.Error() == nil {
				p.acks.recordAnswer(p.id, f.Request(), f.Response(), f.Start())
			} else {
				p.acks.unreachable(p.id)
			}
			select {
			case p.done <- f:
			case <-p.stop:
				return
			}
		case <-p.stop:
			return
		}
	}
}

// Consumer is where raft reads the finished requests.
func (p *ackingPipeline) Consumer() <-chan raft.AppendFuture { return p.done }

// Close closes the pipeline and waits for the relay to end.
func (p *ackingPipeline) Close() error {
	err := p.AppendPipeline.Close()
	p.stopOnce.Do(func() { close(p.stop) })
	<-p.stopped
	return err
}

// SetUnreachableHandler installs h, called with a server's ID each time an
// AppendEntries this server sends it as leader gets no answer (the
// connection refused, reset or timed out): a sign the server may be down,
// not a proof (the agent's failure detector takes it as a suspicion and
// confirms it with its own probes). h is called from raft's replication
// goroutines and must not block. Nil removes it.
func (n *Node) SetUnreachableHandler(h func(serverID string)) {
	n.acks.mu.Lock()
	n.acks.onUnreachable = h
	n.acks.mu.Unlock()
}
