package control

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/gossip"
	"github.com/steward-dev/steward/raftctl"
)

// The control plane's part of a graceful leave (the agent runs the steps
// and tells gossip): the safety check, the status changes through raft,
// the test that draining is over, and the hand-over of leadership.

// ErrLeaveRefused wraps refusals that a forced leave overrides: leaving
// would lose the quorum or the last copy of a partition. A refused leave
// changed nothing.
var ErrLeaveRefused = errors.New("leave refused")

// leaveSafety decides (purely) whether node may leave: it refuses when
// node holds copies and no other member can hold any (they would be the
// last), or when node is a voter and fewer of the other voters are alive
// than a quorum of the configuration without it. state is the cluster
// state, servers the raft configuration, nodes what gossip shows; raftID
// is node's raft server ID.
func leaveSafety(state *failover.Cluster, servers []raftctl.Server, nodes []gossip.Node, node, raftID string) error {
	others := 0
	for id, m := range state.Members {
		if id != node && m.CanHold() {
			others++
		}
	}
	if copies, _, _ := Holdings(state, node); copies > 0 && others == 0 {
		return fmt.Errorf("%w: this is the last node holding data (%d partitions would lose their last copy); use -force to leave anyway", ErrLeaveRefused, copies)
	}
	if aliveOthers, others, ok := quorumWithout(servers, nodes, raftID); !ok {
		return fmt.Errorf("%w: %d of the other %d voters are alive; without this node the cluster would lose its quorum; use -force to leave anyway", ErrLeaveRefused, aliveOthers, others)
	}
	return nil
}

// quorumWithout decides (purely) whether the voters of servers other than
// raftID that gossip (nodes) shows alive make a quorum of the
// configuration without raftID; ok is also true when raftID is no voter or
// the only one. aliveOthers and others are the counts, for the refusal.
func quorumWithout(servers []raftctl.Server, nodes []gossip.Node, raftID string) (aliveOthers, others int, ok bool) {
	alive := map[string]bool{}
	for _, n := range nodes {
		if n.State == gossip.StateAlive && n.Meta.RaftID != "" {
			alive[n.Meta.RaftID] = true
		}
	}
	voters := 0
	selfVoter := false
	for _, s := range servers {
		if !s.Voter {
			continue
		}
		voters++
		switch {
		case s.ID == raftID:
			selfVoter = true
		case alive[s.ID]:
			aliveOthers++
		}
	}
	return aliveOthers, voters - 1, !selfVoter || voters <= 1 || aliveOthers >= Quorum(voters-1)
}

// CheckLeaveSafe refuses (ErrLeaveRefused) a leave of this agent that
// would lose the last copy of a partition or the quorum; state is the
// cluster state to judge.
func (c *Controller) CheckLeaveSafe(state *failover.Cluster) error {
	servers, err := c.raft.Configuration()
	if err != nil {
		return err
	}
	return leaveSafety(state, servers, c.members.Members(), c.cfg.NodeID, c.cfg.RaftID)
}

// Holdings counts the copies and primaries node holds and the migrations
// that copy from or to it.
func Holdings(c *failover.Cluster, node string) (copies, primaries, sourcing int) {
	for _, p := range c.Partitions {
		if p.Primary == node {
			primaries++
		}
		if p.Holds(node) {
			copies++
		}
		for _, m := range p.Migrations {
			if m.Source == node || m.Target == node {
				sourcing++
			}
		}
	}
	return copies, primaries, sourcing
}

// SetOwnStatus marks this agent's member leaving or left through raft,
// with the promotions of its primaries in the same entry, retrying while
// there is no leader (an election during the leave) until ctx ends. It
// returns how many actions the entry carried.
func (c *Controller) SetOwnStatus(ctx context.Context, status failover.MemberStatus) (int, error) {
	state := c.raft.Snapshot()
	actions := failover.PlanStatus(state, c.cfg.NodeID, status, c.planSeed())
	_, err := c.applyRetry(ctx, failover.Command{Kind: failover.CmdSetStatus, At: c.clock.Now().UnixNano(), Node: c.cfg.NodeID, Status: status, Actions: actions})
	return len(actions), err
}

// NothingToPlanFor reports whether the planner, on state, has nothing to
// do: a leaving node that still holds copies then has no place for them.
func (c *Controller) NothingToPlanFor(state *failover.Cluster) bool {
	return len(failover.Plan(c.PlanInput(state))) == 0
}

// InConfiguration reports whether this agent's raft server is still in
// the configuration (false also when raft cannot say).
func (c *Controller) InConfiguration() bool {
	servers, err := c.raft.Configuration()
	if err != nil {
		return true
	}
	for _, s := range servers {
		if s.ID == c.cfg.RaftID {
			return true
		}
	}
	return false
}

// handOverPollEvery is how often the hand-over looks for the new leader.
const handOverPollEvery = 100 * time.Millisecond

// HandOverLeadership transfers leadership away from this agent, first
// promoting another server if this agent is the only voter, and waits
// until another server leads or ctx ends.
func (c *Controller) HandOverLeadership(ctx context.Context) error {
	servers, err := c.raft.Configuration()
	if err != nil {
		return err
	}
	otherVoter := false
	for _, s := range servers {
		otherVoter = otherVoter || (s.Voter && s.ID != c.cfg.RaftID)
	}
	if !otherVoter {
		for _, s := range servers {
			if s.ID == c.cfg.RaftID {
				continue
			}
			if err := c.raft.Promote(s.ID); err != nil {
				return fmt.Errorf("promote %s before handing over: %w", s.ID, err)
			}
			c.log.Info("promoted a voter to hand leadership to", "raft_id", s.ID)
			break
		}
	}
	if err := c.raft.TransferLeadership(); err != nil {
		return err
	}
	for ctx.Err() == nil {
		if id, _ := c.raft.Leader(); id != "" && id != c.cfg.RaftID {
			return nil
		}
		sleepCtx(ctx, handOverPollEvery)
	}
	return ctx.Err()
}

// applyRetry applies cmd, retrying while there is no leader (an election
// during the leave) until ctx ends.
func (c *Controller) applyRetry(ctx context.Context, cmd failover.Command) (failover.Result, error) {
	for {
		res, err := c.Apply(ctx, cmd)
		if err == nil || ctx.Err() != nil {
			return res, err
		}
		if !errors.Is(err, raftctl.ErrNoLeader) && !errors.Is(err, raftctl.ErrNotLeader) && !isTransient(err) {
			return res, err
		}
		if !sleepCtx(ctx, handOverPollEvery) {
			return res, err
		}
	}
}

// isTransient reports errors worth retrying: the leader changed or could
// not be reached.
func isTransient(err error) bool {
	var netErr interface{ Timeout() bool }
	return errors.As(err, &netErr) || errors.Is(err, context.DeadlineExceeded) ||
		containsAny(err.Error(), "not the leader", "not leader", "forward to leader", "leadership lost", "connection refused")
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// sleepCtx waits d or until ctx ends; false if ctx ended.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
