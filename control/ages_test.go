package control

import (
	"strings"
	"testing"
	"time"

	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/raftctl"
)

func mustApply(t *testing.T, c *failover.Cluster, cmd failover.Command) {
	t.Helper()
	if _, err := c.Apply(cmd); err != nil {
		t.Fatalf("apply %s: %v", cmd.Kind, err)
	}
}

// leaderSim is the leader's time-dependent decisions over one state, with
// the agent's own pieces (tracker, limits, the freeze counts, the reaper)
// and every command stamped with the wall clock, as the agent does.
type leaderSim struct {
	t     *testing.T
	clock *fakeClock
	ages  *AgeTracker
	ctrl  *Controller
	c     *failover.Cluster
}

func newLeaderSim(t *testing.T, nodes ...string) *leaderSim {
	clk := newFakeClock()
	cfg := testConfig("n1")
	cfg.ReapAfter = 30 * time.Minute
	s := &leaderSim{t: t, clock: clk, ages: NewAgeTracker(), ctrl: New(cfg, Deps{Clock: clk}), c: failover.NewCluster()}
	var ms []failover.Member
	for _, id := range nodes {
		ms = append(ms, failover.Member{ID: id})
	}
	s.apply(failover.Command{Kind: failover.CmdBootstrap, Settings: &failover.Settings{Partitions: 8, ReplicationFactor: 2}, Members: ms})
	return s
}

func (s *leaderSim) apply(cmd failover.Command) {
	s.t.Helper()
	cmd.At = s.clock.Now().UnixNano()
	mustApply(s.t, s.c, cmd)
	s.ages.Observe(s.c, s.clock.Elapsed())
}

func (s *leaderSim) fail(id string) {
	s.apply(failover.Command{Kind: failover.CmdSetStatus, Node: id, Status: failover.StatusFailed, Actions: failover.PlanFailure(s.c, id, 1)})
}

func (s *leaderSim) plan() []failover.Action {
	ages := s.ages.Observe(s.c, s.clock.Elapsed())
	return failover.Plan(failover.PlanInput{Cluster: s.c, Ages: ages.Plan, Seed: 1, Limits: s.ctrl.planLimits()})
}

func (s *leaderSim) cancels() []failover.Action {
	var out []failover.Action
	for _, a := range s.plan() {
		if a.Kind == failover.ActionCancelMigration {
			out = append(out, a)
		}
	}
	return out
}

func (s *leaderSim) reaped() []forgetting {
	ages := s.ages.Observe(s.c, s.clock.Elapsed())
	return membersToForget(s.c, ages.InStatus, map[string]bool{}, s.ctrl.cfg.ReapAfter, "n1")
}

func (s *leaderSim) failureCounts(id string) bool {
	ages := s.ages.Observe(s.c, s.clock.Elapsed())
	// Unhandled: its copies are being re-created.
	_, failed := FreezeCounts(0, 0, []MarkedFailure{{FailedFor: ages.InStatus[id]}}, s.ctrl.freezeWindows())
	return failed == 1
}

// startCopies has n3 fail and the leader start re-creating its copies.
func (s *leaderSim) startCopies() int {
	s.fail("n3")
	acts := s.plan()
	started := 0
	for _, a := range acts {
		if a.Kind == failover.ActionStartMigration {
			started++
		}
	}
	if started == 0 {
		s.t.Fatalf("no copies started: %v", acts)
	}
	s.apply(failover.Command{Kind: failover.CmdApplyActions, Actions: acts})
	return started
}

func TestALeaderClockSteppedAheadTimesNothingOut(t *testing.T) {
	s := newLeaderSim(t, "n1", "n2", "n3", "n4")
	started := s.startCopies()
	s.clock.Advance(11 * time.Second)
	s.clock.Step(time.Hour)
	if c := s.cancels(); len(c) != 0 {
		t.Fatalf("copies 11 s old cancelled after a +1 h step: %v", c[0].Reasons)
	}
	if r := s.reaped(); len(r) != 0 {
		t.Fatalf("a member failed 11 s ago reaped after a +1 h step: %v", r)
	}
	if !s.failureCounts("n3") {
		t.Fatal("a failure 11 s old aged out of the freeze window after a +1 h step")
	}
	// The timeout still fires on time, measured on the monotonic clock.
	s.clock.Advance(10 * time.Minute)
	c := s.cancels()
	if len(c) != started || !strings.Contains(c[0].Reasons[0], "timed out after 10m11s") {
		t.Fatalf("after 10m11s: %d of %d copies cancelled, reasons %v", len(c), started, c)
	}
}

func TestALeaderClockSteppedBackReplansAStuckCopyOnTime(t *testing.T) {
	s := newLeaderSim(t, "n1", "n2", "n3", "n4")
	started := s.startCopies()
	s.clock.Advance(time.Minute)
	s.clock.Step(-time.Hour)
	if c := s.cancels(); len(c) != 0 {
		t.Fatalf("copies cancelled a minute in: %v", c)
	}
	if !s.failureCounts("n3") {
		t.Fatal("a failure a minute old dropped out of the freeze window after a -1 h step")
	}
	// Ten minutes after the start, not seventy: the step back does not
	// delay the re-plan, nor the end of the failure's freeze window
	// (replace delay 0 + migration timeout 10m).
	s.clock.Advance(9*time.Minute + time.Second)
	if c := s.cancels(); len(c) != started {
		t.Fatalf("stuck copies not re-planned 10m1s after their start (wall clock stepped back 1 h): %d of %d", len(c), started)
	}
	if s.failureCounts("n3") {
		t.Fatal("a failure 10m1s old still counts towards the freeze")
	}
	// Reaping after 30 minutes of monotonic time, whatever the wall says.
	s.clock.Advance(19 * time.Minute)
	if r := s.reaped(); len(r) != 0 {
		t.Fatalf("reaped 29m1s after its failure, -reap-after 30m: %v", r)
	}
	s.clock.Advance(time.Minute)
	if r := s.reaped(); len(r) != 1 || r[0].node != "n3" {
		t.Fatalf("not reaped 30m1s after its failure: %v", r)
	}
}

func TestReplaceDelayIsMeasuredOnTheMonotonicClock(t *testing.T) {
	for _, step := range []time.Duration{time.Hour, -time.Hour} {
		s := newLeaderSim(t, "n1", "n2", "n3", "n4")
		s.ctrl.cfg.ReplaceDelay = time.Minute
		s.fail("n3")
		s.clock.Advance(30 * time.Second)
		s.clock.Step(step)
		for _, a := range s.plan() {
			if a.Kind == failover.ActionStartMigration {
				t.Fatalf("step %s: copies re-created 30 s into a 1 m replace delay: %v", step, a)
			}
		}
		s.clock.Advance(31 * time.Second)
		started := 0
		for _, a := range s.plan() {
			if a.Kind == failover.ActionStartMigration {
				started++
			}
		}
		if started == 0 {
			t.Fatalf("step %s: copies not re-created 61 s after the failure", step)
		}
	}
}

func TestTrackerDatesEachEpisodeFromItsFirstSight(t *testing.T) {
	c := failover.NewCluster()
	mustApply(t, c, failover.Command{Kind: failover.CmdBootstrap, At: 1, Settings: &failover.Settings{Partitions: 2, ReplicationFactor: 1}, Members: []failover.Member{{ID: "a"}}})
	mustApply(t, c, failover.Command{Kind: failover.CmdUpsertMember, At: 1, Member: &failover.Member{ID: "b"}}) // holds nothing
	tr := NewAgeTracker()
	tr.Observe(c, 10*time.Second)
	mustApply(t, c, failover.Command{Kind: failover.CmdSetStatus, At: 2, Node: "b", Status: failover.StatusFailed})
	if got := tr.Observe(c, 15*time.Second).Plan.Failed["b"]; got != 0 {
		t.Fatalf("b failed for %s when first seen failed, want 0", got)
	}
	if got := tr.Observe(c, 20*time.Second).InStatus["b"]; got != 5*time.Second {
		t.Fatalf("b failed for %s, want 5s", got)
	}
	// A rejoin and a new failure is a new episode, timed from its sight,
	// even if the two stamps happen to be equal.
	m := c.Members["b"]
	mustApply(t, c, failover.Command{Kind: failover.CmdUpsertMember, At: 3, Member: &m})
	tr.Observe(c, 21*time.Second)
	mustApply(t, c, failover.Command{Kind: failover.CmdSetStatus, At: 4, Node: "b", Status: failover.StatusFailed})
	if got := tr.Observe(c, 30*time.Second).Plan.Failed["b"]; got != 0 {
		t.Fatalf("second failure of b is %s old at its first sight", got)
	}
	// A reading taken before another goroutine's never gives a negative age.
	if got := tr.Observe(c, 29*time.Second).Plan.Failed["b"]; got != 0 {
		t.Fatalf("age %s from an earlier reading", got)
	}
	// Forgotten members are forgotten here too.
	mustApply(t, c, failover.Command{Kind: failover.CmdForgetMember, At: 5, Node: "b"})
	if _, still := c.Members["b"]; still {
		t.Fatal("b holds nothing but was not forgotten")
	}
	tr.Observe(c, 31*time.Second)
	if _, ok := tr.statuses["b"]; ok {
		t.Fatal("the tracker still times b after it was forgotten")
	}
}

func TestVoterStabilisationIsMeasuredOnTheMonotonicClock(t *testing.T) {
	clk := newFakeClock()
	a := New(testConfig("n1"), Deps{Clock: clk})
	if got := a.stableFor("s1", true); got != 0 {
		t.Fatalf("stable for %s when first healthy", got)
	}
	clk.Step(time.Hour)
	if got := a.stableFor("s1", true); got != 0 {
		t.Fatalf("a +1 h step of the wall clock made s1 stable for %s (promotion needs %s)", got, voterStableFor)
	}
	clk.Step(-2 * time.Hour)
	clk.Advance(voterStableFor)
	if got := a.stableFor("s1", true); got != voterStableFor {
		t.Fatalf("stable for %s after %s of monotonic time and a -2 h step", got, voterStableFor)
	}
	if got := a.stableFor("s1", false); got != 0 {
		t.Fatalf("unhealthy but stable for %s", got)
	}
	clk.Advance(time.Second)
	if got := a.stableFor("s1", true); got != 0 {
		t.Fatalf("healthy again: stable for %s, want a fresh start", got)
	}
}

func TestAServerRemovedAndAddedBackIsStableAgainOnlyAfterTheStabilisationTime(t *testing.T) {
	clk := newFakeClock()
	a := New(testConfig("n1"), Deps{Clock: clk})
	a.stableFor("s1", true)
	a.stableFor("s2", true)
	clk.Advance(time.Minute)
	// s1 is removed from the configuration (failed while cut off): the
	// leader never sees it unhealthy, it simply is not listed any more.
	a.forgetStability([]raftctl.Server{{ID: "s2"}})
	if got := a.stableFor("s2", true); got != time.Minute {
		t.Fatalf("s2, still configured, stable for %s, want 1m", got)
	}
	if got := a.stableFor("s1", true); got != 0 {
		t.Fatalf("s1 added back after its removal is stable for %s at once, want a fresh start", got)
	}
}
