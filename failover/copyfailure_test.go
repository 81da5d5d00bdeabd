package failover

import (
	"strings"
	"testing"
	"time"
)

// migrationOf returns the start_migration action of partition p in actions.
func migrationOf(actions []Action, p int) (Action, bool) {
	for _, a := range actions {
		if a.Partition == p && a.Kind == ActionStartMigration {
			return a, true
		}
	}
	return Action{}, false
}

func TestACopyTheAppFailsIsRetriedAfterABackoffThenPlacedElsewhere(t *testing.T) {
	lim := Limits{CopyRetryBackoff: int64(5 * time.Second), CopyRetryBackoffMax: int64(time.Minute), MaxCopyFailures: 3}
	c := bootstrap(t, 1, 2, nodes(4))
	holder := c.Partitions[0].Replicas[0]
	now := int64(time.Hour)
	setStatus(t, c, now, holder, StatusLeft, nil)

	plan := func() []Action {
		return Plan(PlanInput{Cluster: c, Ages: AgesAt(c, now), Seed: 1, Limits: lim})
	}
	start, ok := migrationOf(plan(), 0)
	if !ok {
		t.Fatalf("no copy planned for partition 0 after %s left", holder)
	}
	failing := start.Node
	var targets []string
	for attempt := 0; attempt < 5; attempt++ {
		mustApply(t, c, Command{Kind: CmdApplyActions, At: now, Actions: []Action{start}})
		m := c.Partitions[0].Migrations[0]
		targets = append(targets, m.Target)
		if m.Target != failing {
			break
		}
		// The target's app refuses the copy.
		mustApply(t, c, Command{Kind: CmdApplyActions, At: now, Actions: []Action{{Kind: ActionCancelMigration, Partition: 0,
			Epoch: c.Partitions[0].Epoch, MigrationID: m.ID, CopyFailed: true}}})
		f, _ := copyFailures(&c.Partitions[0], failing)
		if f.Count != attempt+1 {
			t.Fatalf("after failure %d the record says %+v", attempt+1, f)
		}
		// Not re-planned at once onto the same node.
		if a, ok := migrationOf(plan(), 0); ok && a.Node == failing {
			t.Fatalf("failure %d: copy re-planned at once onto %s: %+v", attempt+1, failing, a)
		}
		wait := CopyRetryWait(f.Count, 5*time.Second, time.Minute)
		if wait != 5*time.Second<<attempt {
			t.Fatalf("wait after %d failures is %s", f.Count, wait)
		}
		now += int64(wait) + 1
		if start, ok = migrationOf(plan(), 0); !ok {
			t.Fatalf("failure %d: nothing planned once the wait of %s is over", attempt+1, wait)
		}
	}
	want := []string{failing, failing, failing}
	if len(targets) != 4 || strings.Join(targets[:3], ",") != strings.Join(want, ",") || targets[3] == failing {
		t.Fatalf("copy targets %v: want three tries on %s, then another node", targets, failing)
	}
	if !strings.Contains(strings.Join(start.Reasons, "; "), "not "+failing+": 3 copies to it failed") {
		t.Fatalf("the copy to another node does not say why: %v", start.Reasons)
	}

	// The copy to the other node completes: the partition is whole, the
	// record of the failing node stays, and completing a copy to a node
	// clears that node's record.
	mustApply(t, c, Command{Kind: CmdApplyActions, At: now, Actions: AcknowledgeAll(c)})
	if got := len(c.Partitions[0].Holders()); got != 2 {
		t.Fatalf("%d copies after the completed copy", got)
	}
	if _, ok := copyFailures(&c.Partitions[0], targets[3]); ok {
		t.Fatalf("a record for %s, whose copy completed", targets[3])
	}
}

func TestACopyFailingOnTheOnlyPossibleNodeIsStillRetried(t *testing.T) {
	lim := Limits{CopyRetryBackoff: int64(time.Second), MaxCopyFailures: 1}
	c := bootstrap(t, 1, 3, nodes(4))
	gone := c.Partitions[0].Replicas[1]
	setStatus(t, c, 1, gone, StatusLeft, nil)
	now := int64(time.Hour)
	a, ok := migrationOf(Plan(PlanInput{Cluster: c, Ages: AgesAt(c, now), Limits: lim}), 0)
	if !ok {
		t.Fatal("no copy planned")
	}
	mustApply(t, c, Command{Kind: CmdApplyActions, At: now, Actions: []Action{a}})
	m := c.Partitions[0].Migrations[0]
	mustApply(t, c, Command{Kind: CmdApplyActions, At: now, Actions: []Action{{Kind: ActionCancelMigration, Partition: 0, Epoch: c.Partitions[0].Epoch, MigrationID: m.ID, CopyFailed: true}}})
	if _, ok := migrationOf(Plan(PlanInput{Cluster: c, Ages: AgesAt(c, now), Limits: lim}), 0); ok {
		t.Fatal("retried within the wait")
	}
	now += int64(2 * time.Second)
	again, ok := migrationOf(Plan(PlanInput{Cluster: c, Ages: AgesAt(c, now), Limits: lim}), 0)
	if !ok || again.Node != m.Target {
		t.Fatalf("the only node that can take the copy is not tried again after its wait: %+v", again)
	}
}

func TestATimedOutCopyCountsAsAFailure(t *testing.T) {
	lim := Limits{MigrationTimeout: int64(time.Minute), CopyRetryBackoff: int64(time.Second), MaxCopyFailures: 3}
	c := bootstrap(t, 1, 2, nodes(3))
	setStatus(t, c, 1, c.Partitions[0].Replicas[0], StatusLeft, nil)
	a, _ := migrationOf(Plan(PlanInput{Cluster: c, Limits: lim}), 0)
	mustApply(t, c, Command{Kind: CmdApplyActions, At: 2, Actions: []Action{a}})
	actions := Plan(PlanInput{Cluster: c, Ages: AgesAt(c, 2+int64(2*time.Minute)), Limits: lim})
	if len(actions) != 1 || actions[0].Kind != ActionCancelMigration || !actions[0].CopyFailed {
		t.Fatalf("timeout plan %+v: want one cancel marked as a failed copy", actions)
	}
	mustApply(t, c, Command{Kind: CmdApplyActions, At: 3, Actions: actions})
	if f, ok := copyFailures(&c.Partitions[0], a.Node); !ok || f.Count != 1 {
		t.Fatalf("no failure recorded for the timed-out copy to %s: %+v", a.Node, c.Partitions[0].CopyFailures)
	}
}
