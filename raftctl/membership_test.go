package raftctl

import (
	"errors"
	"testing"
	"time"
)

func TestMembershipChangesAreIdempotent(t *testing.T) {
	nodes := make([]*Node, 3)
	for i, id := range []string{"m1", "m2", "m3"} {
		nodes[i] = startNode(t, testConfig(id, t.TempDir()))
	}
	for _, n := range nodes {
		if err := n.Bootstrap(serversOf(nodes...)); err != nil {
			t.Fatal(err)
		}
	}
	leader := waitLeader(t, nodes...)
	if _, err := leader.Apply(bootstrapCommand("m1", "m2", "m3")); err != nil {
		t.Fatal(err)
	}
	f := followers(leader, nodes...)[0]

	// Same ID, same address: nothing to do; a voter stays a voter.
	if err := leader.AddNonvoter(f.ID(), f.Addr()); err != nil {
		t.Fatalf("AddNonvoter of a known voter: %v", err)
	}
	if s := serverOf(t, leader, f.ID()); !s.Voter {
		t.Fatalf("AddNonvoter demoted the voter %s", f.ID())
	}

	// A join retried twice adds the server once.
	dir4 := t.TempDir()
	n4 := startNode(t, testConfig("m4", dir4))
	for range 2 {
		if err := leader.AddNonvoter("m4", n4.Addr()); err != nil {
			t.Fatalf("AddNonvoter(m4): %v", err)
		}
	}
	conf, err := leader.Configuration()
	if err != nil {
		t.Fatal(err)
	}
	if len(conf) != 4 {
		t.Fatalf("configuration after a repeated join: %+v", conf)
	}

	// Same ID at a new address (a restart on another port): the address is
	// updated, the suffrage kept, and the server catches up there.
	if err := n4.Shutdown(); err != nil {
		t.Fatal(err)
	}
	n4b := startNode(t, testConfig("m4", dir4))
	if err := leader.AddNonvoter("m4", n4b.Addr()); err != nil {
		t.Fatalf("address change: %v", err)
	}
	if s := serverOf(t, leader, "m4"); s.Address != n4b.Addr() || s.Voter {
		t.Fatalf("after the address change m4 is %+v, want a non-voter at %s", s, n4b.Addr())
	}
	if _, err := leader.Apply(upsertCommand("m4", 4)); err != nil {
		t.Fatal(err)
	}
	if err := n4b.WaitApplied(ctxTimeout(t, 5*time.Second), leader.Stats().AppliedIndex); err != nil {
		t.Fatalf("m4 at its new address did not catch up: %v", err)
	}

	// A new ID at an address still configured for another server (m4 came
	// back with a wiped data dir as m5 on its old port): the stale m4 is
	// removed first, since raft refuses duplicate addresses.
	reused := n4b.Addr()
	if err := n4b.Shutdown(); err != nil {
		t.Fatal(err)
	}
	cfg5 := testConfig("m5", t.TempDir())
	cfg5.BindAddr = reused // the port m4 just released
	n5 := startNode(t, cfg5)
	if err := leader.AddNonvoter("m5", n5.Addr()); err != nil {
		t.Fatalf("AddNonvoter at a reused address: %v", err)
	}
	conf, err = leader.Configuration()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := findServer(conf, "m4"); ok {
		t.Fatalf("stale m4 still configured: %+v", conf)
	}
	if s, ok := findServer(conf, "m5"); !ok || s.Address != reused || s.Voter {
		t.Fatalf("m5 not configured as a non-voter at %s: %+v", reused, conf)
	}
	if err := n5.WaitApplied(ctxTimeout(t, 5*time.Second), leader.Stats().AppliedIndex); err != nil {
		t.Fatalf("m5 did not catch up: %v", err)
	}

	// The leader may not take its own address or remove or demote itself.
	if err := leader.AddNonvoter("impostor", leader.Addr()); !errors.Is(err, ErrLeaderSelf) {
		t.Fatalf("AddNonvoter at the leader's address = %v, want ErrLeaderSelf", err)
	}
	if err := leader.Remove(leader.ID()); !errors.Is(err, ErrLeaderSelf) {
		t.Fatalf("Remove(self) = %v, want ErrLeaderSelf", err)
	}
	if err := leader.Demote(leader.ID()); !errors.Is(err, ErrLeaderSelf) {
		t.Fatalf("Demote(self) = %v, want ErrLeaderSelf", err)
	}

	// Removing a follower, twice.
	for range 2 {
		if err := leader.Remove("m5"); err != nil {
			t.Fatalf("Remove(m5): %v", err)
		}
	}
	if conf, _ := leader.Configuration(); len(conf) != 3 {
		t.Fatalf("configuration after removing m5: %+v", conf)
	}
	if err := f.Remove("m5"); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("Remove on a follower = %v, want ErrNotLeader", err)
	}
}

// The leader about to leave hands leadership over; the new leader then
// removes it, and the remaining voters keep working.
func TestLeaderTransfersLeadershipThenIsRemoved(t *testing.T) {
	nodes := make([]*Node, 3)
	for i, id := range []string{"t1", "t2", "t3"} {
		nodes[i] = startNode(t, testConfig(id, t.TempDir()))
	}
	for _, n := range nodes {
		if err := n.Bootstrap(serversOf(nodes...)); err != nil {
			t.Fatal(err)
		}
	}
	old := waitLeader(t, nodes...)
	if _, err := old.Apply(bootstrapCommand("t1", "t2", "t3")); err != nil {
		t.Fatal(err)
	}
	lc := old.LeadershipChanges()
	if err := old.TransferLeadership(); err != nil {
		t.Fatalf("TransferLeadership: %v", err)
	}
	rest := followers(old, nodes...)
	next := waitLeader(t, nodes...)
	if next == old {
		t.Fatalf("%s is still leader after transferring leadership", old.ID())
	}
	// The channel holds the latest value only; an unread "true" from the
	// election may still be there until raft overwrites it with "false".
	timeout := time.After(5 * time.Second)
	for lost := false; !lost; {
		select {
		case v := <-lc:
			lost = !v
		case <-timeout:
			t.Fatalf("the old leader was never told it lost leadership")
		}
	}
	if err := old.TransferLeadership(); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("TransferLeadership on a follower = %v, want ErrNotLeader", err)
	}
	if _, err := old.Apply(upsertCommand("x", 2)); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("Apply on the old leader = %v, want ErrNotLeader", err)
	}

	if err := next.Remove(old.ID()); err != nil {
		t.Fatalf("Remove(old leader): %v", err)
	}
	if err := old.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if _, err := next.Apply(upsertCommand("x", 3)); err != nil {
		t.Fatalf("Apply after the old leader left: %v", err)
	}
	for _, n := range rest {
		if err := n.WaitCaughtUp(ctxTimeout(t, 5*time.Second)); err != nil {
			t.Fatalf("WaitCaughtUp on %s: %v", n.ID(), err)
		}
		if _, ok := n.Snapshot().Members["x"]; !ok {
			t.Fatalf("%s lacks the write made after the transfer", n.ID())
		}
	}
}
