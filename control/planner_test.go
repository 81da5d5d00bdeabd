package control

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/health"
)

// The action counters (steward_plan_actions_total) are fed from the
// decisions recorded in the event log, so that they count what GET
// /v1/events lists: the promotions of a member's failure, which are no
// planner round, as well as the planner's copies and removals. (They once
// counted only planner rounds: 256 remove_replica and no promote, while
// the events listed 85 promotions.)
func TestActionCountersMatchTheEventLogThroughAFailureAndItsRepair(t *testing.T) {
	cl := newCluster("n1", []string{"n1", "n2", "n3", "n4", "n5"}, nil)
	cl.ctrl.cfg.InstantCopies = true
	obs := &recorder{}
	cl.ctrl.obs = obs

	cl.detector.set("n3", health.StateFailed, cl.clock.Now())
	if err := cl.ctrl.markFailures(context.Background()); err != nil {
		t.Fatal(err)
	}
	cl.clock.Advance(time.Hour) // past the replace delay
	for round := 0; ; round++ {
		if round == 50 {
			t.Fatal("the planner did not settle in 50 rounds")
		}
		before := len(cl.ctrl.Events())
		if err := cl.ctrl.runPlanner(context.Background()); err != nil {
			t.Fatal(err)
		}
		if len(cl.ctrl.Events()) == before {
			break
		}
	}

	inEvents := map[failover.ActionKind]int{}
	for _, ev := range cl.ctrl.Events() {
		for _, a := range ev.Actions {
			inEvents[a.Kind]++
		}
	}
	if inEvents[failover.ActionPromote] == 0 || inEvents[failover.ActionStartMigration] == 0 {
		t.Fatalf("events list %v: the scenario needs promotions and copies to prove anything", inEvents)
	}
	if !maps.Equal(obs.actions, inEvents) {
		t.Fatalf("counted %v, the events list %v", obs.actions, inEvents)
	}
}

// An idle leader does not plan every round: while the state is the one a
// plan that proposed nothing was made for, it plans again only every
// IdleReplanEvery. Time alone can still change the plan (here a failed
// node's -replace-delay running out): that plan comes at most
// IdleReplanEvery late (here 3 s). A change of the state is planned for at once.
func TestAnIdleLeaderPlansAgainOnlyOnAChangeOrAfterIdleReplanEvery(t *testing.T) {
	cl := newCluster("n1", []string{"n1", "n2", "n3", "n4", "n5"}, nil)
	cl.ctrl.cfg.InstantCopies = true
	cl.ctrl.cfg.ReplaceDelay = 7 * time.Second
	obs := &recorder{}
	cl.ctrl.obs = obs
	round := func() {
		t.Helper()
		if err := cl.ctrl.runPlanner(context.Background()); err != nil {
			t.Fatal(err)
		}
	}

	cl.detector.set("n3", health.StateFailed, cl.clock.Now())
	if err := cl.ctrl.markFailures(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Rounds until one proposes nothing (the primaries rebalanced after
	// the promotions; n3's copies wait for the replace delay).
	for i := 0; ; i++ {
		if i == 20 {
			t.Fatal("the planner did not settle in 20 rounds")
		}
		cl.raft.takeCommands()
		round()
		if len(cl.raft.takeCommands()) == 0 {
			break
		}
	}
	settled := obs.plans()
	for i := 0; i < 4; i++ {
		cl.clock.Advance(time.Second)
		round()
	}
	if n := obs.plans() - settled; n != 0 {
		t.Fatalf("%d plans in 4 idle seconds, want none", n)
	}
	// At 5 s it plans again (nothing yet). 7 s after the failure the delay
	// is over; the plan that says so comes with the next planning, at 10 s.
	for i := 5; i < 10; i++ {
		cl.clock.Advance(time.Second)
		round()
		if cmds := cl.raft.takeCommands(); len(cmds) != 0 {
			t.Fatalf("%d s after the failure: commands %v before the next idle planning", i, cmds)
		}
	}
	if n := obs.plans() - settled; n != 1 {
		t.Fatalf("%d plans in 9 idle seconds, want 1 (at 5 s)", n)
	}
	cl.clock.Advance(time.Second)
	round()
	cmds := cl.raft.takeCommands()
	if n := obs.plans() - settled; n != 2 || len(cmds) != 1 || len(cmds[0].Actions) == 0 || cmds[0].Actions[0].Kind != failover.ActionStartMigration {
		t.Fatalf("10 s after the failure: %d plans, commands %v; want the second idle plan to start n3's copies", n, cmds)
	}
	// Its command changed the state: the next round plans at once.
	round()
	if n := obs.plans() - settled; n != 3 {
		t.Fatalf("%d plans since settling right after a change, want 3", n)
	}
}
