package control

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/health"
)

// Rolling restarts: the leader restarts the members one after the other
// (at most MaxUnavailable at a time), each as a planned restart: it asks the
// member's agent to restart (Restarter), the agent goes away and exits with
// the documented status, its supervisor starts it again, and the leader
// waits until it is back, caught up, healthy and holding primaries before
// the next. Any failure stops it, with the reason in the state. What has
// been done is kept in raft (failover.RollingRestart), so a new leader
// carries on; the leader that started it restarts itself last.

// rollingInputs is what nextRollingStep decides on.
type rollingInputs struct {
	state *failover.Cluster
	// self is this agent's node ID (the leader's).
	self string
	// ready tells, for the members in flight that are back, whether they
	// are caught up, healthy and hold primaries (or nothing that can lead).
	ready map[string]bool
}

// rollingDecision is one round's decision: at most one step to record,
// and the members to ask (again) to restart.
type rollingDecision struct {
	step *failover.RollingStep
	ask  []string
}

// nextRollingStep decides (purely) the next step of the running rolling
// restart:
//
//   - a member in flight that is gone, failed, leaving or left stops it
//     (a restart that overstayed its grace is marked failed by the leader);
//   - one that is back (alive with a higher incarnation) and ready is
//     finished; one still restarting is waited for; one alive with the
//     incarnation it had when asked has not gone yet and is asked again;
//   - while fewer than MaxUnavailable are in flight, the next member in
//     order begins: skipped if it is no longer a member or has left; the
//     run stops if it is not in service; it waits while another member is
//     away for a restart of its own; the leader itself only alone.
func nextRollingStep(in rollingInputs) rollingDecision {
	r := in.state.Rolling
	if !r.Running() {
		return rollingDecision{}
	}
	fail := func(format string, args ...any) rollingDecision {
		return rollingDecision{step: &failover.RollingStep{Generation: r.Generation, Kind: failover.StepFail, Error: fmt.Sprintf(format, args...)}}
	}
	var d rollingDecision
	for _, f := range r.InFlight {
		m, ok := in.state.Members[f.Node]
		switch {
		case !ok:
			return fail("%s is no longer a member", f.Node)
		case m.Status == failover.StatusRestarting:
		case !m.CanHold():
			return fail("%s is %s (not back within its restart grace?)", f.Node, m.Status)
		case m.Incarnation > f.Incarnation:
			if in.ready[f.Node] {
				return rollingDecision{step: &failover.RollingStep{Generation: r.Generation, Kind: failover.StepFinish, Node: f.Node}}
			}
		default:
			d.ask = append(d.ask, f.Node)
		}
	}
	if len(r.InFlight) >= r.MaxUnavailable || r.Next >= len(r.Order) {
		return d
	}
	next := r.Order[r.Next]
	m, ok := in.state.Members[next]
	if !ok || m.Status == failover.StatusLeft {
		return rollingDecision{step: &failover.RollingStep{Generation: r.Generation, Kind: failover.StepSkip, Node: next}, ask: d.ask}
	}
	if !m.CanHold() {
		return fail("%s is %s: a rolling restart goes on only with every member in service", next, m.Status)
	}
	for _, id := range in.state.Restarting() {
		if !inFlight(r, id) {
			return d // a planned restart outside this run: wait for it
		}
	}
	if next == in.self && len(r.InFlight) > 0 {
		return d // the leader goes alone
	}
	d.step = &failover.RollingStep{Generation: r.Generation, Kind: failover.StepBegin, Node: next, Incarnation: m.Incarnation}
	d.ask = append(d.ask, next)
	return d
}

// votersWhole reports whether the raft configuration has as many voters as
// the target for the members in service (see PlanVoters).
func (c *Controller) votersWhole(state *failover.Cluster) bool {
	servers, err := c.raft.Configuration()
	if err != nil {
		return false
	}
	voters, inService := 0, 0
	for _, s := range servers {
		if s.Voter {
			voters++
		}
	}
	for _, m := range state.Members {
		if m.CanHold() || m.Status == failover.StatusRestarting {
			inService++
		}
	}
	return voters >= targetVoters(c.cfg.Voters, inService)
}

func inFlight(r *failover.RollingRestart, id string) bool {
	for _, f := range r.InFlight {
		if f.Node == id {
			return true
		}
	}
	return false
}

// rollingOrder decides (purely) the order of a new rolling restart: every
// member in service, by ID, the leader (leaderID, a node ID) last so that
// leadership moves once. It refuses when a member is not in service: a
// rolling restart starts only from a whole cluster.
func rollingOrder(state *failover.Cluster, leaderID string) ([]string, error) {
	var order []string
	for _, id := range state.MemberIDs() {
		m := state.Members[id]
		switch {
		case m.Status == failover.StatusLeft:
		case !m.CanHold():
			return nil, fmt.Errorf("%w: %s is %s; a rolling restart starts only when every member is in service", ErrRestartRefused, id, m.Status)
		case id != leaderID:
			order = append(order, id)
		}
	}
	sort.Strings(order)
	if _, ok := state.Members[leaderID]; ok {
		order = append(order, leaderID)
	}
	if len(order) == 0 {
		return nil, fmt.Errorf("%w: no member to restart", ErrRestartRefused)
	}
	return order, nil
}

// StartRollingRestart starts a rolling restart of every member, at most
// maxUnavailable away at a time, and returns it as it began (this agent's
// copy of the state may not show it yet when it is not the leader). It is
// refused (ErrRestartRefused) while one runs or a member is not in
// service.
func (c *Controller) StartRollingRestart(ctx context.Context, maxUnavailable int) (*failover.RollingRestart, error) {
	if maxUnavailable < 1 {
		return nil, fmt.Errorf("max-unavailable must be at least 1, got %d", maxUnavailable)
	}
	state := c.MemberState()
	if !state.Bootstrapped {
		return nil, fmt.Errorf("%w: the cluster is not bootstrapped", ErrRestartRefused)
	}
	if state.Rolling.Running() {
		return nil, fmt.Errorf("%w: rolling restart %d is still running", ErrRestartRefused, state.Rolling.Generation)
	}
	leaderID := ""
	if raftID, _ := c.raft.Leader(); raftID != "" {
		for id, m := range state.Members {
			if m.RaftID == raftID {
				leaderID = id
			}
		}
	}
	order, err := rollingOrder(state, leaderID)
	if err != nil {
		return nil, err
	}
	cmd := failover.Command{Kind: failover.CmdRollingRestart, At: c.clock.Now().UnixNano(),
		Rolling: &failover.RollingRestart{Order: order, MaxUnavailable: maxUnavailable}}
	if _, err := c.Apply(ctx, cmd); err != nil {
		return nil, err
	}
	began := cmd.Rolling.Clone()
	began.State = failover.RollingRunning
	began.StartedAt = cmd.At
	if state.Rolling != nil {
		began.Generation = state.Rolling.Generation
	}
	began.Generation++
	return began, nil
}

// driveRollingRestart takes the leader's step of a running rolling
// restart: it records the decision and asks the members to restart.
func (c *Controller) driveRollingRestart(ctx context.Context) error {
	// Most rounds have no rolling restart: ask before copying the state.
	running := false
	c.raft.Read(func(cl *failover.Cluster) { running = cl.Rolling.Running() })
	if !running || c.restarter == nil {
		return nil
	}
	state := c.raft.Snapshot()
	r := state.Rolling
	if !r.Running() {
		return nil
	}
	in := rollingInputs{state: state, self: c.cfg.NodeID, ready: map[string]bool{}}
	for _, f := range r.InFlight {
		if m, ok := state.Members[f.Node]; ok && m.CanHold() && m.Incarnation > f.Incarnation {
			in.ready[f.Node] = c.backAndReady(ctx, state, m)
		}
	}
	d := nextRollingStep(in)
	if d.step != nil {
		if _, err := c.Apply(ctx, failover.Command{Kind: failover.CmdRollingStep, At: c.clock.Now().UnixNano(), Step: d.step}); err != nil {
			if errors.Is(err, failover.ErrRollingStale) {
				return nil // another leader's step got there first
			}
			return fmt.Errorf("rolling restart step %s %s: %w", d.step.Kind, d.step.Node, err)
		}
		c.recordRollingStep(r, d.step)
	}
	for _, id := range d.ask {
		m := state.Members[id]
		err := c.restarter.RequestRestart(ctx, m)
		switch {
		case err == nil:
		case errors.Is(err, ErrRestartRefused):
			step := &failover.RollingStep{Generation: r.Generation, Kind: failover.StepFail, Error: fmt.Sprintf("%s refused to restart: %v", id, err)}
			if _, aerr := c.Apply(ctx, failover.Command{Kind: failover.CmdRollingStep, At: c.clock.Now().UnixNano(), Step: step}); aerr != nil && !errors.Is(aerr, failover.ErrRollingStale) {
				return aerr
			}
			c.recordRollingStep(r, step)
			return nil
		default:
			// Unreachable for now: asked again next round.
			c.log.Warn("asking a member to restart", "member", id, "error", err)
		}
	}
	return nil
}

func (c *Controller) recordRollingStep(r *failover.RollingRestart, s *failover.RollingStep) {
	switch s.Kind {
	case failover.StepBegin:
		c.RecordEvent("rolling.begin", fmt.Sprintf("rolling restart %d: restarting %s (%d of %d)", r.Generation, s.Node, r.Next+1, len(r.Order)), nil)
	case failover.StepFinish:
		c.RecordEvent("rolling.back", fmt.Sprintf("rolling restart %d: %s is back (%d of %d done)", r.Generation, s.Node, len(r.Done)+1, len(r.Order)), nil)
	case failover.StepSkip:
		c.RecordEvent("rolling.skip", fmt.Sprintf("rolling restart %d: %s is no longer a member", r.Generation, s.Node), nil)
	case failover.StepFail:
		c.RecordEvent("rolling.failed", fmt.Sprintf("rolling restart %d stopped: %s", r.Generation, s.Error), nil)
		c.log.Warn("rolling restart stopped", "generation", r.Generation, "error", s.Error)
		return
	}
	c.log.Info("rolling restart", "generation", r.Generation, "step", s.Kind, "member", s.Node)
}

// backAndReady reports whether m, back from its restart, may count as done:
// the failure detector holds it healthy, its app is healthy, its raft
// server has caught up with the leader, it leads partitions again (or
// holds nothing that it could lead), and the voters are as many as the
// target again (a restarted voter comes back a non-voter and is promoted
// once stable: going on sooner would wear the voters down node by node).
func (c *Controller) backAndReady(ctx context.Context, state *failover.Cluster, m failover.Member) bool {
	if m.AppUnhealthy {
		return false
	}
	if h, ok := c.detector.Node(m.ID); ok && h.State != health.StateHealthy {
		return false
	}
	copies, primaries, _ := Holdings(state, m.ID)
	if copies > 0 && primaries == 0 {
		return false
	}
	if !c.votersWhole(state) {
		return false
	}
	if m.ID == c.cfg.NodeID {
		return true
	}
	st, err := c.peerStatus(ctx, m.RaftID, m.RaftAddr)
	if err != nil {
		return false
	}
	return IsCaughtUp(c.raft.Stats().CommitIndex, st.AppliedIndex, caughtUpSlack)
}
