package raftctl

import (
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// Thinning the leader's heartbeats to non-voters.
//
// hashicorp/raft heartbeats every follower every HeartbeatTimeout/10 to /5,
// non-voters like voters, and cannot be told otherwise per server. At 50
// agents (5 voters, 45 non-voters) that is about 300 heartbeats a second
// the leader sends and reads answers to while nothing happens, a fifth of
// its idle CPU and most of the thread wake-ups behind another fifth
// (docs/benchmarks.md, "where the idle leader's time goes").
//
// A voter needs them: it starts an election after HeartbeatTimeout without
// one, and the leases' confirmation of leadership (confirm.go) reads the
// voters' answers. A non-voter needs only to keep knowing its leader: it
// forgets it after HeartbeatTimeout without hearing from it (and then
// renews no lease and forwards no write until it hears again). So the
// transport lets a heartbeat to a non-voter through only when the leader
// has no answer from it in this term sent within NonvoterContact; a
// heartbeat it holds back is answered for raft as a success in the
// request's term.
//
// What raft does with that answer (replication.go, heartbeat): it sets the
// follower's last contact and counts it for VerifyLeader. Neither matters
// for a non-voter: raft's own leader lease (checkLeaderLease) counts voters
// only, and Steward does not use VerifyLeader's answer (confirm.go counts
// the voters' real answers, which thinning never touches). A held-back
// heartbeat records nothing in acks, so it confirms nothing and hides
// nothing: a non-voter that stops answering is reported to the
// unreachable handler by the next heartbeat let through, at most
// NonvoterContact later.
type heartbeatThinning struct {
	// every is NonvoterContact; 0 lets every heartbeat through.
	every time.Duration
	// nonvoters are the non-voters of the leader's latest configuration
	// (refreshed by nonvoterLoop and after each membership change); nil
	// while this server does not lead. A server not in it is treated as a
	// voter: a mistake that way only costs heartbeats.
	nonvoters atomic.Pointer[map[raft.ServerID]struct{}]
	// held counts the heartbeats held back (tests, and the figures of
	// docs/benchmarks.md).
	held atomic.Uint64
}

// isHeartbeat reports whether args is one of raft's heartbeats: an
// AppendEntries with nothing but the term and the leader. Replication and
// the commit announcements always carry the leader's commit index.
func isHeartbeat(args *raft.AppendEntriesRequest) bool {
	return len(args.Entries) == 0 && args.PrevLogEntry == 0 && args.PrevLogTerm == 0 && args.LeaderCommitIndex == 0
}

// holdBack decides whether a heartbeat to id may be held back: id is a
// non-voter whose newest answer in term was to a request sent less than
// every before now.
func (t *heartbeatThinning) holdBack(id raft.ServerID, term uint64, acks *followerAcks, now time.Time) bool {
	if t == nil || t.every <= 0 {
		return false
	}
	nv := t.nonvoters.Load()
	if nv == nil {
		return false
	}
	if _, ok := (*nv)[id]; !ok {
		return false
	}
	sent, ok := acks.answeredAt(id, term)
	return ok && now.Sub(sent) < t.every
}

// setNonvoters records the non-voters of servers (nil: this server does
// not lead, nothing is held back).
func (t *heartbeatThinning) setNonvoters(servers []raft.Server) {
	if servers == nil {
		t.nonvoters.Store(nil)
		return
	}
	nv := map[raft.ServerID]struct{}{}
	for _, s := range servers {
		if s.Suffrage != raft.Voter {
			nv[s.ID] = struct{}{}
		}
	}
	t.nonvoters.Store(&nv)
}

// refreshNonvoters reads the latest configuration into the thinning while
// this server leads.
func (n *Node) refreshNonvoters() {
	if n.thin.every <= 0 {
		return
	}
	if n.raft.State() != raft.Leader {
		n.thin.setNonvoters(nil)
		return
	}
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		n.thin.setNonvoters(nil)
		return
	}
	n.thin.setNonvoters(f.Configuration().Servers)
}

// nonvoterLoop keeps the thinning's non-voters current: a configuration
// can change under a new leader (it reads the log) without a membership
// call on this server. Twice per HeartbeatTimeout, so that a non-voter
// promoted by another path is heartbeaten as a voter well before it could
// time out.
func (n *Node) nonvoterLoop() {
	tick := time.NewTicker(n.cfg.HeartbeatTimeout / 2)
	defer tick.Stop()
	for {
		n.refreshNonvoters()
		select {
		case <-tick.C:
		case <-n.shutdownCh:
			return
		}
	}
}

// HeldHeartbeats is how many heartbeats to non-voters this server, as
// leader, held back (NonvoterContact).
func (n *Node) HeldHeartbeats() uint64 { return n.thin.held.Load() }
