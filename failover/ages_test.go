package failover

import (
	"strings"
	"testing"
	"time"
)

// The state's timestamps are wall-clock readings of whichever leader
// proposed each command; the planner must judge timeouts by the ages its
// caller measured, whatever the timestamps say.

func TestMigrationTimeoutFollowsTheAgeNotTheTimestamps(t *testing.T) {
	c := bootstrap(t, 4, 2, nodes(3))
	fail(t, c, 10, "n03")
	// The copies start at a timestamp an hour "before" the wall clock
	// that will plan next: a clock stepped forward by an hour.
	acts := Plan(PlanInput{Cluster: c, Ages: AgesAt(c, 20)})
	mustApply(t, c, Command{Kind: CmdApplyActions, At: 20, Actions: acts})
	started := kinds(acts)[ActionStartMigration]
	if started == 0 {
		t.Fatalf("no migration started: %v", acts)
	}
	lim := Limits{MigrationTimeout: int64(10 * time.Minute)}
	steppedWall := int64(20 + time.Hour)
	if k := kinds(Plan(PlanInput{Cluster: c, Ages: AgesAt(c, steppedWall), Limits: lim})); k[ActionCancelMigration] == 0 {
		t.Fatalf("the wall-clock difference should time the copies out (that is the bug ages avoid): %v", k)
	}

	ages := Ages{Migrations: map[string]time.Duration{}}
	for _, p := range c.Partitions {
		for _, m := range p.Migrations {
			ages.Migrations[m.ID] = 11 * time.Second
		}
	}
	if a := Plan(PlanInput{Cluster: c, Ages: ages, Limits: lim}); kinds(a)[ActionCancelMigration] != 0 {
		t.Fatalf("copies 11 s old cancelled: %v", a)
	}
	if a := Plan(PlanInput{Cluster: c, Ages: Ages{}, Limits: lim}); kinds(a)[ActionCancelMigration] != 0 {
		t.Fatalf("copies of unknown age (a new leader's) cancelled: %v", a)
	}
	for id := range ages.Migrations {
		ages.Migrations[id] = 10*time.Minute + time.Second
	}
	a := Plan(PlanInput{Cluster: c, Ages: ages, Limits: lim})
	if kinds(a)[ActionCancelMigration] != started {
		t.Fatalf("copies past the timeout not all cancelled: %v", a)
	}
	if got := a[0].Reasons[0]; !strings.Contains(got, "timed out after 10m1s") {
		t.Fatalf("reason %q does not give the measured age", got)
	}
}

func TestReplaceDelayFollowsTheAgeNotTheTimestamps(t *testing.T) {
	c := bootstrap(t, 12, 2, nodes(4))
	setStatus(t, c, 100, "n01", StatusFailed, PlanFailure(c, "n01", 1))
	lim := Limits{ReplaceDelay: int64(time.Minute)}
	// By the timestamps n01 failed an hour ago; by this leader's
	// monotonic clock, five seconds ago: its copies wait.
	if k := kinds(Plan(PlanInput{Cluster: c, Ages: Ages{Failed: map[string]time.Duration{"n01": 5 * time.Second}}, Limits: lim})); k[ActionStartMigration] != 0 {
		t.Fatalf("copies re-created within the delay: %v", k)
	}
	if k := kinds(Plan(PlanInput{Cluster: c, Ages: Ages{}, Limits: lim})); k[ActionStartMigration] != 0 {
		t.Fatalf("copies re-created for a failure of unknown age: %v", k)
	}
	if k := kinds(Plan(PlanInput{Cluster: c, Ages: Ages{Failed: map[string]time.Duration{"n01": time.Minute + time.Second}}, Limits: lim})); k[ActionStartMigration] == 0 {
		t.Fatalf("copies not re-created after the delay: %v", k)
	}
}
