package raftctl

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestOnlyANonvoterHeardFromRecentlyHasItsHeartbeatHeld(t *testing.T) {
	now := time.Now()
	acks := newFollowerAcks()
	acks.record("voter", 7, now.Add(-10*time.Millisecond), 0)
	acks.record("fresh", 7, now.Add(-10*time.Millisecond), 0)
	acks.record("stale", 7, now.Add(-500*time.Millisecond), 0)
	acks.record("old-term", 6, now.Add(-10*time.Millisecond), 0)
	thin := &heartbeatThinning{every: 400 * time.Millisecond}
	thin.setNonvoters([]raft.Server{
		{ID: "voter", Suffrage: raft.Voter},
		{ID: "fresh", Suffrage: raft.Nonvoter},
		{ID: "stale", Suffrage: raft.Nonvoter},
		{ID: "old-term", Suffrage: raft.Nonvoter},
		{ID: "silent", Suffrage: raft.Nonvoter},
	})
	for id, want := range map[raft.ServerID]time.Duration{
		"voter":    0,                      // a voter gets every heartbeat
		"fresh":    390 * time.Millisecond, // answered 10 ms ago in this term
		"stale":    0,                      // last answer older than NonvoterContact
		"old-term": 0,                      // answered only in an earlier term
		"silent":   0,                      // never answered
		"unknown":  0,                      // not in the configuration: treated as a voter
	} {
		if got := thin.dueIn(id, 7, acks, now); got != want {
			t.Errorf("dueIn(%s) = %s, want %s", id, got, want)
		}
	}

	thin.setNonvoters(nil) // this server no longer leads
	if d := thin.dueIn("fresh", 7, acks, now); d != 0 {
		t.Errorf("a server that does not lead held a heartbeat for %s", d)
	}
	off := &heartbeatThinning{}
	off.setNonvoters([]raft.Server{{ID: "fresh", Suffrage: raft.Nonvoter}})
	if d := off.dueIn("fresh", 7, acks, now); d != 0 {
		t.Errorf("NonvoterContact 0 held a heartbeat for %s", d)
	}
}

func TestOnlyHeartbeatsAreThinned(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  raft.AppendEntriesRequest
		want bool
	}{
		{"heartbeat", raft.AppendEntriesRequest{Term: 3}, true},
		{"replication", raft.AppendEntriesRequest{Term: 3, PrevLogEntry: 9, PrevLogTerm: 3, LeaderCommitIndex: 9, Entries: []*raft.Log{{Index: 10}}}, false},
		{"first entries", raft.AppendEntriesRequest{Term: 3, LeaderCommitIndex: 1, Entries: []*raft.Log{{Index: 1}}}, false},
		{"commit announcement", raft.AppendEntriesRequest{Term: 3, PrevLogEntry: 9, PrevLogTerm: 3, LeaderCommitIndex: 9}, false},
	} {
		if got := isHeartbeat(&tc.req); got != tc.want {
			t.Errorf("%s: isHeartbeat = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// A non-voter whose heartbeats are held still always knows its leader,
// and once promoted it gets every heartbeat.
func TestANonvoterKeepsItsLeaderOnThinnedHeartbeats(t *testing.T) {
	leader, nv := startQuietNonvoterCluster(t, 0)
	eventually(t, 5*time.Second, "the non-voter to name its leader", func() bool {
		id, _ := nv.Leader()
		return id == leader.ID()
	})

	// Watch for longer than HeartbeatTimeout several times over: the
	// non-voter must never forget its leader, though its heartbeats are
	// held.
	heldBefore := leader.HeldHeartbeats()
	watch := 3 * nv.cfg.HeartbeatTimeout
	for end := time.Now().Add(watch); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if id, _ := nv.Leader(); id != leader.ID() {
			t.Fatalf("the non-voter forgot its leader (it names %q) with heartbeats thinned to one per %s", id, nv.cfg.NonvoterContact)
		}
	}
	held := leader.HeldHeartbeats() - heldBefore
	// raft heartbeats every 100-200 ms; the held one goes out
	// NonvoterContact (400 ms) after the last answer: about seven held
	// heartbeats in 3 s.
	if held < 3 {
		t.Fatalf("only %d heartbeats to the non-voter were held in %s", held, watch)
	}

	if err := leader.Promote("t3"); err != nil {
		t.Fatal(err)
	}
	heldAtPromotion := leader.HeldHeartbeats()
	time.Sleep(watch) // an observation window, not a synchronisation
	if more := leader.HeldHeartbeats() - heldAtPromotion; more != 0 {
		t.Fatalf("%d heartbeats to the promoted voter were held", more)
	}
}

func TestANonvoterThatSaysItRunsTheLongerTimeoutIsHeldLonger(t *testing.T) {
	now := time.Now()
	acks := newFollowerAcks()
	ids := []raft.ServerID{"long", "short", "expired", "failed", "unsaid", "voter"}
	var servers []raft.Server
	for _, id := range ids {
		acks.record(id, 7, now.Add(-10*time.Millisecond), 0)
		suffrage := raft.Nonvoter
		if id == "voter" {
			suffrage = raft.Voter
		}
		servers = append(servers, raft.Server{ID: id, Suffrage: suffrage})
	}
	cfg := &Config{HeartbeatTimeout: time.Second, NonvoterContact: 400 * time.Millisecond, NonvoterHeartbeatTimeout: 3 * time.Second}
	thin := newThinning(cfg, nil)
	thin.setNonvoters(servers)
	thin.said("long", 3*time.Second, now.Add(-time.Second))
	thin.said("short", time.Second, now)                         // runs raft's one timeout
	thin.said("expired", 3*time.Second, now.Add(-4*time.Second)) // its word is older than the longer timeout
	thin.said("failed", 3*time.Second, now)
	thin.failed("failed") // an AppendEntries to it failed since: it may have restarted
	thin.said("voter", 3*time.Second, now)
	for id, want := range map[raft.ServerID]time.Duration{
		"long":    1190 * time.Millisecond, // 0.4 × 3 s after its answer 10 ms ago
		"short":   390 * time.Millisecond,
		"expired": 390 * time.Millisecond,
		"failed":  390 * time.Millisecond,
		"unsaid":  390 * time.Millisecond, // an older version says nothing
		"voter":   0,
	} {
		if got := thin.dueIn(id, 7, acks, now); got != want {
			t.Errorf("dueIn(%s) = %s, want %s", id, got, want)
		}
	}

	// A server that says it went back to the shorter timeout is held
	// for the shorter time at once.
	thin.said("long", time.Second, now)
	if got := thin.dueIn("long", 7, acks, now); got != 390*time.Millisecond {
		t.Errorf("after it said it runs the shorter timeout: dueIn = %s, want 390ms", got)
	}
	// A server that leaves the configuration is forgotten.
	thin.said("short", 3*time.Second, now)
	thin.setNonvoters(servers[2:])
	thin.setNonvoters(servers)
	if got := thin.dueIn("short", 7, acks, now); got != 390*time.Millisecond {
		t.Errorf("after it left the configuration: dueIn = %s, want 390ms", got)
	}
}

// A non-voter runs the longer heartbeat timeout, says so in its lease
// renewals, and the leader holds its heartbeats longer: it keeps its leader
// all along. Once promoted it runs raft's one timeout again and gets every
// heartbeat.
func TestANonvoterOnTheLongerTimeoutKeepsItsLeaderOnFewerHeartbeats(t *testing.T) {
	leader, nv := startQuietNonvoterCluster(t, 2*time.Second) // held 0.8 s
	eventually(t, 5*time.Second, "the non-voter on the longer timeout", func() bool {
		id, _ := nv.Leader()
		return id == leader.ID() && nv.ownHeartbeatTimeout() == 2*time.Second
	})
	if leader.ownHeartbeatTimeout() != time.Second {
		t.Fatalf("the leader runs a heartbeat timeout of %s", leader.ownHeartbeatTimeout())
	}

	// Renew as an agent does, and watch the non-voter's contact with its
	// leader: never lost, and at times older than the shorter hold
	// (0.4 s) allows.
	renew := func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := nv.RequestLease(ctx, string(leader.Addr()), LeaseRequest{NodeID: "n3"}); err != nil {
			t.Errorf("renewal: %v", err)
		}
	}
	renew()
	var oldest time.Duration
	watch := 4 * time.Second
	lastRenewal := time.Now()
	for end := time.Now().Add(watch); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if time.Since(lastRenewal) > 200*time.Millisecond {
			renew()
			lastRenewal = time.Now()
		}
		if id, _ := nv.Leader(); id != leader.ID() {
			t.Fatalf("the non-voter forgot its leader (it names %q)", id)
		}
		oldest = max(oldest, time.Since(nv.raft.LastContact()))
	}
	if oldest < 600*time.Millisecond {
		t.Fatalf("the non-voter heard from its leader at most %s apart: its heartbeats were not held for the longer timeout", oldest)
	}

	if err := leader.Promote("t3"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the promoted voter back on raft's one timeout", func() bool {
		return nv.ownHeartbeatTimeout() == time.Second
	})
	renew()
	heldAtPromotion := leader.HeldHeartbeats()
	time.Sleep(2 * time.Second) // an observation window, not a synchronisation
	if more := leader.HeldHeartbeats() - heldAtPromotion; more != 0 {
		t.Fatalf("%d heartbeats to the promoted voter were held", more)
	}
}

// A non-voter whose renewals stop may be dead: the leader lets its held
// heartbeat go (its failure is the leader's first sign of the death)
// instead of waiting out the longer hold.
func TestAHeldHeartbeatGoesOnceTheNonvotersRenewalsStop(t *testing.T) {
	cfg := &Config{HeartbeatTimeout: time.Second, NonvoterContact: 400 * time.Millisecond, NonvoterHeartbeatTimeout: 3 * time.Second, RenewalSilence: 300 * time.Millisecond}
	stop := make(chan struct{})
	thin := newThinning(cfg, stop)
	thin.setNonvoters([]raft.Server{{ID: "quiet", Suffrage: raft.Nonvoter}, {ID: "renewing", Suffrage: raft.Nonvoter}})
	start := time.Now()
	thin.said("quiet", 3*time.Second, start)
	thin.said("renewing", 3*time.Second, start)

	ended := make(chan raft.ServerID, 2)
	for _, id := range []raft.ServerID{"quiet", "renewing"} {
		go func() { thin.hold(id, time.Minute); ended <- id }()
	}
	eventually(t, 5*time.Second, "both holds under way", func() bool {
		thin.longMu.Lock()
		defer thin.longMu.Unlock()
		return len(thin.holding) == 2
	})

	// 400 ms later "renewing" has renewed again, "quiet" has not.
	later := start.Add(400 * time.Millisecond)
	thin.said("renewing", 3*time.Second, later)
	thin.releaseSilent(later)
	select {
	case id := <-ended:
		if id != "quiet" {
			t.Fatalf("the hold of %s ended, not the silent one's", id)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the silent non-voter's hold did not end")
	}
	select {
	case id := <-ended:
		t.Fatalf("the hold of %s ended too, though it renews", id)
	default:
	}
	if thin.released.Load() != 1 {
		t.Fatalf("released %d holds, want 1", thin.released.Load())
	}
	// Until it renews again, the silent one gets the shorter hold.
	if thin.runsLong("quiet", later) || !thin.runsLong("renewing", later) {
		t.Fatal("the silent non-voter is still held for the longer timeout, or the renewing one is not")
	}
	close(stop)
	<-ended
}

// startQuietNonvoterCluster starts two voters and a non-voter, t3, on
// raft's own timings (a 1 s heartbeat timeout, heartbeats every
// 100-200 ms, held to one per 400 ms), not the loopback ones, so that a
// busy test machine does not make the non-voter lose its leader for
// reasons other than thinning; nonvoterTimeout is NonvoterHeartbeatTimeout
// (0: none). No idle AppendEntries stand in for the heartbeats: only the
// heartbeats let through keep the non-voter in contact. The voters grant
// every lease request.
func startQuietNonvoterCluster(t *testing.T, nonvoterTimeout time.Duration) (leader, nonvoter *Node) {
	t.Helper()
	quiet := func(id string) *Config {
		cfg := testConfig(id, t.TempDir())
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = time.Second, time.Second, 500*time.Millisecond
		cfg.NonvoterContact = 400 * time.Millisecond
		cfg.NonvoterHeartbeatTimeout = nonvoterTimeout
		cfg.CommitTimeout = time.Minute
		return cfg
	}
	voters := []*Node{startNode(t, quiet("t1")), startNode(t, quiet("t2"))}
	for _, n := range voters {
		if err := n.Bootstrap(serversOf(voters...)); err != nil {
			t.Fatal(err)
		}
		n.SetLeaseGranter(func(LeaseRequest) (LeaseGrant, error) { return LeaseGrant{Duration: time.Second}, nil })
	}
	leader = waitLeader(t, voters...)
	nonvoter = startNode(t, quiet("t3"))
	if err := leader.AddNonvoter("t3", nonvoter.Addr()); err != nil {
		t.Fatal(err)
	}
	return leader, nonvoter
}
