package control

import (
	"context"
	"fmt"

	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/gossip"
	"github.com/steward-dev/steward/health"
)

// Member registration: agents seen alive in gossip are added to the
// cluster state, those whose addresses, raft ID or app health changed are
// updated, and a failed or departed member that is alive again is taken
// back (a rejoin) once the failure detector no longer holds it down.

// registrationKind says why a member is (re)registered.
type registrationKind string

const (
	registerNew    registrationKind = "new"
	registerRejoin registrationKind = "rejoin"
	registerUpdate registrationKind = "update"
)

// registration is one change to a member's registration.
type registration struct {
	// kind is "" when only the app health changes.
	kind registrationKind
	// member is the registration the state should hold (kind != "").
	member failover.Member
	// was is the member's status before a rejoin.
	was failover.MemberStatus
	// appHealthChanged: the member's app health is now appUnhealthy.
	appHealthChanged bool
	appUnhealthy     bool
}

// registrations decides (purely) what to register, for the members gossip
// shows against the state. detector is the failure detector's view of the
// nodes it knows; self is this agent's node ID, which the detector does
// not watch. unknown are the failed or departed members alive in gossip
// that the detector never heard of: they are not taken back until its
// probes have answered for them (the caller makes it probe them).
func registrations(state *failover.Cluster, nodes []gossip.Node, detector map[string]health.State, self string) (out []registration, unknown []string) {
	for _, n := range nodes {
		if n.State != gossip.StateAlive || n.Meta.RaftID == "" || n.Meta.Leaving {
			continue
		}
		want := memberFromGossip(n)
		cur, known := state.Members[n.ID]
		away := known && (cur.Status == failover.StatusFailed || cur.Status == failover.StatusLeft)
		// A node the state does not know is registered unless the detector
		// holds it down: a member just forgotten (force-leave, the reaper)
		// is still alive in this agent's gossip for a while after the
		// detector confirmed it dead (memberlist suspects later), and
		// registering it anew brought it back, to be marked failed again.
		if (away || !known) && n.ID != self {
			st, ok := detector[n.ID]
			if ok && st != health.StateHealthy {
				continue // still failed or held down by flap damping
			}
			// A failed member may still be alive in this agent's gossip
			// for seconds after its death (the leader that failed it
			// suspected it on its raft heartbeats, before memberlist
			// noticed), and a new leader's detector may never have heard
			// of it: gossip's word alone would take a dead node back.
			if away && !ok {
				unknown = append(unknown, n.ID)
				continue
			}
		}
		var r registration
		switch {
		case !known:
			r.kind = registerNew
		case away:
			r.kind, r.was = registerRejoin, cur.Status
		case !sameRegistration(cur, want):
			r.kind = registerUpdate
		}
		r.member = want
		if known && cur.AppUnhealthy != n.Meta.AppUnhealthy {
			r.appHealthChanged, r.appUnhealthy = true, n.Meta.AppUnhealthy
		}
		if r.kind != "" || r.appHealthChanged {
			out = append(out, r)
		}
	}
	return out, unknown
}

func sameRegistration(a, b failover.Member) bool {
	return a.RaftID == b.RaftID && a.GossipAddr == b.GossipAddr && a.RaftAddr == b.RaftAddr &&
		a.APIAddr == b.APIAddr && a.AppAddr == b.AppAddr && a.Zone == b.Zone && a.Weight == b.Weight
}

// detectorStates is the failure detector's view of the nodes gossip shows.
func (c *Controller) detectorStates(nodes []gossip.Node) map[string]health.State {
	out := make(map[string]health.State, len(nodes))
	for _, n := range nodes {
		if h, ok := c.detector.Node(n.ID); ok {
			out[n.ID] = h.State
		}
	}
	return out
}

// registerMembers applies registrations, one command each.
func (c *Controller) registerMembers(ctx context.Context, state *failover.Cluster) error {
	nodes := c.members.Members()
	regs, unknown := registrations(state, nodes, c.detectorStates(nodes), c.cfg.NodeID)
	for _, id := range unknown {
		c.detector.Observe(health.Suspect(id, c.clock.Now()))
	}
	for _, r := range regs {
		id := r.member.ID
		if r.kind != "" {
			m := r.member
			if _, err := c.Apply(ctx, failover.Command{Kind: failover.CmdUpsertMember, At: c.clock.Now().UnixNano(), Member: &m}); err != nil {
				return fmt.Errorf("register %s: %w", id, err)
			}
			switch r.kind {
			case registerNew:
				c.log.Info("member registered", "member", id, "raft_id", m.RaftID)
			case registerRejoin:
				c.log.Info("member rejoined", "member", id, "raft_id", m.RaftID, "was", r.was)
				c.RecordEvent("member.rejoin", fmt.Sprintf("%s is back (was %s)", id, r.was), nil)
			default:
				c.log.Info("member updated", "member", id, "raft_id", m.RaftID)
			}
		}
		if r.appHealthChanged {
			if _, err := c.Apply(ctx, failover.Command{Kind: failover.CmdSetAppHealth, At: c.clock.Now().UnixNano(), Node: id, AppUnhealthy: r.appUnhealthy}); err != nil {
				return fmt.Errorf("app health of %s: %w", id, err)
			}
			c.log.Info("app health changed", "member", id, "app_unhealthy", r.appUnhealthy)
		}
	}
	return nil
}
