package failover

import (
	"errors"
	"fmt"
	"strings"
)

// Planned restarts (agent restart): a member is marked StatusRestarting,
// with the promotions of its primaries in the same entry, and keeps its
// copies while it is away; it comes back under the same node ID
// (CmdRestartBack) or, past its grace, the leader marks it failed.

// ErrRestartRefused wraps the refusals of CmdRestartMember and
// CmdRollingRestart: another planned absence is under way, or the member
// is not in service. A refused command changed nothing.
var ErrRestartRefused = errors.New("restart refused")

// Restarting returns the IDs of the members away for a planned restart,
// sorted.
func (c *Cluster) Restarting() []string {
	var out []string
	for _, id := range c.MemberIDs() {
		if c.Members[id].Status == StatusRestarting {
			out = append(out, id)
		}
	}
	return out
}

// applyRestartMember marks cmd.Node restarting for cmd.RestartGrace and
// applies the promotions that go with it. It refuses a member that is not
// in service and, when cmd.MaxUnavailable members (at least 1) are already
// restarting, any other one. The same command applied again (a retry after
// a lost answer) only re-applies its actions, which are then stale.
func (c *Cluster) applyRestartMember(cmd Command) (Result, error) {
	m, ok := c.Members[cmd.Node]
	if !ok {
		return Result{}, fmt.Errorf("%w %q", ErrUnknownMember, cmd.Node)
	}
	if err := onlyPlannerActions(cmd); err != nil {
		return Result{}, err
	}
	if cmd.RestartGrace <= 0 {
		return Result{}, fmt.Errorf("failover: restart of %q without a grace period", cmd.Node)
	}
	if m.Status != StatusRestarting {
		if !m.CanHold() {
			return Result{}, fmt.Errorf("%w: %s is %s, not in service", ErrRestartRefused, cmd.Node, m.Status)
		}
		limit := cmd.MaxUnavailable
		if limit < 1 {
			limit = 1
		}
		if away := c.Restarting(); len(away) >= limit {
			return Result{}, fmt.Errorf("%w: %s already restarting, and at most %d planned absence(s) at a time are allowed (-max-unavailable)",
				ErrRestartRefused, strings.Join(away, ", "), limit)
		}
		m.Status = StatusRestarting
		m.StatusSince = cmd.At
		m.RestartGrace = cmd.RestartGrace
		c.Members[cmd.Node] = m
	}
	return c.applyActions(cmd.Actions, cmd.At), nil
}

// applyRestartBack takes a restarting member back: alive again, a new
// incarnation (so that its agent tells the app it rejoined and the app
// re-syncs what changed while it was away). A member that is not
// restarting is left alone: it is back already, or was marked failed past
// its grace and comes back as any failed member does.
func (c *Cluster) applyRestartBack(cmd Command) error {
	m, ok := c.Members[cmd.Node]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownMember, cmd.Node)
	}
	if m.Status != StatusRestarting {
		return nil
	}
	m.Status = StatusAlive
	m.StatusSince = cmd.At
	m.RestartGrace = 0
	m.Incarnation++
	c.Members[cmd.Node] = m
	return nil
}
