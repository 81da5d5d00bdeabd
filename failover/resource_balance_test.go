package failover

import (
	"fmt"
	"testing"

	"pgregory.net/rapid"
)

// targetsOf is the planner's per-resource targets for c as it stands.
func targetsOf(c *Cluster, now int64) *resourceTargets {
	p := newPlanner(c, AgesAt(c, now), 1, Limits{})
	p.planPartitions(false)
	return p.newResourceTargets()
}

// loadsByResource counts each resource's copies per node.
func loadsByResource(c *Cluster) map[string]map[string]int {
	out := map[string]map[string]int{}
	for _, p := range c.Partitions {
		if p.Retired {
			continue
		}
		r := p.ResourceName()
		if out[r] == nil {
			out[r] = map[string]int{}
		}
		for _, h := range p.Holders() {
			out[r][h]++
		}
	}
	return out
}

// New nodes join a cluster of several resources: each resource moves
// exactly the copies its targets ask for (the sum of the surpluses over
// its targets, the fewest moves that reach them), ends on its targets
// (the floor or ceiling of its share on every node), and the node totals
// end within one of each other (equal weights, one zone, no selector).
func TestEachResourceMovesTheFewestCopiesToItsTargets(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		n := rapid.IntRange(3, 9).Draw(rt, "nodes")
		c := bootstrap(t, rapid.IntRange(1, 24).Draw(rt, "default partitions"), rapid.IntRange(1, 3).Draw(rt, "default rf"), nodes(n))
		resources := rapid.IntRange(1, 4).Draw(rt, "resources")
		for r := 0; r < resources; r++ {
			createResource(t, c, fmt.Sprintf("r%d", r), rapid.IntRange(1, 24).Draw(rt, "partitions"), rapid.IntRange(1, 3).Draw(rt, "rf"))
		}
		if Converge(c, PlanInput{Ages: AgesAt(c, 3), Seed: 1}, 3) < 0 {
			rt.Fatal("no convergence after the resources were made")
		}
		joins := rapid.IntRange(1, 3).Draw(rt, "joins")
		for j := 0; j < joins; j++ {
			mustApply(t, c, Command{Kind: CmdUpsertMember, At: 4, Member: &Member{ID: fmt.Sprintf("j%d", j)}})
		}

		targets := targetsOf(c, 5)
		before := loadsByResource(c)
		want := map[string]int{}
		ids := c.MemberIDs()
		for r, name := range targets.names {
			for i, id := range ids {
				if d := before[name][id] - targets.target[r][i]; d > 0 {
					want[name] += d
				}
			}
		}
		moves := map[string]int{}
		rounds := 0 // plans that started copies
		for round := 0; ; round++ {
			if round > 200 {
				rt.Fatal("no convergence after the joins")
			}
			acts := Plan(PlanInput{Cluster: c, Ages: AgesAt(c, 5), Seed: 1})
			if len(acts) == 0 {
				break
			}
			copied := false
			for _, a := range acts {
				copied = copied || a.Kind == ActionStartMigration
			}
			if copied {
				rounds++
			}
			for _, a := range acts {
				if a.Kind == ActionStartMigration {
					moves[c.Partitions[a.Partition].ResourceName()]++
				}
			}
			if _, err := c.Apply(Command{Kind: CmdApplyActions, At: 5, Actions: acts}); err != nil {
				rt.Fatal(err)
			}
			if acks := AcknowledgeAll(c); len(acks) > 0 {
				if _, err := c.Apply(Command{Kind: CmdApplyActions, At: 5, Actions: acks}); err != nil {
					rt.Fatal(err)
				}
			}
		}
		// A plan moves each partition once at most, so a resource whose
		// moves take several plans has the targets computed again on the
		// way, from the table as it then is: the cheapest way on may then
		// trade a move of one resource for a move of another, never add
		// one. With one plan enough, each resource moves exactly its
		// minimum.
		moved, needed := 0, 0
		for name := range moves {
			moved += moves[name]
		}
		for _, name := range targets.names {
			needed += want[name]
		}
		if moved > needed {
			rt.Fatalf("%d copies moved, the first targets needed %d (per resource: moved %v, needed %v)", moved, needed, moves, want)
		}
		if rounds == 1 {
			for r, name := range targets.names {
				if moves[name] != want[name] {
					rt.Fatalf("resource %s: %d copies moved in one plan, its targets needed %d (loads %v, targets %v)", name, moves[name], want[name], before[name], targets.target[r])
				}
			}
		}
		// The end is on the targets the planner computes for it (which
		// may have given some ceilings to other nodes on the way, at no
		// extra move).
		after, end := loadsByResource(c), targetsOf(c, 6)
		for r, name := range end.names {
			for i, id := range ids {
				if after[name][id] != end.target[r][i] {
					rt.Fatalf("resource %s ends with %d copies on %s, its target is %d", name, after[name][id], id, end.target[r][i])
				}
			}
		}
		copies, _ := counts(c)
		lo, hi := 1<<30, 0
		for _, id := range ids {
			lo, hi = min(lo, copies[id]), max(hi, copies[id])
		}
		if hi-lo > 1 {
			rt.Fatalf("node totals from %d to %d: %v", lo, hi, copies)
		}
	})
}

// The targets of a resource are the floor or the ceiling of its share on
// every node it may use, and 0 elsewhere.
func TestResourceTargetsAreTheFloorOrCeilingOfEachShare(t *testing.T) {
	c := bootstrap(t, 10, 2, nodes(4))
	tag(t, c, "disk=ssd", "n01", "n02", "n03")
	createResource(t, c, "orders", 7, 2)
	createPlaced(t, c, Resource{Name: "hot", Partitions: 5, ReplicationFactor: 2, Nodes: "disk=ssd"})
	converge(t, c, 3)
	targets := targetsOf(c, 4)
	share := map[string]float64{DefaultResource: 20.0 / 4, "orders": 14.0 / 4, "hot": 10.0 / 3}
	for r, name := range targets.names {
		for i, id := range c.MemberIDs() {
			got := targets.target[r][i]
			if name == "hot" && id == "n04" {
				if got != 0 {
					t.Errorf("hot: target %d on n04, which its selector rules out", got)
				}
				continue
			}
			if f := int(share[name]); got != f && got != f+1 {
				t.Errorf("%s: target %d on %s, share %.2f", name, got, id, share[name])
			}
		}
	}
	// And the table the planner converged to is on them.
	loads := loadsByResource(c)
	for r, name := range targets.names {
		for i, id := range c.MemberIDs() {
			if loads[name][id] != targets.target[r][i] {
				t.Errorf("%s: %d copies on %s, target %d", name, loads[name][id], id, targets.target[r][i])
			}
		}
	}
}

// Several resources, zones, weights, selectors, and members that come and
// go: the planner always settles (no resource's targets and the node
// totals ever pull a copy back and forth), and no copy stays where its
// resource's selector does not match once some node matches (with none,
// the copies stay: data is never dropped to obey a selector).
func TestSeveralResourcesSettleUnderAnyMembershipHistory(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		zones := []string{"a", "b", "c"}[:rapid.IntRange(1, 3).Draw(rt, "zones")]
		ns := zoned(rapid.IntRange(3, 8).Draw(rt, "nodes"), zones...)
		for i := range ns {
			ns[i].weight = rapid.IntRange(1, 3).Draw(rt, "weight")
		}
		c := bootstrap(t, rapid.IntRange(1, 16).Draw(rt, "default partitions"), rapid.IntRange(1, 3).Draw(rt, "default rf"), ns)
		for _, id := range c.MemberIDs() {
			if rapid.Bool().Draw(rt, "tagged") {
				tag(t, c, "disk=ssd", id)
			}
		}
		rules := []ZonesRule{"", ZonesNone, ZonesStrict}
		resources := rapid.IntRange(1, 3).Draw(rt, "resources")
		for r := 0; r < resources; r++ {
			res := Resource{Name: fmt.Sprintf("r%d", r), Partitions: rapid.IntRange(1, 16).Draw(rt, "partitions"),
				ReplicationFactor: rapid.IntRange(1, 3).Draw(rt, "rf"), Zones: rapid.SampledFrom(rules).Draw(rt, "zones rule")}
			if rapid.Bool().Draw(rt, "selector") {
				res.Nodes = "disk=ssd"
			}
			createPlaced(t, c, res)
		}
		now := int64(10)
		settle := func(what string) {
			now += 10
			if Converge(c, PlanInput{Ages: AgesAt(c, now), Seed: now}, now) < 0 {
				rt.Fatalf("no convergence after %s", what)
			}
			if err := c.Validate(); err != nil {
				rt.Fatal(err)
			}
			for _, p := range c.Partitions {
				if p.Retired {
					continue
				}
				sel, _ := ParseNodeSelector(c.PlacementOf(p.ResourceName()).Nodes)
				matched := false
				for _, m := range c.Members {
					matched = matched || m.CanHold() && sel.Matches(m.Tags)
				}
				if !matched {
					continue // no node may hold it: its copies stay where they are
				}
				for _, h := range p.Holders() {
					if m := c.Members[h]; m.CanHold() && !sel.Matches(m.Tags) {
						rt.Fatalf("after %s: %s holds partition %d of %s, whose selector rules it out", what, h, p.ID, p.ResourceName())
					}
				}
			}
		}
		settle("the resources were made")
		steps := rapid.IntRange(1, 4).Draw(rt, "steps")
		for step := 0; step < steps; step++ {
			switch rapid.IntRange(0, 2).Draw(rt, "event") {
			case 0:
				id := fmt.Sprintf("j%d", step)
				mustApply(t, c, Command{Kind: CmdUpsertMember, At: now, Member: &Member{ID: id, Zone: rapid.SampledFrom(zones).Draw(rt, "zone")}})
				if rapid.Bool().Draw(rt, "tagged") {
					mustApply(t, c, Command{Kind: CmdSetTags, At: now, Node: id, Tags: map[string]string{"disk": "ssd"}})
				}
				settle("a join")
			case 1:
				var alive []string
				for _, id := range c.MemberIDs() {
					if c.Members[id].Status == StatusAlive {
						alive = append(alive, id)
					}
				}
				if len(alive) > 2 {
					id := rapid.SampledFrom(alive).Draw(rt, "victim")
					mustApply(t, c, Command{Kind: CmdSetStatus, At: now, Node: id, Status: StatusFailed, Actions: PlanFailure(c, id, 1)})
					settle("a failure")
				}
			case 2:
				name := fmt.Sprintf("r%d", rapid.IntRange(0, len(c.Resources)-1).Draw(rt, "resource"))
				nodes := rapid.SampledFrom([]string{"", "disk=ssd"}).Draw(rt, "new selector")
				mustApply(t, c, Command{Kind: CmdSetPlacement, At: now, Resource: &Resource{Name: name, Nodes: nodes, Zones: rapid.SampledFrom(rules).Draw(rt, "new zones rule")}})
				settle("a placement change")
			}
		}
	})
}
