package control

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/health"
)

// Failure marking: the leader's level-triggered reaction to the failure
// detector. A member the cluster counts alive that the detector holds
// failed is marked failed, in one raft entry with the promotions of its
// partitions, unless automatic removals are frozen (freeze.go): too many
// members in trouble at once, or maintenance.

// freezeState is the freeze as the last round saw it, for status and
// metrics.
type freezeState struct {
	mu     sync.Mutex
	reason string // "" when not frozen
	// atOnce is the number of failures the last round counted at once.
	atOnce atomic.Int64
}

// FreezeReason says why automatic removals are frozen ("" when they are
// not), as this agent's last round as leader saw it.
func (c *Controller) FreezeReason() string {
	c.freeze.mu.Lock()
	defer c.freeze.mu.Unlock()
	return c.freeze.reason
}

// FailuresAtOnce is how many failures the freeze counted in this agent's
// last round as leader (FreezeCounts).
func (c *Controller) FailuresAtOnce() int { return int(c.freeze.atOnce.Load()) }

// setFreeze records the freeze, logging changes.
func (c *Controller) setFreeze(frozen bool, reason string) {
	c.freeze.mu.Lock()
	changed := c.freeze.reason != reason
	c.freeze.reason = reason
	c.freeze.mu.Unlock()
	if !changed {
		return
	}
	if frozen {
		c.log.Warn("automatic removals frozen", "reason", reason)
	} else {
		c.log.Info("automatic removals resumed")
	}
	c.obs.Frozen(frozen)
}

// failureVerdicts decides (purely) which members the state still counts
// alive the detector holds in trouble: troubled counts those it holds
// suspect or failed, newlyFailed lists those it holds failed, to mark.
// detector is its view of the nodes it knows; self is never marked.
func failureVerdicts(state *failover.Cluster, detector map[string]health.State, self string) (newlyFailed []string, troubled int) {
	for _, id := range state.MemberIDs() {
		m := state.Members[id]
		if id == self || (m.Status != failover.StatusAlive && m.Status != failover.StatusSuspect) {
			continue
		}
		st, ok := detector[id]
		if !ok || st == health.StateHealthy {
			continue
		}
		// Suspects count towards the freeze too: when several nodes go
		// at once, the first verdict must not be acted on while the
		// others are still being confirmed.
		troubled++
		if st == health.StateFailed {
			newlyFailed = append(newlyFailed, id)
		}
	}
	return newlyFailed, troubled
}

// memberDetectorStates is the detector's view of the state's members.
func (c *Controller) memberDetectorStates(state *failover.Cluster) map[string]health.State {
	out := make(map[string]health.State, len(state.Members))
	for id := range state.Members {
		if h, ok := c.detector.Node(id); ok {
			out[id] = h.State
		}
	}
	return out
}

// markFailures marks failed the members the detector holds failed, unless
// removals are frozen.
func (c *Controller) markFailures(ctx context.Context) error {
	state := c.MemberState()
	newlyFailed, troubled := failureVerdicts(state, c.memberDetectorStates(state), c.cfg.NodeID)
	total, failed := c.freezeCounts(state, troubled)
	c.freeze.atOnce.Store(int64(failed))
	if len(newlyFailed) == 0 {
		c.setFreeze(false, "")
		return nil
	}
	if frozen, reason := FreezeDecision(total, failed, c.cfg.MaxFailed, state.Maintenance); frozen {
		c.setFreeze(true, reason)
		return nil
	}
	c.setFreeze(false, "")
	now := c.clock.Now().UnixNano()
	full := c.raft.Snapshot() // the promotions need the partition table
	for _, id := range newlyFailed {
		actions := failover.PlanFailure(full, id, c.planSeed())
		res, err := c.Apply(ctx, failover.Command{Kind: failover.CmdSetStatus, At: now, Node: id, Status: failover.StatusFailed, Actions: actions})
		if err != nil {
			return fmt.Errorf("mark %s failed: %w", id, err)
		}
		c.obs.MarkedFailed()
		c.RecordEvent("member.failed", fmt.Sprintf("%s failed; %d primaries promoted", id, res.Applied), actions)
		c.log.Warn("member failed", "member", id, "promotions", res.Applied, "stale", res.Stale)
		full = c.raft.Snapshot()
	}
	return nil
}

// freezeCounts gathers FreezeCounts' inputs: failures already marked
// count only while they are recent, or not handled yet, their age measured
// on this agent's monotonic clock.
func (c *Controller) freezeCounts(state *failover.Cluster, troubled int) (total, failed int) {
	inStatus := c.ages.ObserveMembers(state, c.clock.Elapsed())
	present := 0
	var failedIDs []string
	for _, id := range state.MemberIDs() {
		switch state.Members[id].Status {
		case failover.StatusLeft:
		case failover.StatusFailed:
			failedIDs = append(failedIDs, id)
		default:
			present++
		}
	}
	var marked []MarkedFailure
	if len(failedIDs) > 0 {
		busy := c.involvedInPartitions(failedIDs)
		inConfig, configKnown := c.raftServerIDs()
		for _, id := range failedIDs {
			handled := configKnown && !busy[id] && !inConfig[state.Members[id].RaftID]
			marked = append(marked, MarkedFailure{FailedFor: inStatus[id], Handled: handled})
		}
	}
	return FreezeCounts(present, troubled, marked, c.freezeWindows())
}

// freezeWindows are the freeze's windows for this agent's settings
// (FreezeWindowsFor).
func (c *Controller) freezeWindows() FreezeWindows {
	return FreezeWindowsFor(c.cfg.ProbeInterval, c.cfg.ReplaceDelay, c.cfg.MigrationTimeout)
}

// involvedInPartitions reports which of ids hold a copy of a partition, or
// are the source or target of a copy in flight.
func (c *Controller) involvedInPartitions(ids []string) map[string]bool {
	involved := c.involved.nodes(c.raft.StateIndex(), c.raft.Read)
	out := map[string]bool{}
	for _, id := range ids {
		if involved[id] {
			out[id] = true
		}
	}
	return out
}

// raftServerIDs returns the raft server IDs of the configuration, and
// false when raft cannot say.
func (c *Controller) raftServerIDs() (map[string]bool, bool) {
	servers, err := c.raft.Configuration()
	if err != nil {
		return nil, false
	}
	out := make(map[string]bool, len(servers))
	for _, s := range servers {
		out[s.ID] = true
	}
	return out, true
}

// detectorHoldsFailed reports whether the detector holds member id failed
// (or held down after flapping).
func (c *Controller) detectorHoldsFailed(id string) bool {
	h, ok := c.detector.Node(id)
	return ok && (h.State == health.StateFailed || h.State == health.StateHeldDown)
}

// detectorFailedFor is how long the detector's view of id has been what it
// is (for ordering removals only).
func (c *Controller) detectorFailedFor(id string) time.Duration {
	h, ok := c.detector.Node(id)
	if !ok || h.LastChange.IsZero() {
		return 0
	}
	return max(c.clock.Now().Sub(h.LastChange), 0)
}
