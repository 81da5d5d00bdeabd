package control

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/health"
)

// A member the detector holds failed is marked failed by the leader, in
// one entry with the promotions of its primaries; a suspect is not.
func TestTheLeaderMarksAMemberFailedWhenTheDetectorSaysSo(t *testing.T) {
	cl := newCluster("n1", []string{"n1", "n2", "n3", "n4", "n5"}, nil)
	obs := &recorder{}
	cl.ctrl.obs = obs
	primaryOfN3 := 0
	cl.raft.Read(func(c *failover.Cluster) {
		for _, p := range c.Partitions {
			if p.Primary == "n3" {
				primaryOfN3++
			}
		}
	})
	if primaryOfN3 == 0 {
		t.Fatal("n3 is primary of nothing: the test would prove nothing")
	}
	cl.detector.set("n2", health.StateSuspect, cl.clock.Now())
	cl.detector.set("n3", health.StateFailed, cl.clock.Now())

	if err := cl.ctrl.markFailures(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := cl.member("n3").Status; st != failover.StatusFailed {
		t.Fatalf("n3 is %s, want failed", st)
	}
	if st := cl.member("n2").Status; st != failover.StatusAlive {
		t.Fatalf("n2, merely suspect, is %s", st)
	}
	cmds := cl.raft.takeCommands()
	if len(cmds) != 1 || cmds[0].Kind != failover.CmdSetStatus || len(cmds[0].Actions) != primaryOfN3 {
		t.Fatalf("commands %+v, want one status change carrying %d promotions", cmds, primaryOfN3)
	}
	cl.raft.Read(func(c *failover.Cluster) {
		for _, p := range c.Partitions {
			if p.Primary == "n3" {
				t.Fatalf("partition %d still has the failed n3 as primary", p.ID)
			}
		}
	})
	if ev := cl.ctrl.Events(); len(ev) != 1 || ev[0].Type != "member.failed" {
		t.Fatalf("events %+v, want member.failed", ev)
	}
	if obs.markedFailed != 1 || cl.ctrl.FreezeReason() != "" || cl.ctrl.FailuresAtOnce() != 2 {
		t.Fatalf("marked %d, freeze %q, at once %d; want 1, none, 2 (n2 suspect and n3)", obs.markedFailed, cl.ctrl.FreezeReason(), cl.ctrl.FailuresAtOnce())
	}
	// Level-triggered: a second round changes nothing.
	if err := cl.ctrl.markFailures(context.Background()); err != nil || len(cl.raft.takeCommands()) != 0 {
		t.Fatalf("a second round applied something (%v)", err)
	}
}

// More members in trouble at once than -max-failed (a third of five,
// rounded up: two) freezes marking: one failed verdict while two others
// are suspect is not acted on. Once the suspects are healthy again, it is.
func TestTooManyMembersInTroubleAtOnceFreezeMarking(t *testing.T) {
	cl := newCluster("n1", []string{"n1", "n2", "n3", "n4", "n5"}, nil)
	obs := &recorder{}
	cl.ctrl.obs = obs
	cl.detector.set("n2", health.StateSuspect, cl.clock.Now())
	cl.detector.set("n3", health.StateSuspect, cl.clock.Now())
	cl.detector.set("n4", health.StateFailed, cl.clock.Now())

	if err := cl.ctrl.markFailures(context.Background()); err != nil {
		t.Fatal(err)
	}
	if cmds := cl.raft.takeCommands(); len(cmds) != 0 {
		t.Fatalf("marked while frozen: %+v", cmds)
	}
	if r := cl.ctrl.FreezeReason(); !strings.Contains(r, "3 of 5 nodes are failed at once") {
		t.Fatalf("freeze reason %q", r)
	}

	cl.detector.set("n2", health.StateHealthy, cl.clock.Now())
	cl.detector.set("n3", health.StateHealthy, cl.clock.Now())
	if err := cl.ctrl.markFailures(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := cl.member("n4").Status; st != failover.StatusFailed {
		t.Fatalf("n4 is %s after the freeze ended, want failed", st)
	}
	if cl.ctrl.FreezeReason() != "" || !slices.Equal(obs.frozen, []bool{true, false}) {
		t.Fatalf("freeze %q, observed %v; want resumed after frozen", cl.ctrl.FreezeReason(), obs.frozen)
	}
}

// A failure marked a moment ago still counts towards the freeze after its
// consequences are handled: a second death confirmed just after it, with a
// third member suspect, is a wave (three of five), not a lone death.
func TestARecentFailureCountsTowardsTheFreezeOfTheNext(t *testing.T) {
	cl := newCluster("n1", []string{"n1", "n2", "n3", "n4", "n5"}, nil)
	cl.detector.set("n2", health.StateFailed, cl.clock.Now())
	if err := cl.ctrl.markFailures(context.Background()); err != nil || cl.member("n2").Status != failover.StatusFailed {
		t.Fatalf("n2 not marked: %v", err)
	}
	cl.clock.Advance(cl.ctrl.freezeWindows().AtOnce / 2)
	cl.detector.set("n3", health.StateFailed, cl.clock.Now())
	cl.detector.set("n4", health.StateSuspect, cl.clock.Now())
	if err := cl.ctrl.markFailures(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := cl.member("n3").Status; st != failover.StatusAlive || cl.ctrl.FreezeReason() == "" {
		t.Fatalf("n3 %s, freeze %q: want it held alive by the freeze", st, cl.ctrl.FreezeReason())
	}
	// Once n4 is healthy again, two failures of five are within the
	// limit: n3 is marked.
	cl.detector.set("n4", health.StateHealthy, cl.clock.Now())
	if err := cl.ctrl.markFailures(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := cl.member("n3").Status; st != failover.StatusFailed {
		t.Fatalf("n3 is %s with n4 healthy again, want failed (freeze %q)", st, cl.ctrl.FreezeReason())
	}
}

// Maintenance mode freezes marking whatever the numbers.
func TestMaintenanceFreezesMarking(t *testing.T) {
	cl := newCluster("n1", []string{"n1", "n2", "n3", "n4", "n5"}, nil)
	if _, err := cl.raft.ApplyForwarded(context.Background(), failover.Command{Kind: failover.CmdSetMaintenance, Maintenance: true}); err != nil {
		t.Fatal(err)
	}
	cl.raft.takeCommands()
	cl.detector.set("n2", health.StateFailed, cl.clock.Now())
	if err := cl.ctrl.markFailures(context.Background()); err != nil {
		t.Fatal(err)
	}
	if cmds := cl.raft.takeCommands(); len(cmds) != 0 || !strings.Contains(cl.ctrl.FreezeReason(), "maintenance") {
		t.Fatalf("in maintenance: commands %+v, freeze %q", cmds, cl.ctrl.FreezeReason())
	}
}

// A failure handled long ago (the member holds nothing and is out of
// raft) is history: it does not make the next two troubles a wave.
// Counted, it made a cluster that had replaced dead nodes freeze for good.
func TestAFailureHandledLongAgoIsNotPartOfTheNextWave(t *testing.T) {
	cl := newCluster("n1", []string{"n1", "n2", "n3", "n4", "n5"}, nil)
	// n6 joined after the table was made: it holds nothing, and it is
	// not a raft server.
	n6 := failover.Member{ID: "n6", RaftID: "n6-r", RaftAddr: "n6:7947"}
	if _, err := cl.raft.ApplyForwarded(context.Background(), failover.Command{Kind: failover.CmdUpsertMember, Member: &n6}); err != nil {
		t.Fatal(err)
	}
	cl.setStatus("n6", failover.StatusFailed)
	cl.clock.Advance(cl.ctrl.freezeWindows().AtOnce + 1)
	cl.raft.takeCommands()

	cl.detector.set("n2", health.StateFailed, cl.clock.Now())
	cl.detector.set("n3", health.StateSuspect, cl.clock.Now())
	if err := cl.ctrl.markFailures(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := cl.member("n2").Status; st != failover.StatusFailed {
		t.Fatalf("n2 is %s, freeze %q: the old, handled failure of n6 was counted", st, cl.ctrl.FreezeReason())
	}
}
