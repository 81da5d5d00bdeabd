package control

import (
	"fmt"
	"sort"
	"time"

	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/raftctl"
)

// The raft configuration follows the members: live members are added as
// non-voters (promotion.go makes voters of them), servers that are no
// member's current incarnation are removed, departed members are removed,
// and failed members are removed within the quorum rule.

// configChangeKind names one change of the raft configuration.
type configChangeKind string

const (
	// addServer adds a live member's server as a non-voter, or updates its
	// address.
	addServer configChangeKind = "add"
	// removeStale removes a server that is no member's current
	// incarnation (a node that came back with an empty data dir).
	removeStale configChangeKind = "remove-stale"
	// removeDeparted removes the server of a member that left or was
	// forgotten, whatever the freeze: it said so, or an operator did.
	removeDeparted configChangeKind = "remove-departed"
	// removeFailed removes the server of a dead member (see
	// deadServersToRemove).
	removeFailed configChangeKind = "remove-failed"
)

// configChange is one change of the raft configuration.
type configChange struct {
	kind   configChangeKind
	member string // the member's node ID ("" for a stale server)
	server raftctl.Server
}

// raftConfigInputs is what planRaftConfig decides on, gathered by
// reconcileRaftConfig.
type raftConfigInputs struct {
	state   *failover.Cluster
	servers []raftctl.Server
	// self is this agent's raft server ID, never removed here.
	self string
	// detectorFailed is how long the detector has held failed (or held
	// down) each member it so holds.
	detectorFailed map[string]time.Duration
	// inStatus is how long each member has had its status.
	inStatus map[string]time.Duration
}

// planRaftConfig decides (purely) the changes of the raft configuration,
// in the order to make them: additions, stale servers, departed members,
// then failed members (none in maintenance mode).
func planRaftConfig(in raftConfigInputs) []configChange {
	var out []configChange
	inConfig := map[string]raftctl.Server{}
	var voters []string
	present := map[string]bool{}
	for _, s := range in.servers {
		inConfig[s.ID] = s
		present[s.ID] = true
		if s.Voter {
			voters = append(voters, s.ID)
		}
	}
	current := map[string]bool{}
	for _, id := range in.state.MemberIDs() {
		m := in.state.Members[id]
		if m.RaftID == "" {
			continue
		}
		current[m.RaftID] = true
		if m.Status != failover.StatusAlive && m.Status != failover.StatusSuspect {
			continue
		}
		if _, held := in.detectorFailed[id]; held {
			continue // a dead voter removed while frozen stays out until it is back
		}
		if s, ok := inConfig[m.RaftID]; ok && s.Address == m.RaftAddr {
			continue
		}
		out = append(out, configChange{kind: addServer, member: id, server: raftctl.Server{ID: m.RaftID, Address: m.RaftAddr}})
	}
	for _, s := range in.servers {
		if !current[s.ID] && s.ID != in.self {
			out = append(out, configChange{kind: removeStale, server: s})
		}
	}
	for _, id := range in.state.MemberIDs() {
		m := in.state.Members[id]
		if m.Status == failover.StatusLeft && m.RaftID != "" && present[m.RaftID] && m.RaftID != in.self {
			out = append(out, configChange{kind: removeDeparted, member: id, server: inConfig[m.RaftID]})
		}
	}
	if in.state.Maintenance {
		return out
	}
	// Voters of members the detector holds failed while the state does
	// not (yet) count as dead too; not those away for a planned restart:
	// they keep their raft server, to catch up from the log when back.
	detectorFailed := map[string]time.Duration{}
	for id, d := range in.detectorFailed {
		if m, ok := in.state.Members[id]; ok && m.Status != failover.StatusFailed && m.Status != failover.StatusLeft && m.Status != failover.StatusRestarting {
			detectorFailed[id] = d
		}
	}
	for _, id := range deadServersToRemove(in.state, voters, present, in.self, in.inStatus, detectorFailed) {
		out = append(out, configChange{kind: removeFailed, server: inConfig[id]})
	}
	return out
}

// deadServersToRemove decides (purely) which raft servers of dead members
// leave the configuration now, oldest failure first within the quorum
// rule: at most MaxRemovableVoters at a time, so that a wrong failure view
// can never remove a majority. inStatus is how long each member has had
// its status; detectorFailed how long the detector has held failed the
// members the state does not hold failed (yet); self is this agent's raft
// server ID, never removed here.
//
// Dead servers are removed even while removals are frozen: a server is
// dead when the member is marked failed, or when the detector holds it
// failed while the freeze keeps it alive in the state. Otherwise
// the quorum would go on depending on dead members while live agents could
// vote in their place (PlanVoters promotes them once the dead are out), and
// the next death could cost the quorum for good, as 2 dead voters of 3 did
// beside 4 live agents. The quorum rule is what makes this safe under a
// network fault too: the voters removed by mistake are a minority and
// cannot have formed a quorum of their own. A detector that, with the
// state, holds a majority of the voters dead is wrong about some of them
// while this agent leads: then only the members the state marked failed
// leave. Dead non-voters leave too,
// freeze or not: the quorum does not depend on them, and a dead voter
// demoted by voter planning (to keep the voter count odd) must not stay in
// the configuration as a non-voter for the whole freeze. A healed one is
// added back as a non-voter like any returning member. (Whether removals
// are frozen does not enter: a non-voter the detector holds failed was
// kept by a freeze computed without the suspects that marking counts,
// and stayed in the configuration while marking was frozen.)
func deadServersToRemove(state *failover.Cluster, voters []string, inConfig map[string]bool, self string,
	inStatus, detectorFailed map[string]time.Duration) []string {
	var out []string
	var deadVoters []FailedVoter
	// heldVoters and heldOnly are the voters and the non-voters only the
	// detector holds dead (the state does not, yet).
	var heldVoters []FailedVoter
	var heldOnly []string
	isVoter := map[string]bool{}
	for _, v := range voters {
		isVoter[v] = true
	}
	for _, id := range state.MemberIDs() {
		m := state.Members[id]
		if m.RaftID == "" || !inConfig[m.RaftID] || m.RaftID == self {
			continue
		}
		failedFor, detectorHolds := detectorFailed[id]
		switch {
		case m.Status == failover.StatusFailed && isVoter[m.RaftID]:
			deadVoters = append(deadVoters, FailedVoter{ID: m.RaftID, FailedFor: inStatus[id]})
		case m.Status == failover.StatusFailed:
			out = append(out, m.RaftID)
		case m.Status == failover.StatusLeft:
			// removed as a departed member, whatever the freeze
		case isVoter[m.RaftID] && detectorHolds:
			heldVoters = append(heldVoters, FailedVoter{ID: m.RaftID, FailedFor: failedFor})
		case detectorHolds:
			// A dead non-voter the freeze keeps alive in the state.
			heldOnly = append(heldOnly, m.RaftID)
		}
	}
	if len(voters)-len(deadVoters)-len(heldVoters) >= len(voters)/2+1 {
		out = append(out, heldOnly...)
		deadVoters = append(deadVoters, heldVoters...)
	}
	// Otherwise the detector, with the state, holds a majority of the
	// voters dead, yet this leader can only change the configuration
	// with a majority of them answering: the detector is wrong about some
	// of them (a starved machine: its confirming probes time out while
	// raft's heartbeats, slower to give up, get through). Removing the
	// minority the quorum rule allows, round after round, took the first
	// leader of 50 agents on a loaded machine from 5 voters to 2 and then
	// lost its quorum; nothing the detector alone holds dead is removed
	// until it agrees with raft again.
	out = append(out, RemovableVoters(voters, deadVoters, 1)...)
	sort.Strings(out)
	return out
}

// reconcileRaftConfig gathers planRaftConfig's inputs and makes its
// changes.
func (c *Controller) reconcileRaftConfig(state *failover.Cluster) error {
	servers, err := c.raft.Configuration()
	if err != nil {
		return err
	}
	in := raftConfigInputs{state: state, servers: servers, self: c.cfg.RaftID, detectorFailed: map[string]time.Duration{}}
	for id := range state.Members {
		if c.detectorHoldsFailed(id) {
			in.detectorFailed[id] = c.detectorFailedFor(id)
		}
	}
	if !state.Maintenance {
		in.inStatus = c.ages.ObserveMembers(state, c.clock.Elapsed())
	}
	for _, ch := range planRaftConfig(in) {
		s := ch.server
		switch ch.kind {
		case addServer:
			if err := c.raft.AddNonvoter(s.ID, s.Address); err != nil {
				return fmt.Errorf("add %s to raft: %w", ch.member, err)
			}
			c.log.Info("added to raft as non-voter", "member", ch.member, "raft_id", s.ID, "addr", s.Address)
		case removeStale:
			if err := c.raft.Remove(s.ID); err != nil {
				return fmt.Errorf("remove stale raft server %s: %w", s.ID, err)
			}
			c.log.Info("removed stale raft server", "raft_id", s.ID)
		case removeDeparted:
			if err := c.raft.Remove(s.ID); err != nil {
				return fmt.Errorf("remove departed raft server %s: %w", s.ID, err)
			}
			c.log.Info("removed departed member from raft", "member", ch.member, "raft_id", s.ID)
		case removeFailed:
			if err := c.raft.Remove(s.ID); err != nil {
				return fmt.Errorf("remove failed raft server %s: %w", s.ID, err)
			}
			c.log.Warn("removed failed member from raft", "raft_id", s.ID)
		}
	}
	return nil
}
