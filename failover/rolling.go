package failover

import (
	"errors"
	"fmt"
)

// Rolling restarts (agent rolling-restart): the leader restarts the
// members one after the other, each as a planned restart. What has been
// done is kept here, in raft, so that a new leader carries on where the
// old one stopped; the decisions (who next, whether the last one is back)
// are the leader's (control).

// RollingState is where a rolling restart stands.
type RollingState string

const (
	// RollingRunning: members are being restarted.
	RollingRunning RollingState = "running"
	// RollingDone: every member was restarted and came back.
	RollingDone RollingState = "done"
	// RollingFailed: it stopped at a failure (Error says which).
	RollingFailed RollingState = "failed"
)

// RollingRestart is one rolling restart.
type RollingRestart struct {
	// Generation numbers the rolling restarts of the cluster, from 1.
	// Steps name it and apply only to it.
	Generation uint64       `json:"generation"`
	State      RollingState `json:"state"`
	// Order is the node IDs to restart, in order; the leader at the start
	// comes last.
	Order []string `json:"order"`
	// MaxUnavailable is how many members may be away at once.
	MaxUnavailable int `json:"max_unavailable"`
	// Next is the index in Order of the first member not yet begun.
	Next int `json:"next"`
	// InFlight are the members asked to restart and not yet back.
	InFlight []RollingMember `json:"in_flight,omitempty"`
	// Done are the members restarted and back, in the order they came back.
	Done []string `json:"done,omitempty"`
	// Skipped are members of Order that were no longer in the cluster when
	// their turn came.
	Skipped []string `json:"skipped,omitempty"`
	// Error says why a failed rolling restart stopped.
	Error string `json:"error,omitempty"`
	// StartedAt and FinishedAt are the proposers' wall clocks in unix
	// nanoseconds, for display.
	StartedAt  int64 `json:"started_at"`
	FinishedAt int64 `json:"finished_at,omitempty"`
}

// RollingMember is a member asked to restart.
type RollingMember struct {
	Node string `json:"node"`
	// Incarnation is the member's incarnation when it was asked: it is
	// back once it is alive with a higher one.
	Incarnation uint64 `json:"incarnation"`
}

// Clone returns a deep copy (nil for nil).
func (r *RollingRestart) Clone() *RollingRestart {
	if r == nil {
		return nil
	}
	c := *r
	c.Order = append([]string(nil), r.Order...)
	c.InFlight = append([]RollingMember(nil), r.InFlight...)
	c.Done = append([]string(nil), r.Done...)
	c.Skipped = append([]string(nil), r.Skipped...)
	return &c
}

// Running reports whether r is a rolling restart under way.
func (r *RollingRestart) Running() bool { return r != nil && r.State == RollingRunning }

// RollingStepKind names a step of a rolling restart.
type RollingStepKind string

const (
	// StepBegin: Node, the next in Order, is asked to restart.
	StepBegin RollingStepKind = "begin"
	// StepFinish: Node, in flight, is back and ready.
	StepFinish RollingStepKind = "finish"
	// StepSkip: Node, the next in Order, is no longer a member.
	StepSkip RollingStepKind = "skip"
	// StepFail: the rolling restart stops; Error says why.
	StepFail RollingStepKind = "fail"
)

// RollingStep is CmdRollingStep's content.
type RollingStep struct {
	Generation  uint64          `json:"generation"`
	Kind        RollingStepKind `json:"kind"`
	Node        string          `json:"node,omitempty"`
	Incarnation uint64          `json:"incarnation,omitempty"`
	Error       string          `json:"error,omitempty"`
}

// ErrRollingStale is returned for a step of a rolling restart that is not
// the one running, or that no longer fits it (a deposed leader's step, or
// one applied twice): nothing changes.
var ErrRollingStale = errors.New("failover: rolling restart step does not apply")

// applyRollingRestart starts a new rolling restart over cmd.Rolling's Order
// and MaxUnavailable; it refuses while one is running.
func (c *Cluster) applyRollingRestart(cmd Command) error {
	in := cmd.Rolling
	if in == nil || len(in.Order) == 0 {
		return errors.New("failover: rolling restart without members")
	}
	if c.Rolling.Running() {
		return fmt.Errorf("%w: rolling restart %d is still running (%d of %d done)", ErrRestartRefused, c.Rolling.Generation, len(c.Rolling.Done), len(c.Rolling.Order))
	}
	seen := map[string]bool{}
	for _, id := range in.Order {
		if _, ok := c.Members[id]; !ok {
			return fmt.Errorf("%w %q", ErrUnknownMember, id)
		}
		if seen[id] {
			return fmt.Errorf("failover: rolling restart names %q twice", id)
		}
		seen[id] = true
	}
	r := &RollingRestart{State: RollingRunning, Order: append([]string(nil), in.Order...), MaxUnavailable: in.MaxUnavailable, StartedAt: cmd.At}
	if r.MaxUnavailable < 1 {
		r.MaxUnavailable = 1
	}
	if c.Rolling != nil {
		r.Generation = c.Rolling.Generation
	}
	r.Generation++
	c.Rolling = r
	return nil
}

// applyRollingStep applies one step to the running rolling restart.
func (c *Cluster) applyRollingStep(cmd Command) error {
	s := cmd.Step
	if s == nil {
		return errors.New("failover: rolling step without content")
	}
	r := c.Rolling
	if !r.Running() || r.Generation != s.Generation {
		return fmt.Errorf("%w: generation %d is not running", ErrRollingStale, s.Generation)
	}
	switch s.Kind {
	case StepBegin, StepSkip:
		if r.Next >= len(r.Order) || r.Order[r.Next] != s.Node {
			return fmt.Errorf("%w: %s is not next", ErrRollingStale, s.Node)
		}
		if s.Kind == StepBegin && len(r.InFlight) >= r.MaxUnavailable {
			return fmt.Errorf("%w: %d already in flight", ErrRollingStale, len(r.InFlight))
		}
		r = r.Clone()
		r.Next++
		if s.Kind == StepBegin {
			r.InFlight = append(r.InFlight, RollingMember{Node: s.Node, Incarnation: s.Incarnation})
		} else {
			r.Skipped = append(r.Skipped, s.Node)
		}
	case StepFinish:
		i := -1
		for j, m := range r.InFlight {
			if m.Node == s.Node {
				i = j
			}
		}
		if i < 0 {
			return fmt.Errorf("%w: %s is not in flight", ErrRollingStale, s.Node)
		}
		r = r.Clone()
		r.InFlight = append(r.InFlight[:i], r.InFlight[i+1:]...)
		r.Done = append(r.Done, s.Node)
	case StepFail:
		r = r.Clone()
		r.State = RollingFailed
		r.Error = s.Error
		r.FinishedAt = cmd.At
	default:
		return fmt.Errorf("failover: unknown rolling step %q", s.Kind)
	}
	if r.State == RollingRunning && r.Next >= len(r.Order) && len(r.InFlight) == 0 {
		r.State = RollingDone
		r.FinishedAt = cmd.At
	}
	c.Rolling = r
	return nil
}
