package control

import (
	"context"
	"fmt"

	"github.com/steward-dev/steward/failover"
)

// runSplits starts the automatic splits the apps' size reports call for:
// a partition of a resource with a target size whose primary reports it
// above its jittered threshold (failover.PlanSplits), as many as the limit
// on splits in flight leaves room for, one raft entry each. The primary's
// agent finishes each once its app has split the data.
func (c *Controller) runSplits(ctx context.Context) error {
	figs := c.load.Fresh(c.clock.Elapsed())
	if figs == nil {
		return nil
	}
	var plan []failover.SplitRequest
	c.raft.Read(func(cl *failover.Cluster) {
		if wantsSplits(cl) {
			plan = failover.PlanSplits(cl, failover.PrimarySizes(cl, figs))
		}
	})
	for _, s := range plan {
		// A split refused (the partition moved on since the plan) is
		// planned again next round, if still due; the other steps go on.
		if _, err := c.Apply(ctx, failover.Command{Kind: failover.CmdSplitPartition, At: c.clock.Now().UnixNano(), Split: &s}); err != nil {
			c.log.Warn("automatic split not started", "partition", s.Partition, "error", err)
			continue
		}
		c.RecordEvent("split.started", fmt.Sprintf("partition %d split: its primary reports it above its resource's target size", s.Partition), nil)
		c.log.Info("automatic split started", "partition", s.Partition)
	}
	return nil
}

// wantsSplits reports whether a resource of cl has a target size.
func wantsSplits(cl *failover.Cluster) bool {
	for _, r := range cl.ResourceList() {
		if r.TargetSize > 0 {
			return true
		}
	}
	return false
}
