package control

import (
	"context"
	"testing"

	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/gossip"
	"github.com/steward-dev/steward/health"
)

// A member that failed comes back as a rejoin only once the failure
// detector holds it healthy: alive in gossip is not enough while the
// detector still holds it failed or held down (flap damping). The rejoin
// is a new incarnation, and an event.
func TestAFailedMemberRejoinsOnceTheDetectorHoldsItHealthy(t *testing.T) {
	cl := newCluster("n1", []string{"n1", "n2", "n3"}, nil)
	cl.failNode("n3")
	before := cl.member("n3")
	cl.members.set("n3", gossip.StateAlive) // back in gossip
	cl.raft.takeCommands()

	for _, st := range []health.State{health.StateFailed, health.StateHeldDown} {
		cl.detector.set("n3", st, cl.clock.Now())
		if err := cl.ctrl.registerMembers(context.Background(), cl.ctrl.MemberState()); err != nil {
			t.Fatal(err)
		}
		if cmds := cl.raft.takeCommands(); len(cmds) != 0 || cl.member("n3").Status != failover.StatusFailed {
			t.Fatalf("taken back while the detector holds it %s: %+v", st, cmds)
		}
	}

	cl.detector.set("n3", health.StateHealthy, cl.clock.Now())
	if err := cl.ctrl.registerMembers(context.Background(), cl.ctrl.MemberState()); err != nil {
		t.Fatal(err)
	}
	after := cl.member("n3")
	if after.Status != failover.StatusAlive || after.Incarnation != before.Incarnation+1 {
		t.Fatalf("n3 after the rejoin: status %s, incarnation %d (was %d)", after.Status, after.Incarnation, before.Incarnation)
	}
	if ev := cl.ctrl.Events(); len(ev) == 0 || ev[len(ev)-1].Type != "member.rejoin" {
		t.Fatalf("events %+v, want member.rejoin last", ev)
	}
}

// A failed member alive in gossip that the detector never heard of (a new
// leader's, while gossip has not yet noticed a death the old leader
// detected on its raft heartbeats) is not taken back on gossip's word: the
// detector is asked to probe it, and the member rejoins once its probes
// hold it healthy.
func TestAFailedMemberTheDetectorNeverHeardOfIsProbedBeforeItIsTakenBack(t *testing.T) {
	cl := newCluster("n1", []string{"n1", "n2", "n3"}, nil)
	cl.failNode("n3")
	cl.members.set("n3", gossip.StateAlive)
	cl.raft.takeCommands()
	cl.detector.mu.Lock()
	delete(cl.detector.nodes, "n3") // this leader's detector never heard of it
	cl.detector.mu.Unlock()

	if err := cl.ctrl.registerMembers(context.Background(), cl.ctrl.MemberState()); err != nil {
		t.Fatal(err)
	}
	if cmds := cl.raft.takeCommands(); len(cmds) != 0 || cl.member("n3").Status != failover.StatusFailed {
		t.Fatalf("taken back on gossip's word alone: %+v", cmds)
	}
	cl.detector.mu.Lock()
	observed := cl.detector.observed
	cl.detector.mu.Unlock()
	if len(observed) != 1 || observed[0].Node != "n3" || observed[0].Kind != health.ObservedSuspect {
		t.Fatalf("the detector was asked %+v, want one suspicion of n3", observed)
	}

	cl.detector.set("n3", health.StateHealthy, cl.clock.Now()) // its probes answered
	if err := cl.ctrl.registerMembers(context.Background(), cl.ctrl.MemberState()); err != nil {
		t.Fatal(err)
	}
	if m := cl.member("n3"); m.Status != failover.StatusAlive {
		t.Fatalf("n3 answered the detector's probes and is still %s", m.Status)
	}
}

// A member just forgotten (force-leave) is still alive in this agent's
// gossip for a while: memberlist suspects later than the detector
// confirms. It is not registered anew while the detector holds it failed,
// and it is once the detector holds it healthy (it really came back).
func TestAForgottenMemberIsNotRegisteredAgainWhileTheDetectorHoldsItDown(t *testing.T) {
	cl := newCluster("n1", []string{"n1", "n2", "n3"}, nil)
	n3 := cl.members.nodes["n3"]
	cl.failNode("n3")
	cl.raft.Read(func(c *failover.Cluster) { delete(c.Members, "n3") }) // forgotten
	cl.members.nodes["n3"] = n3                                         // still alive in gossip
	cl.raft.takeCommands()

	cl.detector.set("n3", health.StateFailed, cl.clock.Now())
	if err := cl.ctrl.registerMembers(context.Background(), cl.ctrl.MemberState()); err != nil {
		t.Fatal(err)
	}
	if cmds := cl.raft.takeCommands(); len(cmds) != 0 {
		t.Fatalf("a forgotten member the detector holds failed was registered again: %+v", cmds)
	}
	cl.detector.set("n3", health.StateHealthy, cl.clock.Now())
	if err := cl.ctrl.registerMembers(context.Background(), cl.ctrl.MemberState()); err != nil {
		t.Fatal(err)
	}
	if m, ok := cl.raft.Snapshot().Members["n3"]; !ok || m.Status != failover.StatusAlive {
		t.Fatalf("n3 back and healthy is not registered: %+v (%v)", m, ok)
	}
}

// Registration follows gossip: a new agent is registered, one that
// changed address is updated, one that announces its leave is not taken
// (back), and an app health change is recorded.
func TestRegistrationFollowsGossip(t *testing.T) {
	cl := newCluster("n1", []string{"n1", "n2", "n3"}, nil)
	cl.members.nodes["n4"] = gossip.Node{ID: "n4", Addr: "n4:7946", State: gossip.StateAlive, Meta: gossip.Meta{RaftID: "n4-r", RaftAddr: "n4:7947"}}
	cl.members.nodes["n5"] = gossip.Node{ID: "n5", Addr: "n5:7946", State: gossip.StateAlive, Meta: gossip.Meta{RaftID: "n5-r", RaftAddr: "n5:7947", Leaving: true}}
	n2 := cl.members.nodes["n2"]
	n2.Meta.RaftAddr = "n2:9999"
	cl.members.nodes["n2"] = n2
	n3 := cl.members.nodes["n3"]
	n3.Meta.AppUnhealthy = true
	cl.members.nodes["n3"] = n3
	cl.raft.takeCommands()

	if err := cl.ctrl.registerMembers(context.Background(), cl.ctrl.MemberState()); err != nil {
		t.Fatal(err)
	}
	kinds := map[failover.CommandKind]int{}
	for _, c := range cl.raft.takeCommands() {
		kinds[c.Kind]++
	}
	if kinds[failover.CmdUpsertMember] != 2 || kinds[failover.CmdSetAppHealth] != 1 || len(kinds) != 2 {
		t.Fatalf("commands by kind %v, want 2 upserts (n4 new, n2 moved) and 1 app health (n3)", kinds)
	}
	if m := cl.member("n4"); m.Status != failover.StatusAlive || m.RaftAddr != "n4:7947" {
		t.Fatalf("n4: %+v", m)
	}
	if cl.member("n2").RaftAddr != "n2:9999" || !cl.member("n3").AppUnhealthy {
		t.Fatal("n2's new address or n3's app health not recorded")
	}
	if _, ok := cl.raft.Snapshot().Members["n5"]; ok {
		t.Fatal("a leaving agent was registered")
	}
}
