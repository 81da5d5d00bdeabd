package control

import (
	"context"
	"errors"
	"fmt"

	"github.com/steward-dev/steward/failover"
)

// The operator's hands on the wheel: pins (agent move) and replacements
// (agent replace). Both are checked against this agent's copy of the state
// first, so that bad input gets its error without a raft round trip, and
// checked again where they apply (the state machine refuses what no longer
// fits, changing nothing).

// ErrRefused wraps the reasons an operator command is refused before it is
// proposed (bad input, or a state it does not fit); any other error of
// Move and Replace is raft's (no leader, timeout).
var ErrRefused = errors.New("control: refused")

// Move pins or unpins a partition (agent move P NODE [-primary], agent move
// P [NODE] -unpin).
func (c *Controller) Move(ctx context.Context, ch failover.PinChange) error {
	var err error
	c.raft.Read(func(cl *failover.Cluster) { err = cl.CheckPin(ch) })
	if err != nil {
		return fmt.Errorf("%w: %w", ErrRefused, err)
	}
	if _, err := c.Apply(ctx, failover.Command{Kind: failover.CmdSetPin, At: c.clock.Now().UnixNano(), Pin: &ch}); err != nil {
		return err
	}
	what := fmt.Sprintf("partition %d pinned on %s", ch.Partition, ch.Node)
	switch {
	case ch.Unpin && ch.Node == "":
		what = fmt.Sprintf("partition %d unpinned", ch.Partition)
	case ch.Unpin:
		what = fmt.Sprintf("partition %d unpinned from %s", ch.Partition, ch.Node)
	case ch.Primary:
		what += " as primary"
	}
	c.RecordEvent("operator.move", what, nil)
	c.log.Info("operator move", "what", what)
	return nil
}

// Replace starts the replacement of old by replacement (agent replace OLD
// NEW), or calls it off (replacement "").
func (c *Controller) Replace(ctx context.Context, old, replacement string) error {
	var err error
	c.raft.Read(func(cl *failover.Cluster) { err = cl.CheckReplace(old, replacement) })
	if err != nil {
		return fmt.Errorf("%w: %w", ErrRefused, err)
	}
	if _, err := c.Apply(ctx, failover.Command{Kind: failover.CmdReplaceMember, At: c.clock.Now().UnixNano(), Node: old, Replacement: replacement}); err != nil {
		return err
	}
	what := fmt.Sprintf("%s is replaced by %s", old, replacement)
	if replacement == "" {
		what = fmt.Sprintf("the replacement of %s is called off", old)
	}
	c.RecordEvent("operator.replace", what, nil)
	c.log.Info("operator replace", "what", what)
	return nil
}

// finishReplacements, on the leader, ends the replacements whose old node
// holds nothing any more but is not alive to leave by itself (an alive one
// sees its replacement done and leaves, see the agent's watchReplacement):
// it is marked left, so that it leaves raft and is forgotten in time.
func (c *Controller) finishReplacements(ctx context.Context) error {
	var done []string
	c.raft.Read(func(cl *failover.Cluster) {
		for _, id := range cl.Replaced() {
			if st := cl.Members[id].Status; st != failover.StatusAlive && st != failover.StatusLeaving {
				done = append(done, id)
			}
		}
	})
	for _, id := range done {
		if _, err := c.Apply(ctx, failover.Command{Kind: failover.CmdSetStatus, At: c.clock.Now().UnixNano(), Node: id, Status: failover.StatusLeft}); err != nil {
			return fmt.Errorf("mark %s left after its replacement: %w", id, err)
		}
		c.RecordEvent("operator.replace", id+" holds nothing after its replacement and is not alive: marked left", nil)
	}
	return nil
}
