package control

import (
	"context"

	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/gossip"
)

// Reconcile does one round of the leader's work: bootstrap the table,
// register members seen in gossip, take members back from planned
// restarts, mark failures (and restarts that overstay their grace), forget
// members gone for good, end replacements whose old node is gone, keep the
// raft configuration in line with the members, keep the voter count at its
// target, apply one round of the planner, start the automatic splits the
// apps' size reports call for and take the next step of a
// rolling restart. Each step
// is idempotent, so that a new leader simply finishes what its predecessor
// left half-done; the agent calls it on every change and every second
// while it leads.
func (c *Controller) Reconcile(ctx context.Context) error {
	state := c.MemberState()
	if !state.Bootstrapped {
		return c.bootstrapTable(ctx)
	}
	if err := c.registerMembers(ctx, state); err != nil {
		return err
	}
	if err := c.takeBackRestarted(ctx); err != nil {
		return err
	}
	if err := c.markFailures(ctx); err != nil {
		return err
	}
	if err := c.expireRestarts(ctx); err != nil {
		return err
	}
	if err := c.reapMembers(ctx); err != nil {
		return err
	}
	if err := c.finishReplacements(ctx); err != nil {
		return err
	}
	if err := c.reconcileRaftConfig(c.MemberState()); err != nil {
		return err
	}
	if err := c.reconcileVoters(ctx); err != nil {
		return err
	}
	if err := c.runPlanner(ctx); err != nil {
		return err
	}
	if err := c.runSplits(ctx); err != nil {
		return err
	}
	return c.driveRollingRestart(ctx)
}

// gossipByRaftID is gossip's nodes by the raft ID they publish.
func (c *Controller) gossipByRaftID() map[string]gossip.Node {
	out := map[string]gossip.Node{}
	for _, n := range c.members.Members() {
		out[n.Meta.RaftID] = n
	}
	return out
}

// memberFromGossip is the cluster model's view of a gossip node.
func memberFromGossip(n gossip.Node) failover.Member {
	return failover.Member{
		ID:         n.ID,
		RaftID:     n.Meta.RaftID,
		GossipAddr: n.Addr,
		RaftAddr:   n.Meta.RaftAddr,
		APIAddr:    n.Meta.APIAddr,
		AppAddr:    n.Meta.AppAddr,
		Zone:       n.Meta.Zone,
		Weight:     n.Meta.Weight,
	}
}
