package control

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/steward-dev/steward/gossip"
	"github.com/steward-dev/steward/raftctl"
)

// newcomers is gossip's view of agents that have just started: alive,
// with their raft ID and address published, no raft state yet.
func newcomers(ids ...string) *fakeMembers {
	m := &fakeMembers{nodes: map[string]gossip.Node{}}
	for _, id := range ids {
		m.nodes[id] = gossip.Node{ID: id, State: gossip.StateAlive, Meta: gossip.Meta{RaftID: id + "-r", RaftAddr: id + ":7947"}}
	}
	return m
}

// Every agent of a new cluster bootstraps the same configuration: the
// BootstrapExpect agents with the smallest IDs, all voters, once gossip's
// view has been stable for a moment. An agent outside them waits to be
// added; none bootstraps beside a peer that already has a raft log.
func TestTheFirstAgentsBootstrapTheSameConfigurationOnceTheirViewIsStable(t *testing.T) {
	want := []raftctl.Server{{ID: "a-r", Address: "a:7947", Voter: true}, {ID: "b-r", Address: "b:7947", Voter: true}, {ID: "c-r", Address: "c:7947", Voter: true}}
	start := func(self string, members *fakeMembers) (*Bootstrapper, *fakeRaft, *fakeClock) {
		cfg := testConfig(self)
		cfg.BootstrapExpect = 3
		r := &fakeRaft{self: self + "-r", peers: map[string]raftctl.PeerStatus{}}
		clk := newFakeClock()
		return New(cfg, Deps{Raft: r, Members: members, Clock: clk}).NewBootstrapper(), r, clk
	}
	ctx := context.Background()

	for _, self := range []string{"a", "b", "c"} {
		members := newcomers("a", "b")
		b, r, clk := start(self, members)
		if b.Step(ctx) {
			t.Fatalf("%s: done with two of three agents in view", self)
		}
		members.nodes = newcomers("d", "c", "b", "a").nodes
		if b.Step(ctx) || r.HasState() {
			t.Fatalf("%s: bootstrapped on a view seen once", self)
		}
		clk.Advance(bootstrapStableFor / 2)
		if b.Step(ctx) || r.HasState() {
			t.Fatalf("%s: bootstrapped on a view stable for less than %s", self, bootstrapStableFor)
		}
		clk.Advance(bootstrapStableFor / 2)
		if !b.Step(ctx) || !slices.Equal(r.servers, want) {
			t.Fatalf("%s: bootstrapped %v, want %v", self, r.servers, want)
		}
	}

	b, r, clk := start("d", newcomers("a", "b", "c", "d"))
	b.Step(ctx)
	clk.Advance(bootstrapStableFor)
	if !b.Step(ctx) || r.HasState() {
		t.Fatal("d, not among the first three, bootstrapped")
	}

	b, r, clk = start("a", newcomers("a", "b", "c"))
	r.peers["c:7947"] = raftctl.PeerStatus{LastIndex: 42}
	b.Step(ctx)
	clk.Advance(bootstrapStableFor)
	if !b.Step(ctx) || r.HasState() {
		t.Fatal("bootstrapped beside a peer that already has a raft log")
	}
}

// Fifty agents started together do not make fifty voters: the first five
// by ID vote (the -voters target), the other 45 are in the first
// configuration as non-voters, so that the first election needs three
// votes, not 26, and no voter has to be demoted afterwards. A target above
// the agents expected is capped at the largest odd number of them.
func TestABigFirstClusterBootstrapsOnlyItsTargetOfVoters(t *testing.T) {
	var ids []string
	for i := 1; i <= 50; i++ {
		ids = append(ids, fmt.Sprintf("n%02d", i))
	}
	v := bootstrapViewOf(newcomers(ids...).Members(), 50, 5, "n42")
	if !v.ok || !v.includesSelf || len(v.servers) != 50 {
		t.Fatalf("view %+v, want all 50 agents with n42 among them", v)
	}
	for i, s := range v.servers {
		if want := i < 5; s.Voter != want || s.ID != ids[i]+"-r" {
			t.Fatalf("server %d is %+v, want %s-r voter=%v", i, s, ids[i], want)
		}
	}
	v = bootstrapViewOf(newcomers("a", "b", "c", "d").Members(), 4, 5, "a")
	var voters []string
	for _, s := range v.servers {
		if s.Voter {
			voters = append(voters, s.ID)
		}
	}
	if !slices.Equal(voters, []string{"a-r", "b-r", "c-r"}) {
		t.Fatalf("4 agents with a target of 5: voters %v, want the first 3", voters)
	}
}

// A non-voter of the first configuration does not bootstrap: it would
// never campaign, and the voters, seeing its raft log, would wait for a
// leader nobody could become. It waits for the leader, which replicates
// the configuration that names it; the voters bootstrap it.
func TestANonVoterOfTheFirstConfigurationWaitsForTheLeader(t *testing.T) {
	ctx := context.Background()
	start := func(self string) (*Bootstrapper, *fakeRaft, *fakeClock) {
		cfg := testConfig(self)
		cfg.BootstrapExpect, cfg.Voters = 4, 3
		r := &fakeRaft{self: self + "-r", peers: map[string]raftctl.PeerStatus{}}
		clk := newFakeClock()
		return New(cfg, Deps{Raft: r, Members: newcomers("a", "b", "c", "d"), Clock: clk}).NewBootstrapper(), r, clk
	}
	b, r, clk := start("d")
	b.Step(ctx)
	clk.Advance(bootstrapStableFor)
	if !b.Step(ctx) || r.HasState() {
		t.Fatal("d, a non-voter of the first configuration, bootstrapped")
	}
	b, r, clk = start("a")
	b.Step(ctx)
	clk.Advance(bootstrapStableFor)
	want := []raftctl.Server{{ID: "a-r", Address: "a:7947", Voter: true}, {ID: "b-r", Address: "b:7947", Voter: true},
		{ID: "c-r", Address: "c:7947", Voter: true}, {ID: "d-r", Address: "d:7947"}}
	if !b.Step(ctx) || !slices.Equal(r.servers, want) {
		t.Fatalf("a bootstrapped %v, want %v", r.servers, want)
	}
}

// On a busy machine some of fifty agents always look down for a moment:
// that does not restart the wait of a voter, as long as the voters stay
// the same and all fifty are there when it bootstraps.
func TestAMomentaryGapAmongTheNonVotersDoesNotRestartTheWait(t *testing.T) {
	var ids []string
	for i := 1; i <= 50; i++ {
		ids = append(ids, fmt.Sprintf("n%02d", i))
	}
	cfg := testConfig("n01")
	cfg.BootstrapExpect = 50
	members := newcomers(ids...)
	r := &fakeRaft{self: "n01-r", peers: map[string]raftctl.PeerStatus{}}
	clk := newFakeClock()
	b := New(cfg, Deps{Raft: r, Members: members, Clock: clk}).NewBootstrapper()
	ctx := context.Background()
	if b.Step(ctx) {
		t.Fatal("done on the first look")
	}
	members.set("n30", gossip.StateSuspect)
	clk.Advance(bootstrapStableFor / 2)
	if b.Step(ctx) || r.HasState() {
		t.Fatal("bootstrapped with an expected agent missing")
	}
	members.set("n30", gossip.StateAlive)
	clk.Advance(bootstrapStableFor / 2)
	if !b.Step(ctx) || len(r.servers) != 50 {
		t.Fatalf("not bootstrapped once all 50 were back, the voters unchanged for %s: %d servers", bootstrapStableFor, len(r.servers))
	}
}
