package raftctl

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Announcing commits to the followers.
//
// A follower applies an entry once it learns that the entry is committed,
// and it learns that only from the leader's next AppendEntries: raft sends
// one when a new entry is appended, or after CommitTimeout without one.
// With raft's 50 ms CommitTimeout the leader of an idle cluster sends an
// empty AppendEntries to every follower every 50-100 ms (each reading the
// previous entry back from its log store): members × ticks of work while
// nothing happens, most of the leader's idle CPU at 50 agents. Instead
// CommitTimeout is long (DefaultConfig), and after each command the leader
// applies it tells the followers itself.
//
// It tells each follower with an AppendEntries of its own that carries no
// entry: the previous entry is the leader's newest applied one, the commit
// index that same entry. raft accepts it as any AppendEntries of the
// leader's term: the follower checks that its log holds that entry in that
// term (then, by raft's log matching, everything before it agrees with
// the leader's), moves its commit index and applies. It is sent only to a
// follower whose answers show it holds the entry (acks.go), so it is never
// refused for a missing entry; a follower that has not stored it yet gets
// it as soon as it answers raft's replication that it has, up to
// CommitTimeout later (then raft's own next AppendEntries tells it).
//
// It replaced a barrier entry appended after each command (the barrier's
// AppendEntries carried the commit index): each follower then wrote and
// fsynced one more entry before it could apply, about half of the time
// from the leader's commit to the last follower's apply at 50 agents.
// Announcements coalesce: one tells every command applied before it.

// announcePace is the least time between two rounds of announcements: the
// commands of a burst (a reconcile round applies several in a row) share
// one.
const announcePace = 10 * time.Millisecond

// announceCommits wakes the announcer without blocking (the leader just
// committed a command).
func (n *Node) announceCommits() {
	select {
	case n.announce <- struct{}{}:
	default:
	}
}

// announcer is announceLoop's memory, per follower.
type announcer struct {
	n *Node
	// sends are the announcements in flight, one at most per follower.
	sends sync.WaitGroup
	mu    sync.Mutex
	peers map[raft.ServerID]*announcedTo
	// sent is signalled when an announcement ends: a follower that had
	// one in flight may be due another.
	sent chan struct{}
}

// announcedTo is what one follower was told.
type announcedTo struct {
	term, index uint64
	inFlight    bool
}

// announceLoop announces the leader's applied index after each wake-up,
// while this server leads, until Shutdown; a wake-up's round lasts until
// every follower was told, or CommitTimeout.
func (n *Node) announceLoop() {
	a := &announcer{n: n, peers: map[raft.ServerID]*announcedTo{}, sent: make(chan struct{}, 1)}
	defer a.sends.Wait()
	pace := time.NewTimer(0)
	defer pace.Stop()
	for {
		select {
		case <-n.shutdownCh:
			return
		case <-n.announce:
		}
		roundEnd := time.NewTimer(n.cfg.CommitTimeout)
		for over := false; !over && !a.announce(); {
			// Look again when a follower holds more, an announcement
			// ended or another command committed.
			select {
			case <-n.shutdownCh:
				roundEnd.Stop()
				return
			case <-roundEnd.C:
				over = true
			case <-n.acks.advanced:
			case <-a.sent:
			case <-n.announce:
			}
		}
		roundEnd.Stop()
		pace.Reset(announcePace)
		select {
		case <-n.shutdownCh:
			return
		case <-pace.C:
		}
	}
}

// announce tells the leader's applied index to every follower that holds
// that entry and was not told it yet. It reports whether every follower
// has been told (or there is nothing to tell: this server does not lead).
func (a *announcer) announce() bool {
	n := a.n
	if n.raft.State() != raft.Leader {
		return true
	}
	term := n.raft.CurrentTerm()
	index := n.raft.AppliedIndex()
	var entry raft.Log
	if err := n.logs.GetLog(index, &entry); err != nil {
		// The entry left the log for a snapshot (or the store failed):
		// raft's own next AppendEntries will tell the followers.
		return true
	}
	cf := n.raft.GetConfiguration()
	if cf.Error() != nil {
		return true
	}
	self := raft.ServerID(n.cfg.ServerID)
	req := raft.AppendEntriesRequest{
		RPCHeader: raft.RPCHeader{
			ProtocolVersion: raft.ProtocolVersionMax,
			ID:              []byte(self),
			Addr:            n.transport.EncodePeer(self, n.transport.LocalAddr()),
		},
		Term:              term,
		PrevLogEntry:      index,
		PrevLogTerm:       entry.Term,
		LeaderCommitIndex: index,
	}
	req.Leader = req.Addr // read by servers of raft protocol version < 3
	all := true
	a.mu.Lock()
	defer a.mu.Unlock()
	servers := map[raft.ServerID]bool{}
	for _, s := range cf.Configuration().Servers {
		if s.ID == self {
			continue
		}
		servers[s.ID] = true
		p := a.peers[s.ID]
		if p == nil {
			p = &announcedTo{}
			a.peers[s.ID] = p
		}
		if p.term == term && p.index >= index {
			continue
		}
		if p.inFlight || n.acks.matchIndex(s.ID, term) < index {
			all = false
			continue
		}
		p.term, p.index, p.inFlight = term, index, true
		a.sends.Add(1)
		go a.send(s.ID, s.Address, req, p)
	}
	for id := range a.peers {
		if !servers[id] {
			delete(a.peers, id)
		}
	}
	return all
}

// send is one announcement; its answer is recorded like any other
// (ackingTransport), and nothing else is done with it: a follower that
// refuses learns the commit from raft's own replication.
func (a *announcer) send(id raft.ServerID, addr raft.ServerAddress, req raft.AppendEntriesRequest, p *announcedTo) {
	defer a.sends.Done()
	var resp raft.AppendEntriesResponse
	a.n.trans.AppendEntries(id, addr, &req, &resp)
	a.mu.Lock()
	p.inFlight = false
	a.mu.Unlock()
	select {
	case a.sent <- struct{}{}:
	default:
	}
}
