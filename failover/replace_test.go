package failover

import (
	"encoding/json"
	"fmt"
	"testing"

	"pgregory.net/rapid"
)

// fataler is what both *testing.T and *rapid.T offer.
type fataler interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

// applyOrFatal applies cmd and checks the state's invariants.
func applyOrFatal(t fataler, c *Cluster, cmd Command) {
	t.Helper()
	if _, err := c.Apply(cmd); err != nil {
		t.Fatalf("apply %s: %v", cmd.Kind, err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("after %s: %v", cmd.Kind, err)
	}
}

// stepUntilQuiet plans, applies and acknowledges round by round, calling
// check after every applied command, until the plan is empty.
func stepUntilQuiet(t fataler, c *Cluster, lim Limits, check func(after string)) {
	t.Helper()
	for round := 0; ; round++ {
		if round > 1000 {
			t.Fatalf("no convergence after %d rounds", round)
		}
		actions := Plan(PlanInput{Cluster: c, Seed: int64(round), Limits: lim})
		if len(actions) == 0 {
			return
		}
		if _, err := c.Apply(Command{Kind: CmdApplyActions, At: int64(round), Actions: actions}); err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("plan of round %d %v", round, actions))
		if acks := AcknowledgeAll(c); len(acks) > 0 {
			if _, err := c.Apply(Command{Kind: CmdApplyActions, At: int64(round), Actions: acks}); err != nil {
				t.Fatal(err)
			}
			check(fmt.Sprintf("acknowledgements of round %d", round))
		}
	}
}

func TestReplaceMovesEveryCopyOfTheOldNodeToTheNewOneThenReportsItDone(t *testing.T) {
	c := bootstrap(t, 16, 2, nodes(4))
	mustApply(t, c, Command{Kind: CmdSetMaintenance, At: 2, Maintenance: true}) // the new node takes nothing by itself
	join(t, c, 3, node{id: "n05"})
	var held []int
	for _, p := range c.Partitions {
		if p.Holds("n02") {
			held = append(held, p.ID)
		}
	}
	mustApply(t, c, Command{Kind: CmdReplaceMember, At: 4, Node: "n02", Replacement: "n05"})
	if got := c.Replaced(); len(got) != 0 {
		t.Fatalf("replacement reported done before any copy moved: %v", got)
	}

	stepUntilQuiet(t, c, Limits{MaxMigrationsPerNode: 2}, func(after string) {
		for _, p := range c.Partitions {
			if len(p.Holders()) < 2 {
				t.Fatalf("after %s: partition %d has %d copies, below the replication factor", after, p.ID, len(p.Holders()))
			}
		}
	})
	for _, id := range held {
		if !c.Partitions[id].Holds("n05") || c.Partitions[id].Holds("n02") {
			t.Fatalf("partition %d (held by n02) is not on n05 alone: %+v", id, c.Partitions[id])
		}
	}
	if got := c.Replaced(); len(got) != 1 || got[0] != "n02" {
		t.Fatalf("Replaced() = %v, want [n02]", got)
	}
}

func TestABadReplaceIsRefusedAndChangesNothing(t *testing.T) {
	c := bootstrap(t, 6, 2, zoned(4, "a", "b"))
	join(t, c, 2, node{id: "n05", zone: "a"})
	join(t, c, 2, node{id: "n06", zone: "b"})
	setStatus(t, c, 3, "n06", StatusFailed, nil)
	before, _ := json.Marshal(c)
	for name, tc := range map[string][2]string{
		"unknown old":         {"nope", "n05"},
		"unknown new":         {"n01", "nope"},
		"itself":              {"n01", "n01"},
		"new not alive":       {"n01", "n06"},
		"zone spread breaks":  {"n02", "n05"}, // n02 is in zone b, n05 in a: a copy of each of n02's partitions already sits in a
		"nothing to call off": {"n01", ""},
	} {
		if _, err := c.Apply(Command{Kind: CmdReplaceMember, At: 9, Node: tc[0], Replacement: tc[1]}); err == nil {
			t.Errorf("%s: replace %s by %q accepted", name, tc[0], tc[1])
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	if after, _ := json.Marshal(c); string(after) != string(before) {
		t.Fatalf("refused replacements changed the state")
	}
}

// Property: whatever the cluster, replacing a node by a new one never takes
// any partition below its replication factor, and ends with the old node
// holding nothing.
func TestReplaceNeverDropsBelowTheReplicationFactor(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		n := rapid.IntRange(2, 7).Draw(rt, "nodes")
		rf := rapid.IntRange(1, min(n, 3)).Draw(rt, "rf")
		parts := rapid.IntRange(1, 40).Draw(rt, "partitions")
		zones := rapid.IntRange(1, 3).Draw(rt, "zones")
		ns := nodes(n)
		for i := range ns {
			ns[i].zone = fmt.Sprintf("z%d", i%zones)
		}
		c := NewCluster()
		var ms []Member
		for _, nd := range ns {
			ms = append(ms, Member{ID: nd.id, Zone: nd.zone})
		}
		applyOrFatal(rt, c, Command{Kind: CmdBootstrap, At: 1, Settings: &Settings{Partitions: parts, ReplicationFactor: rf}, Members: ms})
		old := ns[rapid.IntRange(0, n-1).Draw(rt, "old")].id
		applyOrFatal(rt, c, Command{Kind: CmdUpsertMember, At: 2, Member: &Member{ID: "new", Zone: c.Members[old].Zone}})
		if rapid.Bool().Draw(rt, "maintenance") {
			applyOrFatal(rt, c, Command{Kind: CmdSetMaintenance, At: 2, Maintenance: true})
		}
		if err := c.CheckReplace(old, "new"); err != nil {
			rt.Fatalf("replace %s by a new node in its own zone refused: %v", old, err)
		}
		applyOrFatal(rt, c, Command{Kind: CmdReplaceMember, At: 3, Node: old, Replacement: "new"})
		lim := Limits{MaxMigrationsPerNode: rapid.IntRange(0, 3).Draw(rt, "per-node"), MaxMigrations: rapid.IntRange(0, 8).Draw(rt, "max")}
		stepUntilQuiet(rt, c, lim, func(after string) {
			if err := c.Validate(); err != nil {
				rt.Fatalf("after %s: %v", after, err)
			}
			for _, p := range c.Partitions {
				if len(p.Holders()) < rf {
					rt.Fatalf("after %s: partition %d has %d copies, replication factor %d", after, p.ID, len(p.Holders()), rf)
				}
				if p.Primary == "" {
					rt.Fatalf("after %s: partition %d has no primary", after, p.ID)
				}
			}
		})
		for _, p := range c.Partitions {
			if p.Holds(old) {
				rt.Fatalf("%s still holds partition %d after the replacement converged: %+v", old, p.ID, p)
			}
		}
		if got := c.Replaced(); len(got) != 1 || got[0] != old {
			rt.Fatalf("Replaced() = %v, want [%s]", got, old)
		}
	})
}
