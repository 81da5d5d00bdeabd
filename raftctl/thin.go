package raftctl

import (
	"sync"
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
// A non-voter need not forget its leader after raft's HeartbeatTimeout: it
// holds no election. With Config.NonvoterHeartbeatTimeout (three times
// raft's timeout on every profile) a server switches raft to that longer
// timeout while it is a non-voter (switchHeartbeatTimeout, raft's
// ReloadConfig) and says so in each lease renewal (LeaseRequest carries
// its raft ID and timeout, through the relays too); the leader then holds
// its heartbeats for NonvoterContact scaled by the same factor (1.2 s on
// local and lan instead of 0.4 s). The leader takes the word for as long
// as the renewals keep coming (RenewalSilence, below), forgets it as soon
// as an AppendEntries to that server fails (it may come back as an older
// version, on the shorter timeout), and never holds a server it does not
// know for a non-voter. A server says
// it only once raft runs the longer timeout, so a hold never outlasts the
// timeout in force; an older version says nothing and is held for
// NonvoterContact. The longer hold would make the leader's first sign of a
// dead non-voter (its held heartbeat failing) come up to 1.2 s after the
// death instead of 0.4 s; so when a non-voter's renewals stop for
// RenewalSilence (a renewal period and a relay's wait), the leader lets
// its held heartbeat go at once (releaseSilent), and holds it for
// NonvoterContact only until it renews again.
//
// What a held heartbeat delays: raft's last contact with that non-voter
// and its VerifyLeader, neither of which counts a non-voter where it
// matters (raft's own leader lease counts voters only, and Steward's
// confirmation of leadership counts the voters' answers, which thinning
// never touches); and the unreachable handler's first sign of a dead
// non-voter, up to the hold later.
type heartbeatThinning struct {
	// every is NonvoterContact; 0 lets every heartbeat through.
	every time.Duration
	// long is the hold of a non-voter that said it runs the longer
	// NonvoterHeartbeatTimeout (longTimeout): every, scaled by the ratio of
	// the two timeouts. 0: none is held longer.
	long, longTimeout time.Duration
	// longMu guards longSince: when each non-voter last said, in a lease
	// renewal, that it runs the longer timeout. A word older than silence
	// no longer counts (its renewals stopped), nor one from a server whose
	// AppendEntries failed since (it may have restarted as another
	// version).
	longMu    sync.Mutex
	longSince map[raft.ServerID]time.Time
	// silence is RenewalSilence (longTimeout when unset or longer).
	// holding are the holds of servers that said it, in progress, each
	// ended early by closing its channel when the server's renewals fall
	// silent (releaseSilent, which lastScan, in Unix nanoseconds, paces).
	silence  time.Duration
	holding  map[raft.ServerID]chan struct{}
	lastScan atomic.Int64
	// released counts the holds ended that way (tests).
	released atomic.Uint64
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
	every := t.every
	if t.runsLong(id, now) {
		every = t.long
	}
	return max(0, every-now.Sub(sent))
}

// newThinning is the thinning of cfg's timings, ended early by stop.
func newThinning(cfg *Config, stop <-chan struct{}) *heartbeatThinning {
	t := &heartbeatThinning{every: cfg.NonvoterContact, stop: stop, longSince: map[raft.ServerID]time.Time{}, holding: map[raft.ServerID]chan struct{}{}}
	if cfg.NonvoterHeartbeatTimeout > cfg.HeartbeatTimeout && cfg.HeartbeatTimeout > 0 {
		t.longTimeout = cfg.NonvoterHeartbeatTimeout
		t.long = time.Duration(float64(cfg.NonvoterContact) * float64(cfg.NonvoterHeartbeatTimeout) / float64(cfg.HeartbeatTimeout))
		t.silence = cfg.RenewalSilence
		if t.silence <= 0 || t.silence > t.longTimeout {
			t.silence = t.longTimeout
		}
	}
	return t
}

// releaseSilent ends the holds of the servers whose word is older than
// silence: their renewals stopped. It runs on every renewal the leader
// answers (GrantLocal), which a live cluster brings dozens of times per
// silence without waking the leader for it, and looks at most sixteen
// times per silence (a look reads the few dozen holds under way).
func (t *heartbeatThinning) releaseSilent(now time.Time) {
	if t == nil || t.long <= 0 {
		return
	}
	last := t.lastScan.Load()
	if now.UnixNano()-last < int64(t.silence/16) || !t.lastScan.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	t.longMu.Lock()
	defer t.longMu.Unlock()
	for id, release := range t.holding {
		if at, ok := t.longSince[id]; !ok || now.Sub(at) > t.silence {
			close(release)
			delete(t.holding, id)
			t.released.Add(1)
		}
	}
}

// said records what id's lease renewal said of its heartbeat timeout at
// now: whether it runs (at least) the longer one.
func (t *heartbeatThinning) said(id raft.ServerID, timeout time.Duration, now time.Time) {
	if t == nil || t.long <= 0 || id == "" {
		return
	}
	t.longMu.Lock()
	defer t.longMu.Unlock()
	if timeout >= t.longTimeout {
		t.longSince[id] = now
	} else {
		delete(t.longSince, id)
	}
}

// failed forgets what id said: an AppendEntries to it got no answer.
func (t *heartbeatThinning) failed(id raft.ServerID) {
	if t == nil || t.long <= 0 {
		return
	}
	t.longMu.Lock()
	delete(t.longSince, id)
	t.longMu.Unlock()
}

// runsLong reports whether id said recently enough that it runs the
// longer heartbeat timeout.
func (t *heartbeatThinning) runsLong(id raft.ServerID, now time.Time) bool {
	if t.long <= 0 {
		return false
	}
	t.longMu.Lock()
	defer t.longMu.Unlock()
	at, ok := t.longSince[id]
	return ok && now.Sub(at) <= t.silence
}

// hold waits d before a heartbeat to id, or less if the node shuts down
// or, when id is held for the longer timeout, its renewals stop
// (releaseSilent).
func (t *heartbeatThinning) hold(id raft.ServerID, d time.Duration) {
	var release chan struct{}
	if d > t.every {
		release = make(chan struct{})
		t.longMu.Lock()
		t.holding[id] = release
		t.longMu.Unlock()
		defer func() {
			t.longMu.Lock()
			if t.holding[id] == release {
				delete(t.holding, id)
			}
			t.longMu.Unlock()
		}()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-t.stop:
	case <-release: // nil, blocking, when not held for the longer timeout
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
	t.longMu.Lock()
	for id := range t.longSince {
		if _, ok := nv[id]; !ok {
			delete(t.longSince, id)
		}
	}
	t.longMu.Unlock()
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
		n.switchHeartbeatTimeout()
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

// ownHeartbeatTimeout is the heartbeat timeout raft runs on this server
// now: HeartbeatTimeout, or NonvoterHeartbeatTimeout while it is a
// non-voter (switchHeartbeatTimeout).
func (n *Node) ownHeartbeatTimeout() time.Duration {
	return time.Duration(n.heartbeatTimeout.Load())
}

// switchHeartbeatTimeout makes raft run NonvoterHeartbeatTimeout while this
// server is a non-voter of its latest configuration, and HeartbeatTimeout
// otherwise (a voter, or not in it). The lease renewals say which it runs
// only once it does (RequestLease), so the leader never holds heartbeats
// longer than the timeout in force.
func (n *Node) switchHeartbeatTimeout() {
	if n.cfg.NonvoterHeartbeatTimeout <= n.cfg.HeartbeatTimeout {
		return
	}
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	want := n.cfg.HeartbeatTimeout
	for _, s := range f.Configuration().Servers {
		if s.ID == raft.ServerID(n.cfg.ServerID) && s.Suffrage != raft.Voter {
			want = n.cfg.NonvoterHeartbeatTimeout
		}
	}
	if want == n.ownHeartbeatTimeout() {
		return
	}
	rc := n.raft.ReloadableConfig()
	rc.HeartbeatTimeout = want
	// raft wants the election timeout at least as long; a non-voter
	// holds no election.
	rc.ElectionTimeout = max(n.cfg.ElectionTimeout, want)
	if err := n.raft.ReloadConfig(rc); err != nil {
		n.logger.Warn("cannot switch raft's heartbeat timeout", "to", want, "error", err)
		return
	}
	n.heartbeatTimeout.Store(int64(want))
	n.logger.Debug("raft heartbeat timeout switched", "to", want)
}
