package raftctl

import (
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
	quiet := func(id string) *Config {
		cfg := testConfig(id, t.TempDir())
		// raft's own timings (a 1 s heartbeat timeout, heartbeats every
		// 100-200 ms, held to one per 400 ms), not the loopback ones: a
		// busy test machine must not make the non-voter lose its leader
		// for reasons other than thinning.
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = time.Second, time.Second, 500*time.Millisecond
		cfg.NonvoterContact = 400 * time.Millisecond
		// No idle AppendEntries to stand in for the heartbeats: only
		// the heartbeats let through keep the non-voter in contact.
		cfg.CommitTimeout = time.Minute
		return cfg
	}
	voters := []*Node{startNode(t, quiet("t1")), startNode(t, quiet("t2"))}
	for _, n := range voters {
		if err := n.Bootstrap(serversOf(voters...)); err != nil {
			t.Fatal(err)
		}
	}
	leader := waitLeader(t, voters...)
	nv := startNode(t, quiet("t3"))
	if err := leader.AddNonvoter("t3", nv.Addr()); err != nil {
		t.Fatal(err)
	}
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
