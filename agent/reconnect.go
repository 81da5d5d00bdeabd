package agent

import (
	"time"

	"github.com/steward-dev/steward/failover"
)

// reconnectGiveUp is how long after its failure a failed member is still
// reconnected to (gossip.Config.ReconnectTimeout's default, like Serf's).
const reconnectGiveUp = 24 * time.Hour

// reconnectSeeds gives gossip's reconnect loop the gossip addresses of
// the members this agent's cluster state knows, besides the nodes gossip
// itself saw die: an agent cut off from the others, or one that started
// while cut off, reaches the majority through its (stale) state, and the
// majority reaches a failed member through the current one. Members that
// left are not reconnected to (they said so), failed ones for a day.
// Gossip skips those it holds alive.
func (a *Agent) reconnectSeeds() map[string]string {
	state := a.ctrl.MemberState()
	// How long each member has been failed, on this agent's monotonic
	// clock (see control.AgeTracker): never the leader's wall-clock stamp.
	inStatus := a.ctrl.Ages().ObserveMembers(state, a.clock.Elapsed())
	seeds := map[string]string{}
	for id, m := range state.Members {
		if id == a.cfg.NodeID || m.GossipAddr == "" {
			continue
		}
		switch m.Status {
		case failover.StatusAlive, failover.StatusSuspect:
		case failover.StatusFailed:
			if inStatus[id] > reconnectGiveUp {
				continue
			}
		default:
			continue
		}
		seeds[id] = m.GossipAddr
	}
	return seeds
}
