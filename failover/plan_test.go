package failover

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func kinds(acts []Action) map[ActionKind]int {
	out := map[ActionKind]int{}
	for _, a := range acts {
		out[a.Kind]++
	}
	return out
}

func TestPlanBeforeBootstrapIsEmpty(t *testing.T) {
	if a := Plan(PlanInput{Cluster: NewCluster()}); a != nil {
		t.Fatalf("plan before bootstrap: %v", a)
	}
	if a := PlanFailure(NewCluster(), "n01", 0); a != nil {
		t.Fatalf("failure plan before bootstrap: %v", a)
	}
}

func TestInitialTableGuarantees(t *testing.T) {
	cases := []struct {
		name       string
		parts, rf  int
		ns         []node
		copiesWant map[string][2]int // inclusive bounds
	}{
		{name: "equal weights", parts: 100, rf: 3, ns: nodes(7)},
		{name: "rf above nodes", parts: 10, rf: 5, ns: nodes(3)},
		{name: "zones", parts: 90, rf: 3, ns: zoned(9, "a", "b", "c")},
		{name: "weights", parts: 60, rf: 2, ns: []node{{id: "a", weight: 1}, {id: "b", weight: 2}, {id: "c", weight: 3}},
			copiesWant: map[string][2]int{"a": {20, 20}, "b": {40, 40}, "c": {60, 60}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := bootstrap(t, tc.parts, tc.rf, tc.ns)
			copies, prims := counts(c)
			k := min(tc.rf, len(tc.ns))
			for _, p := range c.Partitions {
				if len(p.Holders()) != k || p.Primary == "" {
					t.Fatalf("partition %d: %v + %v, want %d copies", p.ID, p.Primary, p.Replicas, k)
				}
				zs := map[string]bool{}
				for _, h := range p.Holders() {
					zs[c.Members[h].Zone] = true
				}
				if tc.name == "zones" && len(zs) != 3 {
					t.Fatalf("partition %d spans zones %v", p.ID, zs)
				}
			}
			for _, n := range tc.ns {
				if want, ok := tc.copiesWant[n.id]; ok {
					if copies[n.id] < want[0] || copies[n.id] > want[1] {
						t.Errorf("%s holds %d, want %v", n.id, copies[n.id], want)
					}
					continue
				}
				mean := float64(tc.parts*k) / float64(len(tc.ns))
				if d := float64(copies[n.id]) - mean; d >= 1 || d <= -1 {
					t.Errorf("%s holds %d copies, mean %.2f", n.id, copies[n.id], mean)
				}
				pm := float64(tc.parts) / float64(len(tc.ns))
				if d := float64(prims[n.id]) - pm; d >= 1 || d <= -1 {
					t.Errorf("%s leads %d, mean %.2f", n.id, prims[n.id], pm)
				}
			}
			if a := Plan(PlanInput{Cluster: c, Seed: 9}); len(a) != 0 {
				t.Fatalf("the initial table is not a fixed point: %v", a)
			}
		})
	}
}

func TestFailurePromotesBestReplicaInOneEntry(t *testing.T) {
	c := bootstrap(t, 32, 3, nodes(4))
	before := epochs(c)
	_, prims := counts(c)
	acts := PlanFailure(c, "n02", 1)
	if len(acts) != prims["n02"] {
		t.Fatalf("%d promotions for %d primaries", len(acts), prims["n02"])
	}
	for _, a := range acts {
		if a.Kind != ActionPromote || a.Node == "n02" || a.Priority != PriorityPromote || !strings.Contains(a.Reasons[0], "primary n02 failed") {
			t.Fatalf("unexpected %v %v", a, a.Reasons)
		}
	}
	res := setStatus(t, c, 5, "n02", StatusFailed, acts)
	if res.Applied != len(acts) || res.Stale != 0 {
		t.Fatalf("result %+v", res)
	}
	for _, id := range res.Changed {
		if c.Partitions[id].Epoch != before[id]+1 {
			t.Fatalf("partition %d epoch %d, want %d", id, c.Partitions[id].Epoch, before[id]+1)
		}
	}
	targets := map[string]bool{}
	for _, a := range acts {
		targets[a.Node] = true
	}
	if len(targets) < 2 {
		t.Errorf("all promotions went to %v: not spread by load", targets)
	}
	converge(t, c, 6)
	_, prims = counts(c)
	for _, id := range []string{"n01", "n03", "n04"} {
		if prims[id] < 10 || prims[id] > 11 {
			t.Errorf("%s leads %d once converged, want 10 or 11", id, prims[id])
		}
	}
}

func TestDeposedLeadersPlanIsStale(t *testing.T) {
	c := bootstrap(t, 8, 2, nodes(3))
	old := PlanFailure(c, "n01", 1)
	setStatus(t, c, 5, "n01", StatusFailed, old)
	res := mustApply(t, c, Command{Kind: CmdApplyActions, At: 6, Actions: old})
	if res.Applied != 0 || res.Stale != len(old) {
		t.Fatalf("replayed plan: %+v", res)
	}
}

func TestReplaceDelayWaitsButPromotionsDoNot(t *testing.T) {
	c := bootstrap(t, 12, 2, nodes(4))
	delay := int64(time.Minute)
	setStatus(t, c, 100, "n01", StatusFailed, nil)
	lim := Limits{ReplaceDelay: delay}
	acts := Plan(PlanInput{Cluster: c, Ages: AgesAt(c, 100+delay/2), Limits: lim})
	if k := kinds(acts); k[ActionStartMigration] != 0 || k[ActionPromote] == 0 {
		t.Fatalf("within the delay: %v", k)
	}
	mustApply(t, c, Command{Kind: CmdApplyActions, Actions: acts})
	acts = Plan(PlanInput{Cluster: c, Ages: AgesAt(c, 100+delay/2), Limits: lim})
	if len(acts) != 0 {
		t.Fatalf("still within the delay: %v", acts)
	}
	acts = Plan(PlanInput{Cluster: c, Ages: AgesAt(c, 100+delay+1), Limits: lim})
	if k := kinds(acts); k[ActionStartMigration] == 0 {
		t.Fatalf("after the delay: %v", k)
	}
}

func TestMigrationTimeoutAndDeadTargetCancel(t *testing.T) {
	c := bootstrap(t, 4, 2, nodes(3))
	fail(t, c, 10, "n03")
	acts := Plan(PlanInput{Cluster: c, Ages: AgesAt(c, 20)})
	mustApply(t, c, Command{Kind: CmdApplyActions, At: 20, Actions: acts})
	if kinds(acts)[ActionStartMigration] == 0 {
		t.Fatalf("no migration started: %v", acts)
	}
	lim := Limits{MigrationTimeout: 100}
	if a := Plan(PlanInput{Cluster: c, Ages: AgesAt(c, 50), Limits: lim}); kinds(a)[ActionCancelMigration] != 0 {
		t.Fatalf("cancelled before the timeout: %v", a)
	}
	a := Plan(PlanInput{Cluster: c, Ages: AgesAt(c, 121), Limits: lim})
	if kinds(a)[ActionCancelMigration] != len(acts) || !strings.Contains(a[0].Reasons[0], "timed out") {
		t.Fatalf("after the timeout: %v", a)
	}
	// A target that fails cancels its migrations whatever the time.
	target := acts[0].Node
	setStatus(t, c, 60, target, StatusFailed, nil)
	for _, x := range Plan(PlanInput{Cluster: c, Ages: AgesAt(c, 60)}) {
		if x.Kind == ActionCancelMigration && x.Node == target && strings.Contains(x.Reasons[0], "failed") {
			return
		}
	}
	t.Fatalf("no cancel for the failed target %s", target)
}

func TestInstantCompletesInTheNextPlan(t *testing.T) {
	c := bootstrap(t, 6, 2, nodes(3))
	join(t, c, 5, node{id: "n04"})
	lim := Limits{Instant: true}
	first := Plan(PlanInput{Cluster: c, Ages: AgesAt(c, 6), Limits: lim})
	if k := kinds(first); k[ActionStartMigration] == 0 || k[ActionCompleteMigration] != 0 {
		t.Fatalf("first plan: %v", k)
	}
	mustApply(t, c, Command{Kind: CmdApplyActions, At: 6, Actions: first})
	second := Plan(PlanInput{Cluster: c, Ages: AgesAt(c, 7), Limits: lim})
	if k := kinds(second); k[ActionCompleteMigration] != len(first) {
		t.Fatalf("second plan: %v", second)
	}
}

func TestThrottleBoundsMigrationsButNotPromotions(t *testing.T) {
	c := bootstrap(t, 256, 3, nodes(10))
	fail(t, c, 10, "n01")
	setStatus(t, c, 11, "n02", StatusFailed, nil) // its promotions left to Plan
	acts := Plan(PlanInput{Cluster: c, Ages: AgesAt(c, 12), Limits: DefaultLimits()})
	k := kinds(acts)
	_, prims := counts(c)
	if k[ActionPromote] != prims["n02"] {
		t.Fatalf("%d promotions for %d primaries of n02", k[ActionPromote], prims["n02"])
	}
	if k[ActionStartMigration] == 0 || k[ActionStartMigration] > 32 {
		t.Fatalf("%d migrations, want 1..32", k[ActionStartMigration])
	}
	per := map[string]int{}
	for _, a := range acts {
		if a.Kind == ActionStartMigration {
			per[a.Node]++
			per[a.Source]++
		}
	}
	for n, v := range per {
		if v > 2 {
			t.Fatalf("%s takes part in %d migrations, limit 2", n, v)
		}
	}
	for i := 1; i < len(acts); i++ {
		if acts[i].Priority > acts[i-1].Priority {
			t.Fatalf("actions out of priority order at %d", i)
		}
	}
}

func TestAllCopiesLostGetsNewEmptyPrimary(t *testing.T) {
	c := bootstrap(t, 4, 1, nodes(2))
	fail(t, c, 10, "n01")
	acts := Plan(PlanInput{Cluster: c, Ages: AgesAt(c, 11)})
	if len(acts) == 0 {
		t.Fatal("no plan for lost partitions")
	}
	for _, a := range acts {
		if a.Kind != ActionStartMigration || a.Node != "n02" || a.Source != "" || a.Replaces != "n01" || !strings.Contains(strings.Join(a.Reasons, ";"), "all copies lost") {
			t.Fatalf("unexpected %v %+v", a, a)
		}
	}
	converge(t, c, 12)
	for _, p := range c.Partitions {
		if p.Primary != "n02" {
			t.Fatalf("partition %d primary %q", p.ID, p.Primary)
		}
	}
}

func TestZoneSpreadScoring(t *testing.T) {
	// Zone b has two nodes; when n02 (zone b) fails, its copies go to n05,
	// the other zone-b node, although n04 and n06 hold fewer copies.
	c := bootstrap(t, 6, 3, zoned(6, "a", "b", "c"))
	fail(t, c, 10, "n02")
	for _, a := range Plan(PlanInput{Cluster: c, Ages: AgesAt(c, 11)}) {
		if a.Kind == ActionStartMigration && a.Node != "n05" {
			t.Fatalf("copy of %d placed on %s (zone %s): %v", a.Partition, a.Node, c.Members[a.Node].Zone, a.Reasons)
		}
	}
}

func TestPlanIsDeterministicAndSeedOnlyBreaksTies(t *testing.T) {
	c := bootstrap(t, 64, 3, nodes(6))
	fail(t, c, 10, "n03")
	join(t, c, 11, node{id: "n07"})
	in := PlanInput{Cluster: c, Ages: AgesAt(c, 12), Seed: 5, Limits: DefaultLimits()}
	a, b := Plan(in), Plan(in)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same input, different plans")
	}
	snapshot := c.Clone()
	Plan(in)
	if !reflect.DeepEqual(snapshot, c) {
		t.Fatal("Plan modified the cluster")
	}
}

func TestBalanceReport(t *testing.T) {
	c := bootstrap(t, 30, 2, []node{{id: "a", weight: 1}, {id: "b", weight: 2}})
	r := Balance(c)
	if len(r.Nodes) != 2 || r.Nodes[0].Copies != 30 || r.Nodes[1].Copies != 30 {
		t.Fatalf("report %+v", r)
	}
	if r.Copies.Total != 60 || r.Copies.MaxOverShare != 1 {
		t.Fatalf("copies summary %+v", r.Copies)
	}
	if r.Nodes[0].PrimaryShare != 10 || r.Nodes[1].PrimaryShare != 20 || r.Nodes[0].Primaries != 10 {
		t.Fatalf("primary shares %+v", r.Nodes)
	}
}
