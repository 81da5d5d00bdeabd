package control

import (
	"context"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/gossip"
	"github.com/steward-dev/steward/health"
	"github.com/steward-dev/steward/raftctl"
)

// raftCluster is a state whose members are raft servers named "<id>-r".
func raftCluster(statuses map[string]failover.MemberStatus) (*failover.Cluster, map[string]bool) {
	c := &failover.Cluster{Bootstrapped: true, Members: map[string]failover.Member{}}
	inConfig := map[string]bool{}
	for id, st := range statuses {
		c.Members[id] = failover.Member{ID: id, RaftID: id + "-r", Status: st}
		inConfig[id+"-r"] = true
	}
	return c, inConfig
}

func TestDeadVotersLeaveRaftWithinTheQuorumRuleEvenWhenFrozen(t *testing.T) {
	const alive, failed = failover.StatusAlive, failover.StatusFailed
	tests := []struct {
		name           string
		statuses       map[string]failover.MemberStatus
		voters         []string
		self           string
		inStatus       map[string]time.Duration
		detectorFailed map[string]time.Duration
		want           []string
	}{
		{
			name:     "a failed voter and a failed non-voter",
			statuses: map[string]failover.MemberStatus{"a": alive, "b": alive, "c": failed, "d": alive, "e": alive, "f": failed},
			voters:   []string{"a-r", "b-r", "c-r", "d-r", "e-r"},
			want:     []string{"c-r", "f-r"},
		},
		{
			name: "before marking (a freeze keeps them alive): voters the detector holds failed go, a minority of them; a non-voter it holds failed goes",
			statuses: map[string]failover.MemberStatus{
				"a": alive, "b": alive, "c": alive, "d": alive, "e": alive, "f": alive,
			},
			voters:         []string{"a-r", "b-r", "c-r", "d-r", "e-r"},
			detectorFailed: map[string]time.Duration{"d": 9 * time.Second, "e": 5 * time.Second, "f": time.Minute},
			want:           []string{"d-r", "e-r", "f-r"},
		},
		{
			name: "the detector alone holds a majority of the voters dead while this leader leads them: it is wrong about some, nobody it holds goes",
			statuses: map[string]failover.MemberStatus{
				"a": alive, "b": alive, "c": alive, "d": alive, "e": alive, "f": alive,
			},
			voters:         []string{"a-r", "b-r", "c-r", "d-r", "e-r"},
			detectorFailed: map[string]time.Duration{"c": 3 * time.Second, "d": 9 * time.Second, "e": 5 * time.Second, "f": time.Minute},
			want:           []string{},
		},
		{
			name:           "a voter the state marked failed still goes beside such a view",
			statuses:       map[string]failover.MemberStatus{"a": alive, "b": failed, "c": alive, "d": alive, "e": alive},
			voters:         []string{"a-r", "b-r", "c-r", "d-r", "e-r"},
			detectorFailed: map[string]time.Duration{"c": time.Second, "d": time.Second},
			want:           []string{"b-r"},
		},
		{
			name:     "two dead of three voters: one at a time (a quorum of the old three remains)",
			statuses: map[string]failover.MemberStatus{"a": alive, "b": failed, "c": failed, "d": alive},
			voters:   []string{"a-r", "b-r", "c-r"},
			inStatus: map[string]time.Duration{"b": time.Minute, "c": time.Hour},
			want:     []string{"c-r"},
		},
		{
			name:           "this agent and departed members are not removed here",
			statuses:       map[string]failover.MemberStatus{"a": failed, "b": failover.StatusLeft, "c": alive},
			voters:         []string{"a-r", "b-r", "c-r"},
			self:           "a-r",
			detectorFailed: map[string]time.Duration{"b": time.Minute},
			want:           []string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state, inConfig := raftCluster(tt.statuses)
			got := deadServersToRemove(state, tt.voters, inConfig, tt.self, tt.inStatus, tt.detectorFailed)
			if got == nil {
				got = []string{}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("removed %v, want %v", got, tt.want)
			}
		})
	}
}

// frozenBy reports whether removals freeze for these counts.
func frozenBy(total, failed, maxFailed int) bool {
	frozen, _ := FreezeDecision(total, failed, maxFailed, false)
	return frozen
}

// failNode makes id dead everywhere the leader looks: gossip, the
// detector, and (marked) the state.
func (cl *cluster) failNode(id string) {
	cl.members.set(id, gossip.StateDead)
	cl.detector.set(id, health.StateFailed, cl.clock.Now())
	cl.setStatus(id, failover.StatusFailed)
}

// reconcileMembership runs the two membership steps of a reconcile round:
// the raft configuration, then the voters.
func (cl *cluster) reconcileMembership(t *testing.T) {
	t.Helper()
	if err := cl.ctrl.reconcileRaftConfig(cl.ctrl.MemberState()); err != nil {
		t.Fatal(err)
	}
	if err := cl.ctrl.reconcileVoters(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Two of three voters die beside two live non-voters. The leader removes
// one dead voter, the older failure (the quorum rule: (3-1)/2 = 1 at a
// time), promotes a live agent once it has been stable for the
// stabilisation time, and only then removes the second dead voter: the
// configuration never loses its quorum, and ends with three live voters.
func TestTwoDeadVotersOfThreeLeaveOneAtATimeWhileLiveAgentsArePromoted(t *testing.T) {
	cl := newCluster("n1", []string{"n1", "n2", "n3", "n4", "n5"}, map[string]bool{"n1": true, "n2": true, "n3": true})
	for _, id := range []string{"n4", "n5"} {
		cl.raft.peers[id+":7947"] = raftctl.PeerStatus{AppliedIndex: 1 << 20}
	}
	cl.failNode("n3")
	cl.clock.Advance(10 * time.Second)
	cl.failNode("n2")
	cl.raft.takeOps()

	cl.reconcileMembership(t)
	if ops := cl.raft.takeOps(); !slices.Equal(ops, []string{"remove n3-r"}) {
		t.Fatalf("first round: %v, want only the older dead voter removed", ops)
	}
	cl.reconcileMembership(t)
	if ops := cl.raft.takeOps(); len(ops) != 0 {
		t.Fatalf("second round, before anyone is stable: %v, want nothing", ops)
	}
	cl.clock.Advance(voterStableFor)
	cl.reconcileMembership(t)
	if ops := cl.raft.takeOps(); !slices.Equal(ops, []string{"promote n4-r"}) {
		t.Fatalf("after the stabilisation time: %v, want n4 promoted (the lowest ID)", ops)
	}
	cl.reconcileMembership(t)
	if ops := cl.raft.takeOps(); !slices.Equal(ops, []string{"remove n2-r", "promote n5-r"}) {
		t.Fatalf("with three voters again: %v, want the second dead voter removed and n5 promoted", ops)
	}
	if v := cl.voters(); !slices.Equal(v, []string{"n1-r", "n4-r", "n5-r"}) {
		t.Fatalf("voters %v, want the three live agents", v)
	}
	for id, want := range map[string]bool{"n1": true, "n2": false, "n3": false, "n4": true, "n5": true} {
		if got := cl.member(id).Voter; got != want {
			t.Errorf("the state holds %s voter=%v, want %v", id, got, want)
		}
	}
}

// While removals are frozen (three of six marked failed), dead voters
// still leave the configuration within the quorum rule, and so does a dead
// non-voter, which the quorum does not depend on.
func TestFrozenRemovalsStillTakeDeadVotersOut(t *testing.T) {
	cl := newCluster("n1", []string{"n1", "n2", "n3", "n4", "n5", "n6"}, map[string]bool{"n1": true, "n2": true, "n3": true, "n4": true, "n5": true})
	for _, id := range []string{"n4", "n5", "n6"} {
		cl.failNode(id)
	}
	state := cl.ctrl.MemberState()
	if total, failed := cl.ctrl.freezeCounts(state, 0); !frozenBy(total, failed, cl.ctrl.cfg.MaxFailed) {
		t.Fatal("three of six failed does not freeze removals: the test would prove nothing")
	}
	cl.raft.takeOps()
	if err := cl.ctrl.reconcileRaftConfig(cl.ctrl.MemberState()); err != nil {
		t.Fatal(err)
	}
	if ops := cl.raft.takeOps(); !slices.Equal(ops, []string{"remove n4-r", "remove n5-r", "remove n6-r"}) {
		t.Fatalf("frozen: %v, want the two dead voters out ((5-1)/2 = 2) and the dead non-voter n6", ops)
	}
}

// The configuration follows the members: a live member missing from it is
// added as a non-voter, a server that is no member's incarnation is
// removed, and so is a member that left, even in maintenance mode.
func TestTheRaftConfigurationFollowsTheMembers(t *testing.T) {
	cl := newCluster("n1", []string{"n1", "n2", "n3", "n4"}, map[string]bool{"n1": true, "n2": true, "n3": true})
	n5 := failover.Member{ID: "n5", RaftID: "n5-r", RaftAddr: "n5:7947"}
	if _, err := cl.raft.ApplyForwarded(context.Background(), failover.Command{Kind: failover.CmdUpsertMember, Member: &n5}); err != nil {
		t.Fatal(err)
	}
	cl.raft.servers = append(cl.raft.servers, raftctl.Server{ID: "n2-old", Address: "n2:7947"})
	cl.setStatus("n4", failover.StatusLeft)
	if _, err := cl.raft.ApplyForwarded(context.Background(), failover.Command{Kind: failover.CmdSetMaintenance, Maintenance: true}); err != nil {
		t.Fatal(err)
	}
	cl.raft.takeOps()
	if err := cl.ctrl.reconcileRaftConfig(cl.ctrl.MemberState()); err != nil {
		t.Fatal(err)
	}
	if ops := cl.raft.takeOps(); !slices.Equal(ops, []string{"add n5-r", "remove n2-old", "remove n4-r"}) {
		t.Fatalf("changes %v", ops)
	}
	servers, _ := cl.raft.Configuration()
	if i := slices.IndexFunc(servers, func(s raftctl.Server) bool { return s.ID == "n5-r" }); i < 0 || servers[i].Voter || servers[i].Address != "n5:7947" {
		t.Fatalf("n5 in the configuration: %+v", servers)
	}
}

// Two voters of five die a moment apart with -max-failed 1: the leader
// marks the first (one failure is within the limit), then the second
// freezes marking, so the state keeps it alive. Voter planning demotes it
// (four in service want three voters), and as a dead non-voter it must
// still leave the configuration: the freeze that keeps it alive in the
// state is the one marking saw (the suspect counted), whatever removals
// of marked failures alone would say.
func TestADeadVoterDemotedDuringAFreezeLeavesTheConfiguration(t *testing.T) {
	cl := newCluster("n1", []string{"n1", "n2", "n3", "n4", "n5"}, map[string]bool{"n1": true, "n2": true, "n3": true, "n4": true, "n5": true})
	cl.ctrl.cfg.MaxFailed = 1
	ctx := context.Background()
	round := func() {
		t.Helper()
		if err := cl.ctrl.markFailures(ctx); err != nil {
			t.Fatal(err)
		}
		cl.reconcileMembership(t)
	}
	cl.members.set("n2", gossip.StateDead)
	cl.detector.set("n2", health.StateFailed, cl.clock.Now())
	round()
	if cl.member("n2").Status != failover.StatusFailed {
		t.Fatal("n2, the only failure, was not marked")
	}
	cl.clock.Advance(time.Second)
	cl.members.set("n3", gossip.StateDead)
	cl.detector.set("n3", health.StateFailed, cl.clock.Now())
	for range 3 {
		round()
		cl.clock.Advance(time.Second)
	}
	if cl.ctrl.FreezeReason() == "" || cl.member("n3").Status != failover.StatusAlive {
		t.Fatalf("n3 is %s, freeze %q: the test wants it held alive by the freeze", cl.member("n3").Status, cl.ctrl.FreezeReason())
	}
	servers, _ := cl.raft.Configuration()
	for _, s := range servers {
		if s.ID == "n2-r" || s.ID == "n3-r" {
			t.Fatalf("a dead server is still in the configuration: %+v (all: %+v)", s, servers)
		}
	}
}
