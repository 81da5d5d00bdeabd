package raftctl

import (
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestAConfirmationNeedsAMajorityOfTheVotersAnsweringInTheTerm(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	acks := newFollowerAcks()
	acks.record("v2", 7, at(100), 0)
	acks.record("v3", 7, at(300), 0)
	acks.record("v4", 6, at(900), 0) // an answer of an earlier term
	acks.record("v5", 7, at(200), 0)
	acks.record("n1", 7, at(950), 0) // non-voters answer too
	acks.record("n2", 7, at(960), 0)
	acks.record("v3", 7, at(250), 0) // overtaken by the newer answer above
	now := at(1000)
	voters := []raft.ServerID{"v1", "v2", "v3", "v4", "v5"}

	for _, tc := range []struct {
		name   string
		term   uint64
		self   raft.ServerID
		voters []raft.ServerID
		want   time.Time
		ok     bool
	}{
		// self, v3 (300) and v5 (200) make three of five.
		{"the second newest of the others", 7, "v1", voters, at(200), true},
		// A leader that is not a voter (being removed) needs three others.
		{"a leader outside the voters needs a whole majority", 7, "x", voters, at(100), true},
		{"answers in another term count for nothing", 8, "v1", voters, time.Time{}, false},
		{"non-voters count for nothing", 7, "v1", []raft.ServerID{"v1", "v4", "v6"}, time.Time{}, false},
		{"a single voter confirms itself", 3, "v1", []raft.ServerID{"v1"}, now, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := acks.confirmedSince(tc.term, tc.self, tc.voters, now)
			if ok != tc.ok || !got.Equal(tc.want) {
				t.Fatalf("confirmedSince = %v, %v; want %v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

// A leader cut off from the other voters, but still reaching non-voters,
// must not be confirmed: another leader may be elected on the other side
// at any moment. hashicorp/raft's own VerifyLeader confirms it, counting
// the non-voters' heartbeat answers against the voters' quorum.
func TestALeaderReachingOnlyNonVotersIsNotConfirmed(t *testing.T) {
	// Long enough for raft not to depose the leader on its own while the
	// test asks, after the other voters went away.
	slow := func(cfg *Config) {
		cfg.HeartbeatTimeout = 2 * time.Second
		cfg.ElectionTimeout = 2 * time.Second
		cfg.LeaderLeaseTimeout = 2 * time.Second
	}
	var voters, nonvoters []*Node
	for _, id := range []string{"c1", "c2", "c3"} {
		cfg := testConfig(id, "")
		cfg.InMemory = true
		slow(cfg)
		voters = append(voters, startNode(t, cfg))
	}
	if err := voters[0].Bootstrap(serversOf(voters...)); err != nil {
		t.Fatal(err)
	}
	leader := waitLeader(t, voters...)
	for _, id := range []string{"c4", "c5"} {
		cfg := testConfig(id, "")
		cfg.InMemory = true
		slow(cfg)
		n := startNode(t, cfg)
		if err := leader.AddNonvoter(n.ID(), n.Addr()); err != nil {
			t.Fatal(err)
		}
		nonvoters = append(nonvoters, n)
	}
	eventually(t, 10*time.Second, "the non-voters following the leader", func() bool {
		for _, n := range nonvoters {
			if id, _ := n.Leader(); id != leader.ID() {
				return false
			}
		}
		return true
	})
	term := leader.Term()

	start := time.Now()
	at, err := leader.ConfirmLeadership(term, 0, 5*time.Second)
	if err != nil || at.Before(start) {
		t.Fatalf("with every voter up: confirmed since %v (asked at %v), %v", at, start, err)
	}

	for _, n := range followers(leader, voters...) {
		if err := n.Shutdown(); err != nil {
			t.Fatal(err)
		}
	}
	cutOff := time.Now()
	t.Logf("hashicorp/raft's VerifyLeader after the other voters stopped: %v", leader.raft.VerifyLeader().Error())

	at, err = leader.ConfirmLeadership(term, 0, 300*time.Millisecond)
	if !errors.Is(err, ErrNotConfirmed) {
		t.Fatalf("without the other voters: confirmed since %v (cut off at %v), %v; want ErrNotConfirmed", at, cutOff, err)
	}
	if !leader.IsLeader() {
		t.Fatal("raft deposed the leader before the check ended: the test proves nothing; lengthen LeaderLeaseTimeout")
	}
	// What it was confirmed by before stays true: no other leader was
	// elected before the voters last answered.
	at, err = leader.ConfirmLeadership(term, time.Hour, time.Second)
	if err != nil || !at.Before(cutOff) {
		t.Fatalf("the earlier confirmation: %v, %v; want one before %v", at, err, cutOff)
	}
}
