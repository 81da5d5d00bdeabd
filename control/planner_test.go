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
