package failover

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// loseCopies commits what the agent commits when node's app reports that it
// does not hold lost: PlanLostCopies in a CmdCopiesLost.
func loseCopies(t *testing.T, c *Cluster, at int64, node string, lost ...int) ([]Action, Result) {
	t.Helper()
	acts := PlanLostCopies(c, node, lost)
	return acts, mustApply(t, c, Command{Kind: CmdCopiesLost, At: at, Node: node, Actions: acts})
}

// holding returns a partition whose replica (not primary) is node, or
// whose primary is node when primary is set.
func holding(t *testing.T, c *Cluster, node string, primary bool) int {
	t.Helper()
	for _, p := range c.Partitions {
		if primary && p.Primary == node || !primary && p.Holds(node) && p.Primary != node {
			return p.ID
		}
	}
	t.Fatalf("%s holds no partition as primary=%v", node, primary)
	return -1
}

func TestLostCopies(t *testing.T) {
	cases := []struct {
		name string
		// primary: the lost copy is the partition's primary.
		primary bool
		// rf and failed: the replication factor, and nodes failed before the
		// report (their copies stay listed until replaced).
		rf     int
		failed []string
		// wantLost: the partition is marked DataLost and keeps no primary.
		wantLost bool
	}{
		{name: "replica", rf: 3},
		{name: "primary with live replicas", primary: true, rf: 3},
		{name: "last copy", primary: true, rf: 1, wantLost: true},
		{name: "last live copy beside a failed one", primary: true, rf: 2, failed: []string{"other"}, wantLost: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := bootstrap(t, 8, tc.rf, nodes(4))
			id := holding(t, c, "n01", tc.primary)
			for _, f := range tc.failed {
				other := ""
				for _, h := range c.Partitions[id].Holders() {
					if h != "n01" {
						other = h
					}
				}
				if f == "other" && other != "" {
					// Marked failed without its promotions or replacement: the
					// copy stays listed, as before the planner replaces it.
					mustApply(t, c, Command{Kind: CmdSetStatus, At: 2, Node: other, Status: StatusFailed})
				}
			}
			before := c.Partitions[id].Clone()
			acts, res := loseCopies(t, c, 5, "n01", id)
			if len(acts) != 1 || acts[0].Kind != ActionDropLostCopy || acts[0].Epoch != before.Epoch || acts[0].Node != "n01" {
				t.Fatalf("planned %+v", acts)
			}
			if res.Applied != 1 || res.Stale != 0 || !reflect.DeepEqual(res.Changed, []int{id}) {
				t.Fatalf("result %+v", res)
			}
			p := c.Partitions[id]
			if p.Holds("n01") || p.Epoch != before.Epoch+1 {
				t.Fatalf("after the drop: %+v (before %+v)", p, before)
			}
			if p.DataLost != tc.wantLost {
				t.Fatalf("DataLost = %v, want %v (reasons %v)", p.DataLost, tc.wantLost, acts[0].Reasons)
			}
			if got := strings.Join(acts[0].Reasons, ";"); tc.wantLost != strings.Contains(got, "data is lost") {
				t.Fatalf("reasons %q do not say whether the data is lost", got)
			}
			plan := Plan(PlanInput{Cluster: c, Ages: AgesAt(c, 6), Seed: 1})
			var first *Action
			for i := range plan {
				if plan[i].Partition == id {
					first = &plan[i]
				}
			}
			switch {
			case tc.wantLost:
				if first != nil {
					t.Fatalf("a lost partition gets %v: the planner invents data", *first)
				}
			case tc.primary:
				if first == nil || first.Kind != ActionPromote || first.Node == "n01" {
					t.Fatalf("first step for a lost primary: %+v, want a live replica promoted", first)
				}
			default:
				if first == nil || first.Kind != ActionStartMigration || first.Source == "n01" || first.Source == "" {
					t.Fatalf("first step for a lost replica: %+v, want a copy from a live holder", first)
				}
			}
			converge(t, c, 7)
			p = c.Partitions[id]
			if tc.wantLost {
				if p.Primary != "" || len(p.Migrations) != 0 || !reflect.DeepEqual(c.LostPartitions(), []int{id}) {
					t.Fatalf("lost partition after converging: %+v, lost %v", p, c.LostPartitions())
				}
				return
			}
			if len(p.Holders()) != tc.rf || p.Primary == "" {
				t.Fatalf("replication factor not restored: %+v", p)
			}
		})
	}
}

func TestLostCopyCancelsTheCopiesItWasTheSourceOf(t *testing.T) {
	c := bootstrap(t, 4, 2, nodes(3))
	id := holding(t, c, "n01", true)
	p := c.Partitions[id]
	target := ""
	for _, n := range []string{"n02", "n03"} {
		if !p.Holds(n) {
			target = n
		}
	}
	mustApply(t, c, Command{Kind: CmdApplyActions, At: 2, Actions: []Action{{Kind: ActionStartMigration, Partition: id, Epoch: p.Epoch, Node: target, Source: "n01"}}})
	loseCopies(t, c, 3, "n01", id)
	if ms := c.Partitions[id].Migrations; len(ms) != 0 {
		t.Fatalf("a copy from the lost holder is still in flight: %+v", ms)
	}
}

func TestPlanLostCopiesSkipsWhatTheNodeDoesNotHold(t *testing.T) {
	c := bootstrap(t, 8, 2, nodes(4))
	held := holding(t, c, "n01", false)
	notHeld := -1
	for _, p := range c.Partitions {
		if !p.Holds("n01") {
			notHeld = p.ID
		}
	}
	acts := PlanLostCopies(c, "n01", []int{notHeld, held, held, -1, 99})
	if len(acts) != 1 || acts[0].Partition != held {
		t.Fatalf("planned %+v, want one action for partition %d", acts, held)
	}
	if PlanLostCopies(NewCluster(), "n01", []int{0}) != nil {
		t.Fatal("actions before bootstrap")
	}
	// A stale action (the partition moved on) does not apply.
	mustApply(t, c, Command{Kind: CmdApplyActions, At: 2, Actions: []Action{{Kind: ActionRemoveReplica, Partition: held, Epoch: c.Partitions[held].Epoch, Node: "n01"}}})
	res := mustApply(t, c, Command{Kind: CmdCopiesLost, At: 3, Node: "n01", Actions: acts})
	if res.Applied != 0 || res.Stale != 1 {
		t.Fatalf("stale drop: %+v", res)
	}
}

func TestDropLostCopyIsOnlyTakenFromItsOwnCommand(t *testing.T) {
	c := bootstrap(t, 8, 2, nodes(3))
	id := holding(t, c, "n01", false)
	drop := PlanLostCopies(c, "n01", []int{id})
	cases := []struct {
		name string
		cmd  Command
		is   error
	}{
		{"in apply_actions", Command{Kind: CmdApplyActions, At: 2, Actions: drop}, nil},
		{"in set_status", Command{Kind: CmdSetStatus, At: 2, Node: "n01", Status: StatusAlive, Actions: drop}, nil},
		{"about another node", Command{Kind: CmdCopiesLost, At: 2, Node: "n02", Actions: drop}, nil},
		{"with another action", Command{Kind: CmdCopiesLost, At: 2, Node: "n01", Actions: []Action{{Kind: ActionRemoveReplica, Partition: id, Epoch: c.Partitions[id].Epoch, Node: "n01"}}}, nil},
		{"unknown node", Command{Kind: CmdCopiesLost, At: 2, Node: "n09"}, ErrUnknownMember},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := c.Clone()
			if _, err := c.Apply(tc.cmd); err == nil || tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("Apply = %v, want a refusal", err)
			}
			if !reflect.DeepEqual(before, c) {
				t.Fatal("a refused command changed the state")
			}
		})
	}
}

func TestALostPartitionIsLedAgainWhenAHolderWithTheDataComesBack(t *testing.T) {
	c := bootstrap(t, 4, 2, nodes(2))
	id := holding(t, c, "n01", true)
	// n02, the other holder, fails without being replaced (there is nowhere
	// to put a copy); then n01's app reports that it lost everything.
	mustApply(t, c, Command{Kind: CmdSetStatus, At: 2, Node: "n02", Status: StatusFailed})
	loseCopies(t, c, 3, "n01", id)
	if !c.Partitions[id].DataLost {
		t.Fatalf("not marked lost: %+v", c.Partitions[id])
	}
	converge(t, c, 4)
	if c.Partitions[id].Primary != "" {
		t.Fatalf("lost partition got primary %q", c.Partitions[id].Primary)
	}
	m := c.Members["n02"]
	mustApply(t, c, Command{Kind: CmdUpsertMember, At: 5, Member: &m})
	converge(t, c, 6)
	p := c.Partitions[id]
	if p.Primary != "n02" || p.DataLost {
		t.Fatalf("after n02 came back with its copy: %+v", p)
	}
}
