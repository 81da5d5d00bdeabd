package control

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/hooks"
)

// The app's holdings report (POST /v1/app/holdings, see hooks/holdings.go):
// at its start the app says which partitions it really holds, and the
// copies it had acknowledged and no longer has are lost: they are dropped
// from the holders through raft (failover.CmdCopiesLost), so that they are
// never promoted and are copied again from a live holder.

// holdingsRounds bounds how often a report re-plans drops that were stale
// (the partition moved on between the plan and its commit).
const holdingsRounds = 5

// LostCopyCandidates decides (purely) which partitions the app lost: those
// it acknowledged (and not as a copy under way) and does not hold now.
func LostCopyCandidates(acked map[int]hooks.Acked, held map[int]bool) []int {
	var out []int
	for p, ack := range acked {
		if !held[p] && !ack.Copying {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// CommitLostCopies drops, through raft, every copy the cluster gives this
// node among candidates (failover.PlanLostCopies), and waits until this
// agent's state shows the drops. It returns the partitions dropped, in
// order. Drops planned against a partition that moved on meanwhile are
// planned again, up to holdingsRounds times.
func (c *Controller) CommitLostCopies(ctx context.Context, candidates []int) ([]int, error) {
	var lost []int
	for round := 0; ; round++ {
		var actions []failover.Action
		c.raft.Read(func(cl *failover.Cluster) { actions = failover.PlanLostCopies(cl, c.cfg.NodeID, candidates) })
		if len(actions) == 0 {
			slices.Sort(lost)
			return lost, nil
		}
		if round == holdingsRounds {
			return nil, fmt.Errorf("the partitions kept moving on: %d drops still stale after %d rounds", len(actions), round)
		}
		res, err := c.Apply(ctx, failover.Command{Kind: failover.CmdCopiesLost, At: c.clock.Now().UnixNano(), Node: c.cfg.NodeID, Actions: actions})
		if err != nil {
			return nil, err
		}
		lost = append(lost, res.Changed...)
		c.RecordEvent("app.copies_lost", fmt.Sprintf("the app of %s lost %d copies: %d dropped, %d stale", c.cfg.NodeID, len(actions), res.Applied, res.Stale), actions)
		// Every planned partition has moved past the epoch it was planned
		// at, by this drop or by whatever made the drop stale.
		if err := c.waitState(ctx, func(cl *failover.Cluster) bool {
			for _, act := range actions {
				if cl.Partitions[act.Partition].Epoch <= act.Epoch {
					return false
				}
			}
			return true
		}); err != nil {
			return nil, err
		}
	}
}

// waitState waits until cond holds on this agent's copy of the state.
func (c *Controller) waitState(ctx context.Context, cond func(c *failover.Cluster) bool) error {
	changes, unsubscribe := c.raft.Subscribe()
	defer unsubscribe()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ok := false
		c.raft.Read(func(cl *failover.Cluster) { ok = cond(cl) })
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("this agent's state did not catch up: %w", ctx.Err())
		case <-changes:
		case <-tick.C:
		}
	}
}
