package control

import (
	"context"
	"slices"
	"testing"

	"github.com/steward-dev/steward/gossip"
	"github.com/steward-dev/steward/raftctl"
)

// Voter reconciliation: non-voters are promoted only once healthy, caught
// up (their raft port says how far they applied) and stable; the lowest
// IDs first, up to the target; a suspect voter keeps its vote; a lower
// target demotes voters, never the leader.
func TestVotersFollowTheTargetWithHealthyCaughtUpStableServers(t *testing.T) {
	cl := newCluster("n1", []string{"n1", "n2", "n3", "n4", "n5"}, map[string]bool{"n1": true})
	cl.ctrl.cfg.Voters = 3
	for _, id := range []string{"n2", "n4", "n5"} {
		cl.raft.peers[id+":7947"] = raftctl.PeerStatus{AppliedIndex: 1 << 20}
	} // n3's raft port does not answer: not known to be caught up
	ctx := context.Background()
	round := func() []string {
		t.Helper()
		if err := cl.ctrl.reconcileVoters(ctx); err != nil {
			t.Fatal(err)
		}
		return cl.raft.takeOps()
	}

	if ops := round(); len(ops) != 0 {
		t.Fatalf("promoted before anyone was stable: %v", ops)
	}
	cl.clock.Advance(voterStableFor / 2)
	if ops := round(); len(ops) != 0 {
		t.Fatalf("promoted after half the stabilisation time: %v", ops)
	}
	cl.clock.Advance(voterStableFor / 2)
	if ops := round(); !slices.Equal(ops, []string{"promote n2-r", "promote n4-r"}) {
		t.Fatalf("promotions %v, want n2 and n4 (n3 does not answer)", ops)
	}
	if !cl.member("n2").Voter || !cl.member("n4").Voter || cl.member("n3").Voter {
		t.Fatal("the state's voter flags do not follow the configuration")
	}

	// Suspicion is not a reason to demote: the target counts the members
	// the state holds in service.
	cl.members.set("n2", gossip.StateSuspect)
	if ops := round(); len(ops) != 0 {
		t.Fatalf("a suspect voter changed the voters: %v", ops)
	}

	cl.ctrl.cfg.Voters = 1
	if ops := round(); !slices.Equal(ops, []string{"demote n2-r", "demote n4-r"}) {
		t.Fatalf("demotions %v, want the suspect n2 first (unhealthy before healthy), then n4", ops)
	}
	if v := cl.voters(); !slices.Equal(v, []string{"n1-r"}) {
		t.Fatalf("voters %v, want only the leader", v)
	}
}

// An idle cluster whose voters are at their target asks no non-voter for
// its progress, however many rounds run: the leader's idle work does not
// grow with the members. Once a voter fails and leaves the configuration,
// the stable non-voters are asked, and one is promoted.
func TestAnIdleClusterWithItsVotersInPlacePingsNobody(t *testing.T) {
	ids := []string{"n1", "n2", "n3", "n4", "n5", "n6", "n7"}
	cl := newCluster("n1", ids, map[string]bool{"n1": true, "n2": true, "n3": true})
	cl.ctrl.cfg.Voters = 3
	for _, id := range ids {
		cl.raft.peers[id+":7947"] = raftctl.PeerStatus{AppliedIndex: 1 << 20}
	}
	ctx := context.Background()
	for range 10 {
		cl.clock.Advance(voterStableFor)
		if err := cl.ctrl.reconcileVoters(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if ops, pings := cl.raft.takeOps(), cl.raft.takePings(); len(ops) != 0 || pings != 0 {
		t.Fatalf("10 idle rounds with 3 voters of 3: ops %v, %d pings; want none", ops, pings)
	}

	if err := cl.raft.Remove("n3-r"); err != nil {
		t.Fatal(err)
	}
	cl.raft.takeOps()
	if err := cl.ctrl.reconcileVoters(ctx); err != nil {
		t.Fatal(err)
	}
	if ops := cl.raft.takeOps(); !slices.Equal(ops, []string{"promote n4-r"}) {
		t.Fatalf("after a voter left: %v, want n4 promoted", ops)
	}
	if pings := cl.raft.takePings(); pings != 4 {
		t.Fatalf("%d pings, want 4: the stable non-voters n4-n7, asked because a promotion was due", pings)
	}
}
