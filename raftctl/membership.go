package raftctl

import (
	"fmt"

	"github.com/hashicorp/raft"
)

// Membership changes are made by the leader. Each is idempotent, in the
// manner of rqlite's join: asking for the configuration that already holds
// does nothing, so the agent can simply retry a change until it returns nil.
// Each change names the configuration index it was decided against, so a
// change decided on a configuration that moved meanwhile fails ("configuration
// changed since ...") instead of undoing the other change; retry it.

// Configuration returns the latest raft configuration known to this server
// (committed or not), on any server.
func (n *Node) Configuration() ([]Server, error) {
	servers, _, err := n.configuration()
	return servers, err
}

func (n *Node) configuration() ([]Server, uint64, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, 0, mapRaftError(err)
	}
	conf := f.Configuration()
	out := make([]Server, 0, len(conf.Servers))
	for _, s := range conf.Servers {
		out = append(out, Server{
			ID:      string(s.ID),
			Address: string(s.Address),
			Voter:   s.Suffrage == raft.Voter,
		})
	}
	return out, f.Index(), nil
}

// leaderConfiguration is configuration for the membership changes: it fails
// with ErrNotLeader on a follower.
func (n *Node) leaderConfiguration() ([]Server, uint64, error) {
	if !n.IsLeader() {
		return nil, 0, ErrNotLeader
	}
	return n.configuration()
}

// AddNonvoter adds server id at addr as a non-voter, or brings the
// configuration to that state:
//   - id already at addr: nothing to do.
//   - id known at another address (a server that came back on a new port):
//     its address is updated and its suffrage kept.
//   - another server, stale, is still configured at addr (a node that came
//     back with a wiped data dir under a new raft ID, at its old address):
//     that stale server is removed first, because raft refuses two servers
//     at one address ("found duplicate address"), then id is added. Removing
//     a stale voter lowers the voter count; the voter plan (control.PlanVoters)
//     makes it up again.
//
// The leader never removes itself this way: if addr is the leader's own
// address, ErrLeaderSelf is returned.
func (n *Node) AddNonvoter(id, addr string) error {
	if id == "" || addr == "" {
		return fmt.Errorf("raftctl: add non-voter: empty ID or address")
	}
	servers, index, err := n.leaderConfiguration()
	if err != nil {
		return err
	}
	for _, s := range servers {
		if s.ID == id && s.Address == addr {
			return nil
		}
	}
	for _, s := range servers {
		if s.Address == addr && s.ID != id {
			if s.ID == n.cfg.ServerID {
				return ErrLeaderSelf
			}
			n.logger.Info("removing stale server at a reused address", "stale-id", s.ID, "address", addr, "new-id", id)
			f := n.raft.RemoveServer(raft.ServerID(s.ID), index, n.cfg.ApplyTimeout)
			if err := f.Error(); err != nil {
				return fmt.Errorf("remove stale server %q: %w", s.ID, mapRaftError(err))
			}
			index = f.Index()
		}
	}
	// raft's AddNonvoter on a known ID updates the address and keeps a
	// voter a voter, which is exactly the "address change" case.
	f := n.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(addr), index, n.cfg.ApplyTimeout)
	if err := f.Error(); err != nil {
		return mapRaftError(err)
	}
	return nil
}

// Promote makes the configured server id a voter, at its current address.
// Promote a server only once it has caught up (see control.PlanVoters): a voter that
// lags cannot help form a quorum.
func (n *Node) Promote(id string) error { return n.setSuffrage(id, true) }

// Demote makes the configured server id a non-voter. The leader cannot
// demote itself (ErrLeaderSelf): transfer leadership first.
func (n *Node) Demote(id string) error { return n.setSuffrage(id, false) }

// setSuffrage makes the configured server id a voter or a non-voter; a
// server that already is one is left alone.
func (n *Node) setSuffrage(id string, voter bool) error {
	servers, index, err := n.leaderConfiguration()
	if err != nil {
		return err
	}
	s, ok := findServer(servers, id)
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownServer, id)
	}
	if s.Voter == voter {
		return nil
	}
	var f raft.IndexFuture
	if voter {
		f = n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(s.Address), index, n.cfg.ApplyTimeout)
	} else {
		if id == n.cfg.ServerID {
			return ErrLeaderSelf
		}
		f = n.raft.DemoteVoter(raft.ServerID(id), index, n.cfg.ApplyTimeout)
	}
	err = f.Error()
	// A new voter gets every heartbeat from now on, not from the thinning's
	// next refresh (thin.go).
	n.refreshNonvoters()
	if err != nil {
		return mapRaftError(err)
	}
	return nil
}

// Remove takes server id out of the configuration; an unknown id is already
// removed and returns nil. The removed server is no longer replicated to,
// but its raft keeps running: its agent should shut it down, and to come
// back it needs a wiped data dir and a new raft ID (a removed server that
// restarts with its old state keeps asking for votes, hashicorp/raft #235).
//
// The leader cannot remove itself (ErrLeaderSelf): with ShutdownOnRemove
// (raft's default, kept) raft would shut down under a running agent once the
// removal commits. It transfers leadership and the new leader removes it.
func (n *Node) Remove(id string) error {
	servers, index, err := n.leaderConfiguration()
	if err != nil {
		return err
	}
	if _, ok := findServer(servers, id); !ok {
		return nil
	}
	if id == n.cfg.ServerID {
		return ErrLeaderSelf
	}
	if err := n.raft.RemoveServer(raft.ServerID(id), index, n.cfg.ApplyTimeout).Error(); err != nil {
		return mapRaftError(err)
	}
	return nil
}

// TransferLeadership hands leadership to the most up-to-date voter and
// returns once the transfer was attempted. Used by a leader about to leave.
func (n *Node) TransferLeadership() error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	if err := n.raft.LeadershipTransfer().Error(); err != nil {
		return mapRaftError(err)
	}
	return nil
}

func findServer(servers []Server, id string) (Server, bool) {
	for _, s := range servers {
		if s.ID == id {
			return s, true
		}
	}
	return Server{}, false
}
