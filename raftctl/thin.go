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
// transport holds a heartbeat to a non-voter until the non-voter is due
// one: NonvoterContact after the newest request it answered in this term
// (a heartbeat, raft's idle AppendEntries, a commit announcement). raft's
// heartbeat goroutine for that follower waits in the transport meanwhile,
// then sends the heartbeat and gets the real answer: raft sees a slow
// heartbeat, never a made-up one, and the goroutine wakes once per
// heartbeat sent instead of every HeartbeatTimeout/10 (each wake-up of a
// process costs more in Go's scheduler than the message itself,
// docs/benchmarks.md).
//
// What a held heartbeat delays: raft's last contact with that non-voter
// and its VerifyLeader, neither of which counts a non-voter where it
// matters (raft's own leader lease counts voters only, and Steward's
// confirmation of leadership counts the voters' answers, which thinning
// never touches); and the unreachable handler's first sign of a dead
// non-voter, up to NonvoterContact later.
type heartbeatThinning struct {
	// every is NonvoterContact; 0 lets every heartbeat through.
	every time.Duration
	// nonvoters are the non-voters of the leader's latest configuration
	// (refreshed by nonvoterLoop and after each membership change); nil
	// while this server does not lead. A server not in it is treated as a
	// voter: a mistake that way only costs heartbeats.
	nonvoters atomic.Pointer[map[raft.ServerID]struct{}]
	// stop ends a hold early: the node's shutdown.
	stop <-chan struct{}
	// held counts the heartbeats held (tests, the metric
	// steward_raft_heartbeats_held_total).
	held atomic.Uint64
}

// isHeartbeat reports whether args is one of raft's heartbeats: an
// AppendEntries with nothing but the term and the leader. Replication and
// the commit announcements always carry the leader's commit index.
func isHeartbeat(args *raft.AppendEntriesRequest) bool {
	return len(args.Entries) == 0 && args.PrevLogEntry == 0 && args.PrevLogTerm == 0 && args.LeaderCommitIndex == 0
}

// dueIn is how long a heartbeat to id should wait: until every after the
// newest request id answered in term when id is a non-voter, 0 (send it
// now) otherwise.
func (t *heartbeatThinning) dueIn(id raft.ServerID, term uint64, acks *followerAcks, now time.Time) time.Duration {
	if t == nil || t.every <= 0 {
		return 0
	}
	nv := t.nonvoters.Load()
	if nv == nil {
		return 0
	}
	if _, ok := (*nv)[id]; !ok {
		return 0
	}
	sent, ok := acks.answeredAt(id, term)
	if !ok {
		return 0
	}
	return max(0, t.every-now.Sub(sent))
}

// hold waits d, or less if the node shuts down.
func (t *heartbeatThinning) hold(d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-t.stop:
	}
}

// setNonvoters records the non-voters of servers (nil: this server does
// not lead, nothing is held).
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
// leader, held until the non-voter was due one (NonvoterContact).
func (n *Node) HeldHeartbeats() uint64 { return n.thin.held.Load() }
