package failover

import (
	"encoding/json"
	"strings"
	"testing"
)

func pin(t *testing.T, c *Cluster, ch PinChange) {
	t.Helper()
	mustApply(t, c, Command{Kind: CmdSetPin, At: 5, Pin: &ch})
}

// nonHolder is the first node (in ID order) that does not hold p.
func nonHolder(c *Cluster, p int) string {
	for _, id := range c.MemberIDs() {
		if !c.Partitions[p].Holds(id) {
			return id
		}
	}
	return ""
}

func TestAPinnedNodeGetsItsCopyAndKeepsItThroughAJoin(t *testing.T) {
	c := bootstrap(t, 8, 2, nodes(4))
	target := nonHolder(c, 3)
	pin(t, c, PinChange{Partition: 3, Node: target})

	converge(t, c, 10)
	if !c.Partitions[3].Holds(target) {
		t.Fatalf("partition 3 is not on the pinned node %s: %+v", target, c.Partitions[3])
	}
	if got := len(c.Partitions[3].Holders()); got != 2 {
		t.Fatalf("partition 3 has %d copies after the pin, want the replication factor 2", got)
	}

	// A join makes the rebalancer move copies to the new node: never the
	// pinned partition.
	join(t, c, 20, node{id: "n05"})
	converge(t, c, 30)
	if !c.Partitions[3].Holds(target) {
		t.Fatalf("a rebalance took partition 3 off its pinned node %s: %+v", target, c.Partitions[3])
	}

	pin(t, c, PinChange{Partition: 3, Unpin: true})
	if len(c.Partitions[3].Pins) != 0 {
		t.Fatalf("pins left after unpinning: %+v", c.Partitions[3].Pins)
	}
}

func TestAPrimaryPinPromotesThePinnedNodeAndYieldsWhenItFails(t *testing.T) {
	c := bootstrap(t, 8, 3, nodes(4))
	replica := c.Partitions[2].Replicas[0]
	pin(t, c, PinChange{Partition: 2, Node: replica, Primary: true})

	actions := Plan(PlanInput{Cluster: c, Seed: 1})
	var promote *Action
	for i, a := range actions {
		if a.Partition == 2 {
			promote = &actions[i]
		}
	}
	if promote == nil || promote.Kind != ActionPromote || promote.Node != replica {
		t.Fatalf("plan for partition 2 is %+v, want a promotion of the pinned %s", promote, replica)
	}
	if !strings.Contains(strings.Join(promote.Reasons, "; "), "pinned primary") {
		t.Fatalf("the promotion does not say it is the pin: %v", promote.Reasons)
	}
	converge(t, c, 10)
	if c.Partitions[2].Primary != replica {
		t.Fatalf("partition 2 is led by %s, pinned primary is %s", c.Partitions[2].Primary, replica)
	}

	// The pinned node fails: safety first, another replica leads at once.
	promotions := PlanFailure(c, replica, 3)
	var found bool
	for _, a := range promotions {
		if a.Partition == 2 {
			found = true
			if a.Node == replica {
				t.Fatalf("promoted the failed pinned node: %+v", a)
			}
			if !strings.Contains(strings.Join(a.Reasons, "; "), "primary pin on "+replica+" yields: it is failed") {
				t.Fatalf("the promotion does not say the pin yields: %v", a.Reasons)
			}
		}
	}
	if !found {
		t.Fatalf("no promotion of partition 2 when its pinned primary fails: %+v", promotions)
	}
}

func TestABadPinIsRefusedAndChangesNothing(t *testing.T) {
	c := bootstrap(t, 4, 2, nodes(3))
	setStatus(t, c, 2, "n03", StatusFailed, PlanFailure(c, "n03", 1))
	pin(t, c, PinChange{Partition: 1, Node: "n01"})
	pin(t, c, PinChange{Partition: 1, Node: "n02"})
	before, _ := json.Marshal(c)
	for name, ch := range map[string]PinChange{
		"unknown node":          {Partition: 0, Node: "nope"},
		"no such partition":     {Partition: 4, Node: "n01"},
		"negative partition":    {Partition: -1, Node: "n01"},
		"failed node":           {Partition: 0, Node: "n03"},
		"more pins than RF":     {Partition: 1, Node: "n03"},
		"unpin a node unpinned": {Partition: 0, Node: "n01", Unpin: true},
	} {
		if _, err := c.Apply(Command{Kind: CmdSetPin, At: 9, Pin: &ch}); err == nil {
			t.Errorf("%s: pin %+v accepted", name, ch)
		}
	}
	if after, _ := json.Marshal(c); string(after) != string(before) {
		t.Fatalf("refused pins changed the state:\n%s\n%s", before, after)
	}
}

func TestMaintenanceStopsRebalancingButStillRestoresCopies(t *testing.T) {
	c := bootstrap(t, 12, 2, nodes(3))
	mustApply(t, c, Command{Kind: CmdSetMaintenance, At: 2, Maintenance: true})
	join(t, c, 3, node{id: "n04"})
	if actions := Plan(PlanInput{Cluster: c, Seed: 1}); len(actions) != 0 {
		t.Fatalf("maintenance: a join planned %v, want nothing moved for balance", actions)
	}

	// A copy lost to a departure is still restored: that keeps data safe.
	setStatus(t, c, 4, "n01", StatusLeft, PlanStatus(c, "n01", StatusLeft, 1))
	converge(t, c, 5)
	for _, p := range c.Partitions {
		if p.Holds("n01") || len(p.Holders()) != 2 {
			t.Fatalf("partition %d not restored to 2 copies without n01 in maintenance: %+v", p.ID, p)
		}
	}

	mustApply(t, c, Command{Kind: CmdSetMaintenance, At: 6, Maintenance: false})
	if actions := Plan(PlanInput{Cluster: c, Seed: 1}); len(actions) == 0 {
		copies, _ := counts(c)
		t.Fatalf("maintenance off, loads %v: nothing planned to rebalance", copies)
	}
}
