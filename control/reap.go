package control

import (
	"context"
	"fmt"
	"time"

	"github.com/steward-dev/steward/failover"
)

// This file forgets members that are gone for good: automatically, once
// failed or departed for longer than -reap-after, and on an operator's
// word (agent force-leave). Without it a cluster under churn (nodes dying
// and replaced under new IDs) accumulates failed members forever: they
// crowd the member list, and the "member failed" alert never resolves.
//
// Forgetting is failover.CmdForgetMember: a member that holds nothing is
// removed from the state at once (then its raft server is stale and the
// leader removes it); one that still holds copies is marked left and
// Forget, its copies are re-created elsewhere at once (a left holder is
// gone for the planner, whatever the replace delay), its raft server is
// removed as a departed one's, and the leader removes the member once it
// holds nothing.

// forgetting is one member the leader forgets now, and why.
type forgetting struct {
	node string
	why  string
}

// membersToForget decides which members to forget now; it is pure, with
// time given as ages. inStatus is how long each member has had its status,
// on the leader's monotonic clock; involved marks the members that still
// hold a copy or take part in a copy in flight; self is never forgotten.
// A member marked Forget is forgotten once it is involved in nothing; a
// failed or departed member once its status is reapAfter old, unless an
// operator switched maintenance on (automatic removals paused).
func membersToForget(state *failover.Cluster, inStatus map[string]time.Duration, involved map[string]bool, reapAfter time.Duration, self string) []forgetting {
	var out []forgetting
	for _, id := range state.MemberIDs() {
		m := state.Members[id]
		if id == self {
			continue
		}
		switch {
		case m.Forget:
			if !involved[id] {
				out = append(out, forgetting{id, "its copies are re-created elsewhere"})
			}
		case state.Maintenance || reapAfter <= 0:
		case m.Status == failover.StatusFailed || m.Status == failover.StatusLeft:
			if age := inStatus[id]; age >= reapAfter {
				out = append(out, forgetting{id, fmt.Sprintf("%s for %s, longer than -reap-after %s", m.Status, age.Round(time.Second), reapAfter)})
			}
		}
	}
	return out
}

// reapMembers is the leader's reaper, one round of it per reconcile.
func (c *Controller) reapMembers(ctx context.Context) error {
	state := c.MemberState()
	inStatus := c.ages.ObserveMembers(state, c.clock.Elapsed())
	var candidates []string
	for id, m := range state.Members {
		if m.Forget || m.Status == failover.StatusFailed || m.Status == failover.StatusLeft {
			candidates = append(candidates, id)
		}
	}
	if len(candidates) == 0 {
		return nil
	}
	for _, f := range membersToForget(state, inStatus, c.involvedInPartitions(candidates), c.cfg.ReapAfter, c.cfg.NodeID) {
		if _, err := c.ForgetMember(ctx, f.node, f.why); err != nil {
			return fmt.Errorf("forget %s: %w", f.node, err)
		}
	}
	return nil
}

// ForgetOutcome is what forgetting one member did (the answer of POST
// /v1/members/{id}/force-leave).
type ForgetOutcome struct {
	Node string `json:"node"`
	// Forgotten: the member is no longer in the cluster state. Otherwise it
	// is left and marked to be forgotten once CopiesRemaining are
	// re-created elsewhere.
	Forgotten       bool `json:"forgotten"`
	CopiesRemaining int  `json:"copies_remaining"`
}

// ForgetMember commits failover.CmdForgetMember for id, with the
// promotions its primaries need; why is for the log and the events. The
// reaper calls it, and the agent for agent force-leave.
func (c *Controller) ForgetMember(ctx context.Context, id, why string) (ForgetOutcome, error) {
	state := c.raft.Snapshot()
	m, ok := state.Members[id]
	if !ok {
		return ForgetOutcome{Node: id, Forgotten: true}, nil
	}
	copies, _, sourcing := Holdings(state, id)
	out := ForgetOutcome{Node: id, Forgotten: copies == 0 && sourcing == 0, CopiesRemaining: copies}
	actions := failover.PlanStatus(state, id, failover.StatusLeft, c.planSeed())
	if _, err := c.Apply(ctx, failover.Command{Kind: failover.CmdForgetMember, At: c.clock.Now().UnixNano(), Node: id, Actions: actions}); err != nil {
		return out, err
	}
	if out.Forgotten {
		c.log.Warn("member forgotten", "member", id, "was", m.Status, "why", why)
		c.RecordEvent("member.forgotten", fmt.Sprintf("%s forgotten: %s", id, why), nil)
	} else {
		c.log.Warn("member marked left, to be forgotten once its copies are re-created", "member", id, "was", m.Status, "copies", copies, "why", why)
		c.RecordEvent("member.forgetting", fmt.Sprintf("%s marked left, %d copies to re-create: %s", id, copies, why), actions)
	}
	return out, nil
}
