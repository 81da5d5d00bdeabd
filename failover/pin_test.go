package failover

import (
	"encoding/json"
	"strings"
	"testing"

	"pgregory.net/rapid"
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

// Property: whatever pins an operator sets and whatever happens to the
// members, the planner converges, and once it has, every pin on a node that
// takes copies is honoured (the node holds the partition; a primary pin
// leads it), every partition has its copies, and no pin names a member
// that is gone.
func TestPinsAreHonouredAndThePlannerStillConverges(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		s := &sim{t: rt, now: 1}
		partitions := rapid.IntRange(1, 48).Draw(rt, "partitions")
		rf := rapid.IntRange(1, 3).Draw(rt, "rf")
		s.zones = []string{"a", "b", "c"}[:rapid.IntRange(1, 3).Draw(rt, "zones")]
		if rapid.Bool().Draw(rt, "throttled") {
			s.limits = DefaultLimits()
		}
		var ms []Member
		for i, n := 0, rapid.IntRange(2, 6).Draw(rt, "initial"); i < n; i++ {
			ms = append(ms, s.newMember())
		}
		s.c = NewCluster()
		s.apply(Command{Kind: CmdBootstrap, At: s.now, Settings: &Settings{Partitions: partitions, ReplicationFactor: rf}, Members: ms})
		s.settle()
		for i, n := 0, rapid.IntRange(1, 10).Draw(rt, "events"); i < n; i++ {
			s.step()
			switch rapid.SampledFrom([]string{"pin", "pin", "primary", "unpin", "join", "fail", "rejoin", "maintenance"}).Draw(rt, "event") {
			case "pin", "primary":
				id, ok := s.pick("pinned", Member.CanHold)
				if !ok {
					continue
				}
				ch := PinChange{Partition: rapid.IntRange(0, partitions-1).Draw(rt, "partition"), Node: id, Primary: rapid.Bool().Draw(rt, "as primary")}
				if s.c.CheckPin(ch) != nil {
					continue // refused: checked by TestABadPinIsRefusedAndChangesNothing
				}
				s.apply(Command{Kind: CmdSetPin, At: s.now, Pin: &ch})
			case "unpin":
				s.apply(Command{Kind: CmdSetPin, At: s.now, Pin: &PinChange{Partition: rapid.IntRange(0, partitions-1).Draw(rt, "partition"), Unpin: true}})
			case "join":
				m := s.newMember()
				s.apply(Command{Kind: CmdUpsertMember, At: s.now, Member: &m})
			case "fail":
				id, ok := s.pick("failed", Member.CanHold)
				if !ok {
					continue
				}
				s.apply(Command{Kind: CmdSetStatus, At: s.now, Node: id, Status: StatusFailed, Actions: PlanFailure(s.c, id, 3)})
			case "rejoin":
				id, ok := s.pick("rejoined", func(m Member) bool { return m.Status == StatusFailed })
				if !ok {
					continue
				}
				m := s.c.Members[id]
				s.apply(Command{Kind: CmdUpsertMember, At: s.now, Member: &m})
			case "maintenance":
				s.apply(Command{Kind: CmdSetMaintenance, At: s.now, Maintenance: !s.c.Maintenance})
			}
			s.settle()
		}
		live := 0
		for _, m := range s.c.Members {
			if m.CanHold() {
				live++
			}
		}
		for _, p := range s.c.Partitions {
			want := min(rf, live)
			if got := len(p.Holders()); got < want {
				rt.Fatalf("partition %d has %d copies, want %d: %+v", p.ID, got, want, p)
			}
			for _, pin := range p.Pins {
				m, ok := s.c.Members[pin.Node]
				if !ok {
					rt.Fatalf("partition %d pins %s, not a member", p.ID, pin.Node)
				}
				if !m.CanLead() {
					continue // the pin yields
				}
				if !p.Holds(pin.Node) {
					rt.Fatalf("converged, but the pinned %s does not hold partition %d: %+v", pin.Node, p.ID, p)
				}
				if pin.Primary && p.Primary != pin.Node {
					rt.Fatalf("converged, but partition %d is led by %s, pinned primary %s", p.ID, p.Primary, pin.Node)
				}
			}
		}
	})
}
