package failover

import "testing"

func TestForgettingAMemberThatHoldsNothingRemovesIt(t *testing.T) {
	c := bootstrap(t, 8, 2, nodes(4))
	fail(t, c, 10, "n04")
	converge(t, c, 11)
	if copies, _ := counts(c); copies["n04"] != 0 {
		t.Fatalf("n04 still holds %d copies once converged", copies["n04"])
	}
	mustApply(t, c, Command{Kind: CmdForgetMember, At: 12, Node: "n04"})
	if _, ok := c.Members["n04"]; ok {
		t.Fatalf("n04 is still a member: %+v", c.Members["n04"])
	}
	if _, err := c.Apply(Command{Kind: CmdForgetMember, At: 13, Node: "n04"}); err == nil {
		t.Fatal("forgetting an unknown member again succeeded")
	}
}

func TestForgettingAMemberThatStillHoldsCopiesMarksItLeftUntilTheyAreReCreated(t *testing.T) {
	c := bootstrap(t, 8, 2, nodes(4))
	// Failed a moment ago: its copies are not re-created yet.
	fail(t, c, 10, "n04")
	if copies, _ := counts(c); copies["n04"] == 0 {
		t.Fatal("n04 holds nothing: the scenario needs copies left on it")
	}
	promotions := PlanStatus(c, "n04", StatusLeft, 1)
	mustApply(t, c, Command{Kind: CmdForgetMember, At: 20, Node: "n04", Actions: promotions})
	m, ok := c.Members["n04"]
	if !ok || m.Status != StatusLeft || !m.Forget || m.StatusSince != 20 {
		t.Fatalf("n04 after forget: %+v (present %v), want left, to forget, since 20", m, ok)
	}
	// A left holder is gone for the planner whatever the replace delay:
	// its copies are re-created at once.
	converge(t, c, 21)
	if copies, _ := counts(c); copies["n04"] != 0 {
		t.Fatalf("n04 still holds %d copies once converged", copies["n04"])
	}
	mustApply(t, c, Command{Kind: CmdForgetMember, At: 22, Node: "n04"})
	if _, ok := c.Members["n04"]; ok {
		t.Fatal("n04 not removed once it held nothing")
	}
}

func TestARejoinClearsForget(t *testing.T) {
	c := bootstrap(t, 8, 2, nodes(3))
	fail(t, c, 10, "n03")
	mustApply(t, c, Command{Kind: CmdForgetMember, At: 11, Node: "n03"})
	if !c.Members["n03"].Forget {
		t.Fatal("n03 not marked")
	}
	m := c.Members["n03"]
	mustApply(t, c, Command{Kind: CmdUpsertMember, At: 12, Member: &m})
	if got := c.Members["n03"]; got.Forget || got.Status != StatusAlive {
		t.Fatalf("n03 after its rejoin: %+v", got)
	}
}
