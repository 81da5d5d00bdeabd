package control

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/gossip"
	"github.com/steward-dev/steward/health"
	"github.com/steward-dev/steward/raftctl"
)

// A node restarting hands its primaries over and is marked restarting in
// one entry; a second node asking while the first is away is refused and
// changes nothing.
func TestANodeRestartsAloneAndHandsItsPrimariesOver(t *testing.T) {
	cl := newCluster("n2", []string{"n1", "n2", "n3", "n4", "n5"}, map[string]bool{"n1": true, "n2": true, "n3": true})
	promoted, err := cl.ctrl.MarkOwnRestart(context.Background(), time.Minute, 1)
	if err != nil {
		t.Fatal(err)
	}
	m := cl.member("n2")
	if m.Status != failover.StatusRestarting || m.RestartGrace != int64(time.Minute) {
		t.Fatalf("n2 after its restart request: %+v", m)
	}
	if _, prims, _ := Holdings(cl.raft.Snapshot(), "n2"); prims != 0 || promoted == 0 {
		t.Fatalf("n2 still leads %d partitions (%d promoted)", prims, promoted)
	}

	other := New(testConfig("n3"), Deps{Raft: cl.raft, Members: cl.members, Detector: cl.detector, Clock: cl.clock})
	before := cl.raft.Snapshot()
	_, err = other.MarkOwnRestart(context.Background(), time.Minute, 1)
	if !IsRestartRefused(err) {
		t.Fatalf("a second planned absence: err = %v, want a refusal", err)
	}
	if !reflect.DeepEqual(before, cl.raft.Snapshot()) {
		t.Fatal("the refused restart changed the state")
	}
	if _, err := other.MarkOwnRestart(context.Background(), time.Minute, 2); err != nil {
		t.Fatalf("with -max-unavailable 2 the second one may go: %v", err)
	}
}

// The restarting node's grace is measured on the leader's monotonic clock:
// a wall clock stepped forward does not end it; time passing does, and
// the member is then marked failed (its copies are re-created the normal
// way).
func TestARestartThatOverstaysItsGraceIsAFailure(t *testing.T) {
	cl := newCluster("n1", []string{"n1", "n2", "n3"}, nil)
	worker := New(testConfig("n2"), Deps{Raft: cl.raft, Members: cl.members, Detector: cl.detector, Clock: cl.clock})
	if _, err := worker.MarkOwnRestart(context.Background(), 30*time.Second, 1); err != nil {
		t.Fatal(err)
	}
	cl.ctrl.Ages().Observe(cl.raft.Snapshot(), cl.clock.Elapsed())
	cl.detector.set("n2", health.StateFailed, cl.clock.Now())
	cl.members.set("n2", gossip.StateDead)

	cl.clock.Step(time.Hour)
	cl.clock.Advance(29 * time.Second)
	if err := cl.ctrl.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := cl.member("n2").Status; st != failover.StatusRestarting {
		t.Fatalf("within its grace (wall clock stepped an hour) n2 is %s", st)
	}
	for _, cmd := range cl.raft.takeCommands() {
		for _, a := range cmd.Actions {
			if a.Kind == failover.ActionStartMigration {
				t.Fatalf("a copy planned while n2 is away: %+v", a)
			}
		}
	}

	cl.clock.Advance(2 * time.Second)
	if err := cl.ctrl.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := cl.member("n2").Status; st != failover.StatusFailed {
		t.Fatalf("past its grace n2 is %s, want failed", st)
	}
	if !slices.ContainsFunc(cl.ctrl.Events(), func(e Event) bool { return e.Type == "member.restart_expired" }) {
		t.Fatalf("no member.restart_expired event: %+v", cl.ctrl.Events())
	}
}

// A leader that took over during the restart counts the grace from when it
// first saw the status: later than the real start, never earlier.
func TestANewLeaderRestartsTheGraceClockConservatively(t *testing.T) {
	expired := expiredRestarts(&failover.Cluster{Members: map[string]failover.Member{
		"a": {ID: "a", Status: failover.StatusRestarting, RestartGrace: int64(time.Minute)},
		"b": {ID: "b", Status: failover.StatusRestarting, RestartGrace: int64(time.Minute)},
		"c": {ID: "c", Status: failover.StatusFailed},
	}}, map[string]time.Duration{"a": 61 * time.Second, "c": time.Hour}) // b: never seen before
	if !reflect.DeepEqual(expired, []string{"a"}) {
		t.Fatalf("expired %v, want [a]", expired)
	}
}

// The process that went away is never taken back; the new one, which
// announces its return, is, once the detector holds it healthy again.
func TestAMemberIsBackOnlyWithItsNewProcess(t *testing.T) {
	state := &failover.Cluster{Members: map[string]failover.Member{
		"a": {ID: "a", Status: failover.StatusRestarting},
		"b": {ID: "b", Status: failover.StatusRestarting},
		"c": {ID: "c", Status: failover.StatusRestarting},
		"d": {ID: "d", Status: failover.StatusAlive},
		"e": {ID: "e", Status: failover.StatusRestarting},
		"f": {ID: "f", Status: failover.StatusRestarting, AppUnhealthy: true},
	}}
	nodes := []gossip.Node{
		{ID: "a", State: gossip.StateAlive},                                     // the old process, still up
		{ID: "b", State: gossip.StateAlive, Meta: gossip.Meta{Returning: true}}, // back
		{ID: "c", State: gossip.StateAlive, Meta: gossip.Meta{Returning: true}}, // back, detector not yet convinced
		{ID: "d", State: gossip.StateAlive, Meta: gossip.Meta{Returning: true}}, // not restarting
		// back, its app catching up, which is not registered yet
		{ID: "e", State: gossip.StateAlive, Meta: gossip.Meta{Returning: true, AppUnhealthy: true}},
		// back, its app catching up, registered
		{ID: "f", State: gossip.StateAlive, Meta: gossip.Meta{Returning: true, AppUnhealthy: true}},
	}
	got := returnedFromRestart(state, nodes, map[string]health.State{"b": health.StateHealthy, "c": health.StateFailed})
	if !reflect.DeepEqual(got, []string{"b", "f"}) {
		t.Fatalf("back: %v, want [b f]", got)
	}

	cl := newCluster("n1", []string{"n1", "n2", "n3"}, nil)
	worker := New(testConfig("n2"), Deps{Raft: cl.raft, Members: cl.members, Detector: cl.detector, Clock: cl.clock})
	if _, err := worker.MarkOwnRestart(context.Background(), time.Minute, 1); err != nil {
		t.Fatal(err)
	}
	inc := cl.member("n2").Incarnation
	if err := cl.ctrl.Reconcile(context.Background()); err != nil || cl.member("n2").Status != failover.StatusRestarting {
		t.Fatalf("the old process is taken back: %v, %+v", err, cl.member("n2"))
	}
	n := cl.members.nodes["n2"]
	n.Meta.Returning = true
	cl.members.nodes["n2"] = n
	if err := cl.ctrl.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if m := cl.member("n2"); m.Status != failover.StatusAlive || m.Incarnation != inc+1 {
		t.Fatalf("n2 back: %+v, want alive at incarnation %d", m, inc+1)
	}
}

// The new process announces its app not ready with its return: one round
// of the leader takes it back with that recorded, so that the planner
// gives it no primary until the app has caught up; once the app is ready
// it leads again.
func TestAMemberBackFromARestartLeadsNothingUntilItsAppHasCaughtUp(t *testing.T) {
	cl := newCluster("n1", []string{"n1", "n2", "n3"}, nil)
	worker := New(testConfig("n2"), Deps{Raft: cl.raft, Members: cl.members, Detector: cl.detector, Clock: cl.clock})
	if _, err := worker.MarkOwnRestart(context.Background(), time.Minute, 1); err != nil {
		t.Fatal(err)
	}
	primariesOf := func(id string) int {
		n := 0
		cl.raft.Read(func(c *failover.Cluster) {
			for _, p := range c.Partitions {
				if p.Primary == id {
					n++
				}
			}
		})
		return n
	}
	if k := primariesOf("n2"); k != 0 {
		t.Fatalf("n2 leads %d partitions while restarting", k)
	}
	n := cl.members.nodes["n2"]
	n.Meta.Returning, n.Meta.AppUnhealthy = true, true
	cl.members.nodes["n2"] = n
	if err := cl.ctrl.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if m := cl.member("n2"); m.Status != failover.StatusAlive || !m.AppUnhealthy {
		t.Fatalf("after one round n2 is %+v: want alive with its app recorded not ready", m)
	}
	for range 3 {
		if err := cl.ctrl.Reconcile(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if k := primariesOf("n2"); k != 0 {
		t.Fatalf("n2 leads %d partitions before its app has caught up", k)
	}

	n.Meta.Returning, n.Meta.AppUnhealthy = false, false
	cl.members.nodes["n2"] = n
	for range 3 {
		if err := cl.ctrl.Reconcile(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if k := primariesOf("n2"); k == 0 {
		t.Fatal("n2 leads nothing once its app has caught up")
	}
}

// A restarting voter is demoted and a stable non-voter promoted in its
// place; the target does not drop while it is away, and the leader is
// never demoted (it hands leadership over first).
func TestARestartingVoterIsReplacedWhileAway(t *testing.T) {
	servers := []ServerHealth{
		{ID: "a", Voter: true, Leader: true, InService: true, Healthy: true, CaughtUp: true, StableFor: time.Hour},
		{ID: "b", Voter: true, Restarting: true, Healthy: true, CaughtUp: true, StableFor: time.Hour},
		{ID: "c", Voter: true, InService: true, Healthy: true, CaughtUp: true, StableFor: time.Hour},
		{ID: "d", InService: true, Healthy: true, CaughtUp: true, StableFor: time.Hour},
		{ID: "e", InService: true, Healthy: true, CaughtUp: true, StableFor: time.Hour},
	}
	promote, demote := PlanVoters(servers, 3, time.Second)
	if !reflect.DeepEqual(demote, []string{"b"}) || !reflect.DeepEqual(promote, []string{"d"}) {
		t.Fatalf("promote %v demote %v, want [d] [b]", promote, demote)
	}
	// Three members: nobody to promote, but the remaining two stay voters.
	promote, demote = PlanVoters(servers[:3], 3, time.Second)
	if len(promote) != 0 || !reflect.DeepEqual(demote, []string{"b"}) {
		t.Fatalf("three members: promote %v demote %v, want none and [b]", promote, demote)
	}
	// The leader restarting is not demoted while it leads.
	servers[0].Restarting, servers[0].InService = true, false
	_, demote = PlanVoters(servers, 3, time.Second)
	if slices.Contains(demote, "a") {
		t.Fatalf("the leader demoted: %v", demote)
	}
}

// A restart that would leave the voters without a quorum is refused; one
// that keeps it is allowed, also for the last copy of a partition (it
// stays where it is).
func TestRestartSafety(t *testing.T) {
	cl := newCluster("n1", []string{"n1", "n2", "n3"}, map[string]bool{"n1": true, "n2": true, "n3": true})
	if err := cl.ctrl.CheckRestartSafe(cl.raft.Snapshot()); err != nil {
		t.Fatalf("3 voters, all alive: %v", err)
	}
	cl.members.set("n2", gossip.StateDead)
	cl.members.set("n3", gossip.StateDead)
	if err := cl.ctrl.CheckRestartSafe(cl.raft.Snapshot()); !IsRestartRefused(err) {
		t.Fatalf("the other voters dead: err = %v, want a refusal", err)
	}
	one := newCluster("n1", []string{"n1"}, map[string]bool{"n1": true})
	if err := one.ctrl.CheckRestartSafe(one.raft.Snapshot()); err != nil {
		t.Fatalf("a single node may restart: %v", err)
	}
}

// fakeRestarter records restart requests, answering with answer.
type fakeRestarter struct {
	mu     sync.Mutex
	asked  []string
	answer error
}

func (f *fakeRestarter) RequestRestart(ctx context.Context, m failover.Member) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, m.ID)
	return f.answer
}

func (f *fakeRestarter) take() []string { return take(&f.mu, &f.asked) }

func rollingState(t *testing.T, members map[string]failover.Member, order []string, maxUnavailable int) *failover.Cluster {
	t.Helper()
	c := &failover.Cluster{Bootstrapped: true, Members: members}
	if _, err := c.Apply(failover.Command{Kind: failover.CmdRollingRestart, At: 1, Rolling: &failover.RollingRestart{Order: order, MaxUnavailable: maxUnavailable}}); err != nil {
		t.Fatal(err)
	}
	return c
}

func alive(ids ...string) map[string]failover.Member {
	out := map[string]failover.Member{}
	for _, id := range ids {
		out[id] = failover.Member{ID: id, Status: failover.StatusAlive, Incarnation: 1}
	}
	return out
}

// Who goes next: the order, one at a time, the leader alone and last; a
// member back but not ready is waited for; one that did not go is asked
// again; a failure stops the run.
func TestNextRollingStep(t *testing.T) {
	step := func(c *failover.Cluster, kind failover.RollingStepKind, node string, inc uint64) {
		t.Helper()
		if _, err := c.Apply(failover.Command{Kind: failover.CmdRollingStep, At: 2, Step: &failover.RollingStep{Generation: c.Rolling.Generation, Kind: kind, Node: node, Incarnation: inc}}); err != nil {
			t.Fatal(err)
		}
	}
	set := func(c *failover.Cluster, id string, st failover.MemberStatus, inc uint64) {
		m := c.Members[id]
		m.Status, m.Incarnation = st, inc
		c.Members[id] = m
	}
	c := rollingState(t, alive("a", "b", "c"), []string{"b", "c", "a"}, 1)
	in := rollingInputs{state: c, self: "a", ready: map[string]bool{}}

	d := nextRollingStep(in)
	if d.step == nil || d.step.Kind != failover.StepBegin || d.step.Node != "b" || d.step.Incarnation != 1 || !reflect.DeepEqual(d.ask, []string{"b"}) {
		t.Fatalf("first: %+v", d)
	}
	step(c, failover.StepBegin, "b", 1)
	if d := nextRollingStep(in); d.step != nil || !reflect.DeepEqual(d.ask, []string{"b"}) {
		t.Fatalf("b asked but not gone: want it asked again and nothing else, got %+v", d)
	}
	set(c, "b", failover.StatusRestarting, 1)
	if d := nextRollingStep(in); d.step != nil || len(d.ask) != 0 {
		t.Fatalf("b away, max-unavailable 1: want a wait, got %+v", d)
	}
	set(c, "b", failover.StatusAlive, 2)
	if d := nextRollingStep(in); d.step != nil {
		t.Fatalf("b back but not ready: want a wait, got %+v", d)
	}
	in.ready["b"] = true
	if d := nextRollingStep(in); d.step == nil || d.step.Kind != failover.StepFinish || d.step.Node != "b" {
		t.Fatalf("b back and ready: %+v", d)
	}
	step(c, failover.StepFinish, "b", 0)
	if d := nextRollingStep(in); d.step == nil || d.step.Node != "c" {
		t.Fatalf("then c: %+v", d)
	}
	step(c, failover.StepBegin, "c", 1)
	set(c, "c", failover.StatusFailed, 1)
	d = nextRollingStep(in)
	if d.step == nil || d.step.Kind != failover.StepFail {
		t.Fatalf("c failed (overstayed its grace): want the run stopped, got %+v", d)
	}

	// Two at a time, the leader alone and last; a member gone is skipped;
	// another planned restart makes the run wait.
	c = rollingState(t, alive("a", "b", "c", "d", "x"), []string{"b", "x", "c", "a"}, 2)
	c.Members["d"] = failover.Member{ID: "d", Status: failover.StatusRestarting}
	set(c, "x", failover.StatusLeft, 1)
	in = rollingInputs{state: c, self: "a", ready: map[string]bool{}}
	if d := nextRollingStep(in); d.step != nil {
		t.Fatalf("d is away on its own restart: want a wait, got %+v", d)
	}
	set(c, "d", failover.StatusAlive, 2)
	step(c, failover.StepBegin, "b", 1)
	if d := nextRollingStep(in); d.step == nil || d.step.Kind != failover.StepSkip || d.step.Node != "x" {
		t.Fatalf("x has left: want it skipped, got %+v", d)
	}
	step(c, failover.StepSkip, "x", 0)
	if d := nextRollingStep(in); d.step == nil || d.step.Kind != failover.StepBegin || d.step.Node != "c" {
		t.Fatalf("two at a time: want c to begin beside b, got %+v", d)
	}
	step(c, failover.StepBegin, "c", 1)
	set(c, "b", failover.StatusAlive, 2)
	in.ready["b"] = true
	step(c, failover.StepFinish, "b", 0)
	if d := nextRollingStep(in); d.step != nil && d.step.Node == "a" {
		t.Fatalf("the leader began while c is away: %+v", d)
	}
}

// The rolling restart starts from a whole cluster only, with the leader
// last; the leader drives it through the Restarter and records every step.
func TestTheLeaderDrivesARollingRestart(t *testing.T) {
	cl := newCluster("n1", []string{"n1", "n2", "n3"}, map[string]bool{"n1": true, "n2": true, "n3": true})
	restarter := &fakeRestarter{}
	cl.ctrl.restarter = restarter
	for id := range cl.members.nodes {
		cl.raft.peers[id+":7947"] = raftctl.PeerStatus{AppliedIndex: 1 << 40, LastIndex: 1 << 40} // caught up
	}
	r, err := cl.ctrl.StartRollingRestart(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r.Order, []string{"n2", "n3", "n1"}) || r.Generation != 1 {
		t.Fatalf("rolling restart %+v, want n2, n3, then the leader n1", r)
	}
	if _, err := cl.ctrl.StartRollingRestart(context.Background(), 1); !IsRestartRefused(err) {
		t.Fatalf("a second one while the first runs: %v", err)
	}
	if err := cl.ctrl.driveRollingRestart(context.Background()); err != nil {
		t.Fatal(err)
	}
	if asked := restarter.take(); !reflect.DeepEqual(asked, []string{"n2"}) {
		t.Fatalf("asked %v, want [n2]", asked)
	}
	// n2 goes and comes back: restarting, then a new process.
	worker := New(testConfig("n2"), Deps{Raft: cl.raft, Members: cl.members, Detector: cl.detector, Clock: cl.clock})
	if _, err := worker.MarkOwnRestart(context.Background(), time.Minute, 1); err != nil {
		t.Fatal(err)
	}
	mustReconcile(t, cl)
	if asked := restarter.take(); len(asked) != 0 {
		t.Fatalf("asked %v while n2 is away", asked)
	}
	n := cl.members.nodes["n2"]
	n.Meta.Returning = true
	cl.members.nodes["n2"] = n
	mustReconcile(t, cl)
	mustReconcile(t, cl)
	if r := cl.raft.Snapshot().Rolling; r.Next != 1 || cl.member("n2").Voter {
		t.Fatalf("n2 back but not a voter again: the run must wait for it, got %+v", r)
	}
	// Once stable, n2 is promoted back; then the next one goes.
	for i := 0; i < 10 && cl.raft.Snapshot().Rolling.Next < 2; i++ {
		cl.clock.Advance(time.Second)
		mustReconcile(t, cl)
	}
	if !cl.member("n2").Voter {
		t.Fatalf("n2 is not a voter again: %v", cl.voters())
	}
	r = cl.raft.Snapshot().Rolling
	if !reflect.DeepEqual(r.Done, []string{"n2"}) || r.Next != 2 || !reflect.DeepEqual(restarter.take(), []string{"n3"}) {
		t.Fatalf("after n2 came back: %+v", r)
	}

	// n3 refuses: the run stops and says why.
	restarter.answer = fmt.Errorf("n3: %w: quorum", ErrRestartRefused)
	mustReconcile(t, cl)
	r = cl.raft.Snapshot().Rolling
	if r.State != failover.RollingFailed || r.Error == "" {
		t.Fatalf("after a refusal: %+v", r)
	}
	if !slices.ContainsFunc(cl.ctrl.Events(), func(e Event) bool { return e.Type == "rolling.failed" }) {
		t.Fatalf("no rolling.failed event: %+v", cl.ctrl.Events())
	}
}

func mustReconcile(t *testing.T, cl *cluster) {
	t.Helper()
	if err := cl.ctrl.Reconcile(context.Background()); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}

func TestRollingOrderNeedsAWholeCluster(t *testing.T) {
	members := alive("c", "a", "b")
	order, err := rollingOrder(&failover.Cluster{Members: members}, "a")
	if err != nil || !reflect.DeepEqual(order, []string{"b", "c", "a"}) {
		t.Fatalf("order %v, %v", order, err)
	}
	members["b"] = failover.Member{ID: "b", Status: failover.StatusFailed}
	if _, err := rollingOrder(&failover.Cluster{Members: members}, "a"); !IsRestartRefused(err) {
		t.Fatalf("with a failed member: %v", err)
	}
}
