package failover

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

func restartCmd(c *Cluster, at int64, id string, maxUnavailable int) Command {
	return Command{Kind: CmdRestartMember, At: at, Node: id, RestartGrace: int64(time.Minute), MaxUnavailable: maxUnavailable,
		Actions: PlanStatus(c, id, StatusRestarting, 1)}
}

func TestPlannedRestartHandsPrimariesOverAndKeepsCopies(t *testing.T) {
	c := bootstrap(t, 16, 3, nodes(5))
	copiesBefore, _ := counts(c)
	mustApply(t, c, restartCmd(c, 2, "n02", 1))

	m := c.Members["n02"]
	if m.Status != StatusRestarting || m.RestartGrace != int64(time.Minute) || m.StatusSince != 2 {
		t.Fatalf("n02 after the restart command: %+v", m)
	}
	copies, prims := counts(c)
	if prims["n02"] != 0 {
		t.Fatalf("n02 still leads %d partitions while away", prims["n02"])
	}
	if copies["n02"] != copiesBefore["n02"] {
		t.Fatalf("n02 holds %d copies while away, %d before: copies must stay assigned", copies["n02"], copiesBefore["n02"])
	}
	for i := 0; i < 5; i++ {
		acts := Plan(PlanInput{Cluster: c, Ages: AgesAt(c, 10), Seed: 1, Limits: DefaultLimits()})
		for _, a := range acts {
			if a.Kind == ActionStartMigration {
				t.Fatalf("a copy planned while n02 is away: %+v", a)
			}
			if a.Kind == ActionPromote && a.Node == "n02" {
				t.Fatalf("n02 made primary while away: %+v", a)
			}
			if a.Source == "n02" {
				t.Fatalf("n02 used as a source while away: %+v", a)
			}
		}
		mustApply(t, c, Command{Kind: CmdApplyActions, At: 10, Actions: acts})
	}
}

func TestRestartWithoutAnotherCopyWaitsForTheHolder(t *testing.T) {
	c := bootstrap(t, 4, 1, nodes(2))
	mustApply(t, c, restartCmd(c, 2, "n01", 1))
	acts := Plan(PlanInput{Cluster: c, Ages: AgesAt(c, 10), Seed: 1, Limits: DefaultLimits()})
	if len(acts) != 0 {
		t.Fatalf("RF 1, the only holder away: want no action (an empty copy elsewhere would lose its data), got %+v", acts)
	}
}

func TestOnePlannedAbsenceAtATime(t *testing.T) {
	c := bootstrap(t, 8, 3, nodes(5))
	mustApply(t, c, restartCmd(c, 2, "n01", 1))
	before := c.Clone()
	_, err := c.Apply(restartCmd(c, 3, "n02", 1))
	if !errors.Is(err, ErrRestartRefused) {
		t.Fatalf("second restart with max-unavailable 1: err = %v, want ErrRestartRefused", err)
	}
	if !reflect.DeepEqual(before, c) {
		t.Fatalf("a refused restart changed the state")
	}
	// The same member asking again (a retried command) is not a second one.
	mustApply(t, c, restartCmd(c, 4, "n01", 1))
	if c.Members["n01"].StatusSince != 2 {
		t.Fatalf("a repeated restart restarted the member's clock: %+v", c.Members["n01"])
	}
	// With -max-unavailable 2 a second one is allowed, a third is not.
	mustApply(t, c, restartCmd(c, 5, "n02", 2))
	if _, err := c.Apply(restartCmd(c, 6, "n03", 2)); !errors.Is(err, ErrRestartRefused) {
		t.Fatalf("third restart with max-unavailable 2: err = %v", err)
	}
}

func TestRestartRefusesMembersOutOfService(t *testing.T) {
	c := bootstrap(t, 8, 3, nodes(4))
	fail(t, c, 2, "n03")
	if _, err := c.Apply(restartCmd(c, 3, "n03", 1)); !errors.Is(err, ErrRestartRefused) {
		t.Fatalf("restart of a failed member: err = %v", err)
	}
	if _, err := c.Apply(Command{Kind: CmdRestartMember, At: 3, Node: "n01"}); err == nil {
		t.Fatalf("a restart without a grace period applied")
	}
	if _, err := c.Apply(restartCmd(c, 3, "nope", 1)); !errors.Is(err, ErrUnknownMember) {
		t.Fatalf("restart of an unknown member: err = %v", err)
	}
}

func TestRestartBackIsARejoin(t *testing.T) {
	c := bootstrap(t, 8, 3, nodes(4))
	mustApply(t, c, restartCmd(c, 2, "n01", 1))
	inc := c.Members["n01"].Incarnation
	mustApply(t, c, Command{Kind: CmdRestartBack, At: 3, Node: "n01"})
	m := c.Members["n01"]
	if m.Status != StatusAlive || m.Incarnation != inc+1 || m.RestartGrace != 0 {
		t.Fatalf("after the return: %+v (incarnation was %d)", m, inc)
	}
	// Applied again (a retry), or to a member marked failed past its
	// grace, it changes nothing: that one comes back as a failed member.
	mustApply(t, c, Command{Kind: CmdRestartBack, At: 4, Node: "n01"})
	if c.Members["n01"].Incarnation != inc+1 {
		t.Fatalf("a repeated return counted twice")
	}
}

func TestRollingRestartSteps(t *testing.T) {
	c := bootstrap(t, 8, 3, nodes(3))
	mustApply(t, c, Command{Kind: CmdRollingRestart, At: 2, Rolling: &RollingRestart{Order: []string{"n02", "n03", "n01"}}})
	r := c.Rolling
	if r.Generation != 1 || r.State != RollingRunning || r.MaxUnavailable != 1 {
		t.Fatalf("started: %+v", r)
	}
	if _, err := c.Apply(Command{Kind: CmdRollingRestart, At: 3, Rolling: &RollingRestart{Order: []string{"n01"}}}); !errors.Is(err, ErrRestartRefused) {
		t.Fatalf("a second rolling restart while one runs: %v", err)
	}
	step := func(kind RollingStepKind, node string) error {
		_, err := c.Apply(Command{Kind: CmdRollingStep, At: 4, Step: &RollingStep{Generation: 1, Kind: kind, Node: node, Incarnation: 1}})
		return err
	}
	if err := step(StepBegin, "n03"); !errors.Is(err, ErrRollingStale) {
		t.Fatalf("begin out of order: %v", err)
	}
	if err := step(StepBegin, "n02"); err != nil {
		t.Fatal(err)
	}
	if err := step(StepBegin, "n03"); !errors.Is(err, ErrRollingStale) {
		t.Fatalf("a second member in flight with max-unavailable 1: %v", err)
	}
	for _, s := range []struct {
		kind RollingStepKind
		node string
	}{{StepFinish, "n02"}, {StepSkip, "n03"}, {StepBegin, "n01"}, {StepFinish, "n01"}} {
		if err := step(s.kind, s.node); err != nil {
			t.Fatalf("%s %s: %v", s.kind, s.node, err)
		}
	}
	r = c.Rolling
	if r.State != RollingDone || !reflect.DeepEqual(r.Done, []string{"n02", "n01"}) || !reflect.DeepEqual(r.Skipped, []string{"n03"}) || r.FinishedAt != 4 {
		t.Fatalf("finished: %+v", r)
	}
	if err := step(StepFinish, "n01"); !errors.Is(err, ErrRollingStale) {
		t.Fatalf("a step after the end: %v", err)
	}

	// The next one gets the next generation; a failure stops it.
	mustApply(t, c, Command{Kind: CmdRollingRestart, At: 5, Rolling: &RollingRestart{Order: []string{"n01"}, MaxUnavailable: 2}})
	mustApply(t, c, Command{Kind: CmdRollingStep, At: 6, Step: &RollingStep{Generation: 2, Kind: StepFail, Error: "n01 did not come back"}})
	if r := c.Rolling; r.Generation != 2 || r.State != RollingFailed || r.Error != "n01 did not come back" || r.MaxUnavailable != 2 {
		t.Fatalf("failed: %+v", r)
	}
	if c.Clone().Rolling == c.Rolling || !reflect.DeepEqual(c.Clone().Rolling, c.Rolling) {
		t.Fatalf("Clone must copy the rolling restart deeply")
	}
}
