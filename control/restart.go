package control

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/gossip"
	"github.com/steward-dev/steward/health"
	"github.com/steward-dev/steward/raftctl"
)

// Planned restarts, the control plane's part: the node's own steps (mark
// itself restarting with its promotions, wait to be demoted), and the
// leader's (demote restarting voters, see PlanVoters; take a member back
// when its new process shows up; mark failed one that overstays its
// grace).
//
// The grace is measured on the leader's monotonic clock from when this
// agent first saw the member restarting (AgeTracker), never from the
// wall-clock stamp the state carries. Every agent times every status it
// applies, so a follower that becomes leader goes on with the time it
// watched; one that started after the restart began counts from its first
// look, later than the real start: a new leader lets a restart overstay,
// never cuts it short.

// ErrRestartRefused wraps the refusals of a restart: another planned
// absence is under way, the member is not in service, or without it the
// cluster would lose its quorum. A refused restart changed nothing.
var ErrRestartRefused = failover.ErrRestartRefused

// restartSafety decides (purely) whether node may go away for a restart:
// as for a leave, it refuses when node is a voter and fewer of the other
// voters are alive than a quorum of the configuration without it. Unlike
// a leave it does not refuse for the last copy of a partition: the copy
// stays where it is and is back with the node.
func restartSafety(state *failover.Cluster, servers []raftctl.Server, nodes []gossip.Node, node, raftID string) error {
	m, ok := state.Members[node]
	if !ok || !state.Bootstrapped {
		return fmt.Errorf("%w: %s is not a member of a bootstrapped cluster", ErrRestartRefused, node)
	}
	if !m.CanHold() && m.Status != failover.StatusRestarting {
		return fmt.Errorf("%w: %s is %s", ErrRestartRefused, node, m.Status)
	}
	if aliveOthers, others, ok := quorumWithout(servers, nodes, raftID); !ok {
		return fmt.Errorf("%w: %d of the other %d voters are alive; without this node the cluster would lose its quorum", ErrRestartRefused, aliveOthers, others)
	}
	return nil
}

// CheckRestartSafe refuses (ErrRestartRefused) a restart of this agent that
// would lose the quorum; state is the cluster state to judge.
func (c *Controller) CheckRestartSafe(state *failover.Cluster) error {
	servers, err := c.raft.Configuration()
	if err != nil {
		return err
	}
	return restartSafety(state, servers, c.members.Members(), c.cfg.NodeID, c.cfg.RaftID)
}

// SetRestarting tells the controller that this agent is going away for a
// restart (true: it no longer counts as a healthy server, and does not
// announce a return) or that the restart was refused (false).
func (c *Controller) SetRestarting(on bool) { c.restarting.Store(on) }

// Restarting reports whether this agent is going away for a restart.
func (c *Controller) Restarting() bool { return c.restarting.Load() }

// MarkOwnRestart marks this agent's member restarting for grace through
// raft, with the promotions of its primaries in the same entry; the state
// machine refuses it (ErrRestartRefused) when maxUnavailable members are
// away already. It retries while there is no leader, until ctx ends, and
// returns how many primaries were handed over.
func (c *Controller) MarkOwnRestart(ctx context.Context, grace time.Duration, maxUnavailable int) (int, error) {
	state := c.raft.Snapshot()
	actions := failover.PlanStatus(state, c.cfg.NodeID, failover.StatusRestarting, c.planSeed())
	res, err := c.applyRetry(ctx, failover.Command{Kind: failover.CmdRestartMember, At: c.clock.Now().UnixNano(), Node: c.cfg.NodeID,
		RestartGrace: int64(grace), MaxUnavailable: maxUnavailable, Actions: actions})
	return res.Applied, err
}

// IsVoter reports whether this agent's raft server is a voter (false also
// when raft cannot say).
func (c *Controller) IsVoter() bool {
	servers, err := c.raft.Configuration()
	if err != nil {
		return false
	}
	for _, s := range servers {
		if s.ID == c.cfg.RaftID {
			return s.Voter
		}
	}
	return false
}

// expiredRestarts decides (purely) which restarting members have been away
// longer than their grace: inStatus is how long each member has had its
// status, on this agent's monotonic clock.
func expiredRestarts(state *failover.Cluster, inStatus map[string]time.Duration) []string {
	var out []string
	for _, id := range state.MemberIDs() {
		m := state.Members[id]
		if m.Status == failover.StatusRestarting && inStatus[id] > time.Duration(m.RestartGrace) {
			out = append(out, id)
		}
	}
	return out
}

// expireRestarts marks failed the members away longer than their grace:
// from then on they are failed members like any other (the replace delay,
// then their copies re-created; a rejoin if they come back).
func (c *Controller) expireRestarts(ctx context.Context) error {
	state := c.MemberState()
	inStatus := c.ages.ObserveMembers(state, c.clock.Elapsed())
	expired := expiredRestarts(state, inStatus)
	if len(expired) == 0 {
		return nil
	}
	full := c.raft.Snapshot()
	for _, id := range expired {
		actions := failover.PlanFailure(full, id, c.planSeed())
		if _, err := c.Apply(ctx, failover.Command{Kind: failover.CmdSetStatus, At: c.clock.Now().UnixNano(), Node: id, Status: failover.StatusFailed, Actions: actions}); err != nil {
			return fmt.Errorf("mark %s failed after its restart grace: %w", id, err)
		}
		grace := time.Duration(state.Members[id].RestartGrace)
		c.obs.MarkedFailed()
		c.RecordEvent("member.restart_expired", fmt.Sprintf("%s not back within its restart grace of %s: marked failed", id, grace), actions)
		c.log.Warn("restarting member not back in time: marked failed", "member", id, "grace", grace, "away", inStatus[id].Round(time.Millisecond))
	}
	return nil
}

// returnedFromRestart decides (purely) which restarting members are back:
// gossip shows them alive with a new process that announces its return
// (gossip.Meta.Returning: the process that went away never sets it), and
// the failure detector no longer holds them down (it watched the old
// process die). The app health the new process announces with its return
// (not healthy until its app has caught up) must be in the state first,
// so that the planner never sees the member back with an app it takes
// for ready: a member whose registered app health differs from its
// gossip is taken back in a later round, after registerMembers.
func returnedFromRestart(state *failover.Cluster, nodes []gossip.Node, detector map[string]health.State) []string {
	var out []string
	for _, n := range nodes {
		m, ok := state.Members[n.ID]
		if !ok || m.Status != failover.StatusRestarting || n.State != gossip.StateAlive || !n.Meta.Returning {
			continue
		}
		if m.AppUnhealthy != n.Meta.AppUnhealthy {
			continue
		}
		if st, ok := detector[n.ID]; ok && st != health.StateHealthy {
			continue
		}
		out = append(out, n.ID)
	}
	return out
}

// takeBackRestarted applies CmdRestartBack for the members that are back,
// judged on the state as it is now (with this round's registrations).
func (c *Controller) takeBackRestarted(ctx context.Context) error {
	state := c.MemberState()
	nodes := c.members.Members()
	for _, id := range returnedFromRestart(state, nodes, c.detectorStates(nodes)) {
		if _, err := c.Apply(ctx, failover.Command{Kind: failover.CmdRestartBack, At: c.clock.Now().UnixNano(), Node: id}); err != nil {
			return fmt.Errorf("take %s back after its restart: %w", id, err)
		}
		c.RecordEvent("member.restart_back", fmt.Sprintf("%s is back from its restart", id), nil)
		c.log.Info("member back from its restart", "member", id)
	}
	return nil
}

// IsRestartRefused reports whether err is a refusal of a restart (the
// caller answers 409 Conflict).
func IsRestartRefused(err error) bool { return errors.Is(err, ErrRestartRefused) }
