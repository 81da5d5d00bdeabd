package control

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/gossip"
	"github.com/steward-dev/steward/raftctl"
)

// Voter promotion: the leader keeps the number of voters at its target
// (PlanVoters) by promoting caught-up, stable non-voters and demoting the
// voters it has too many of, and records every member's suffrage in the
// cluster state.

// caughtUpSlack is how many entries a non-voter may trail the leader's
// commit index and still count as caught up for promotion.
const caughtUpSlack = 64

// voterStableFor is how long a non-voter must be healthy and caught up
// before it is promoted (autopilot's server stabilisation time).
const voterStableFor = 2 * time.Second

// reconcileVoters gathers each server's health (gossip, the state, a ping
// of non-voters for their progress), plans voters and applies the plan.
func (c *Controller) reconcileVoters(ctx context.Context) error {
	servers, err := c.raft.Configuration()
	if err != nil {
		return err
	}
	gossipByRaftID := c.gossipByRaftID()
	// In service by the committed state, not by gossip's momentary view:
	// see ServerHealth.InService.
	state := c.MemberState()
	inService, restarting := map[string]bool{}, map[string]bool{}
	for _, m := range state.Members {
		if m.RaftID != "" && m.CanHold() {
			inService[m.RaftID] = true
		}
		if m.RaftID != "" && m.Status == failover.StatusRestarting {
			restarting[m.RaftID] = true
		}
	}
	var health []ServerHealth
	for _, s := range servers {
		h := ServerHealth{ID: s.ID, Voter: s.Voter, Leader: s.ID == c.cfg.RaftID, InService: inService[s.ID], Restarting: restarting[s.ID]}
		n, ok := gossipByRaftID[s.ID]
		h.Healthy = ok && n.State == gossip.StateAlive && !n.Meta.Leaving
		if s.ID == c.cfg.RaftID {
			h.Healthy = !c.leaving.Load() && !c.restarting.Load()
		}
		// A voter is caught up by definition (it takes part in every
		// commit); a non-voter only once its raft port says so, below.
		h.CaughtUp = h.Healthy && s.Voter
		h.StableFor = c.stableFor(s.ID, h.Healthy)
		health = append(health, h)
	}
	c.forgetStability(servers)
	// Ping only the non-voters a promotion could pick, and only when one
	// is due: pinging every non-voter every round cost the leader of an
	// idle 50-agent cluster 45 raft-port round trips a second.
	if candidates := PromotionCandidates(health, c.cfg.Voters, voterStableFor); len(candidates) > 0 {
		commit := c.raft.Stats().CommitIndex
		for i := range health {
			if !slices.Contains(candidates, health[i].ID) {
				continue
			}
			n := gossipByRaftID[health[i].ID]
			health[i].CaughtUp = c.peerCaughtUp(ctx, n, commit)
		}
	}
	promote, demote := PlanVoters(health, c.cfg.Voters, voterStableFor)
	for _, id := range promote {
		if err := c.raft.Promote(id); err != nil {
			return fmt.Errorf("promote %s: %w", id, err)
		}
		c.log.Info("promoted to voter", "raft_id", id)
	}
	for _, id := range demote {
		if err := c.raft.Demote(id); err != nil {
			return fmt.Errorf("demote %s: %w", id, err)
		}
		c.log.Info("demoted to non-voter", "raft_id", id)
	}
	if len(promote)+len(demote) > 0 {
		if servers, err = c.raft.Configuration(); err != nil {
			return err
		}
	}
	voter := map[string]bool{}
	for _, s := range servers {
		voter[s.ID] = s.Voter
	}
	state = c.MemberState()
	for _, id := range state.MemberIDs() {
		m := state.Members[id]
		if want := voter[m.RaftID]; m.Voter != want {
			if _, err := c.Apply(ctx, failover.Command{Kind: failover.CmdSetVoter, At: c.clock.Now().UnixNano(), Node: id, Voter: want}); err != nil {
				return err
			}
		}
	}
	return nil
}

// stableFor is how long a server has been healthy without interruption,
// on the controller's monotonic clock (0 when it is not healthy now); it
// is leader-local bookkeeping, reset when the server stops qualifying.
func (c *Controller) stableFor(raftID string, ok bool) time.Duration {
	c.stability.mu.Lock()
	defer c.stability.mu.Unlock()
	if c.stability.since == nil {
		c.stability.since = map[string]time.Duration{}
	}
	if !ok {
		delete(c.stability.since, raftID)
		return 0
	}
	now := c.clock.Elapsed()
	since, seen := c.stability.since[raftID]
	if !seen {
		since = now
		c.stability.since[raftID] = now
	}
	return now - since
}

// forgetStability drops the stability of servers no longer in the
// configuration: a server removed while failed (cut off, paused) must be
// stable for voterStableFor again after it is added back, not be promoted
// on the strength of the time before its failure.
func (c *Controller) forgetStability(servers []raftctl.Server) {
	inConfig := make(map[string]bool, len(servers))
	for _, s := range servers {
		inConfig[s.ID] = true
	}
	c.stability.mu.Lock()
	defer c.stability.mu.Unlock()
	for id := range c.stability.since {
		if !inConfig[id] {
			delete(c.stability.since, id)
		}
	}
}

// peerCaughtUp asks a non-voter, over its raft port, how far it has
// applied.
func (c *Controller) peerCaughtUp(ctx context.Context, n gossip.Node, commit uint64) bool {
	if n.Meta.RaftAddr == "" {
		return false
	}
	st, err := c.peerStatus(ctx, n.Meta.RaftID, n.Meta.RaftAddr)
	if err != nil {
		return false
	}
	return IsCaughtUp(commit, st.AppliedIndex, caughtUpSlack)
}
