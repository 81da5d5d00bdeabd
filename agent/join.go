package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/gossip"
	"github.com/steward-dev/steward/raftctl"
)

// Finding the cluster again after a restart. -join may name only this
// agent itself: the README's recipe gives every agent -join of node1, so a
// restarted node1 had nobody to join and stayed alone in gossip, and after
// a graceful leave nobody else contacts it either. So the agent also keeps
// the gossip addresses of the members it last saw alive (as Serf's
// snapshot does) and joins them at start; and it keeps joining, those and
// the members its raft state names, until gossip shows it another member
// and a leader is known.

// gossipPeersFile lists the gossip addresses of the members this agent
// last saw alive.
const gossipPeersFile = "gossip-peers.json"

// peersSaveInterval is how often the list is brought up to date besides
// after each gossip event.
const peersSaveInterval = 10 * time.Second

type savedPeers struct {
	Peers []string `json:"peers"`
}

// loadPeers reads the saved peers; none when there is no file.
func loadPeers(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var sp savedPeers
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sp); err != nil {
		return nil, fmt.Errorf("%s holds %s, not a list of gossip peers (damaged?); remove it: it only lists members to join at start", path, snippet(data))
	}
	for _, p := range sp.Peers {
		if _, _, err := net.SplitHostPort(p); err != nil {
			return nil, fmt.Errorf("%s lists %q, not host:port (damaged?); remove it: it only lists members to join at start", path, p)
		}
	}
	return sp.Peers, nil
}

// peersLoop keeps the saved peers up to date with the members gossip sees
// alive. An agent that finds itself alone keeps the last list: it is what
// the next start needs.
func (a *Agent) peersLoop() {
	path := filepath.Join(a.cfg.DataDir, gossipPeersFile)
	saved, _ := loadPeers(path)
	ticker := time.NewTicker(peersSaveInterval)
	defer ticker.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-a.peersDirty:
		case <-ticker.C:
		}
		peers := a.alivePeers()
		if len(peers) == 0 || slices.Equal(peers, saved) {
			continue
		}
		data, _ := json.Marshal(savedPeers{Peers: peers})
		if err := raftctl.WriteFileDurably(path, append(data, '\n')); err != nil {
			a.log.Warn("cannot save the gossip peers", "file", path, "error", err)
			continue
		}
		saved = peers
	}
}

// peersChanged wakes peersLoop without blocking.
func (a *Agent) peersChanged() {
	select {
	case a.peersDirty <- struct{}{}:
	default:
	}
}

// alivePeers are the gossip addresses of the other members gossip sees
// alive, sorted.
func (a *Agent) alivePeers() []string {
	self := a.cfg.NodeID
	var peers []string
	for _, n := range a.gossip.Members() {
		if n.ID != self && n.State == gossip.StateAlive && n.Addr != "" {
			peers = append(peers, n.Addr)
		}
	}
	slices.Sort(peers)
	return peers
}

// joinTargets are the addresses to join: those of -join other than this
// agent's own (given), and the saved peers and the members of the raft
// state not already among them (known).
func (a *Agent) joinTargets() (given, known []string, err error) {
	seen := map[string]bool{}
	for _, addr := range a.cfg.Join {
		if !a.isOwnGossipAddr(addr) && !seen[addr] {
			seen[addr] = true
			given = append(given, addr)
		}
	}
	saved, err := loadPeers(filepath.Join(a.cfg.DataDir, gossipPeersFile))
	if err != nil {
		return nil, nil, err
	}
	var fromState []string
	a.raft.Read(func(c *failover.Cluster) {
		for id, m := range c.Members {
			if id != a.cfg.NodeID && m.Status != failover.StatusLeft && m.GossipAddr != "" {
				fromState = append(fromState, m.GossipAddr)
			}
		}
	})
	slices.Sort(fromState)
	for _, addr := range append(saved, fromState...) {
		if !a.isOwnGossipAddr(addr) && !seen[addr] {
			seen[addr] = true
			known = append(known, addr)
		}
	}
	return given, known, nil
}

// isOwnGossipAddr reports whether addr is this agent's gossip address:
// its port, at its bind IP, or at loopback when it binds loopback.
func (a *Agent) isOwnGossipAddr(addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	_, ownPort, err := net.SplitHostPort(a.gossip.Addr())
	if err != nil || port != ownPort {
		return false
	}
	bind := net.ParseIP(a.cfg.Bind)
	if host == "localhost" {
		return bind.IsLoopback()
	}
	ip := net.ParseIP(host)
	return ip != nil && (ip.Equal(bind) || ip.IsUnspecified() || (ip.IsLoopback() && bind.IsLoopback()))
}

// joinAtStart joins the cluster as Start does: the -join addresses (with
// the known ones too) must answer within -join-timeout, else the agent
// fails to start; with no -join address but its own, the known addresses
// are tried once, without failing the start. The join-nudge loop then
// goes on in the background.
func (a *Agent) joinAtStart() error {
	given, known, err := a.joinTargets()
	if err != nil {
		return err
	}
	switch {
	case len(given) > 0:
		// An operator who gave a wrong address sees each attempt and how
		// long the agent keeps trying, not a minute of silence.
		targets := append(given, known...)
		timeout := a.cfg.JoinTimeout.D()
		deadline := time.Now().Add(timeout)
		a.log.Info("joining the cluster", "addrs", strings.Join(targets, ","), "keeps_trying_for", timeout.String())
		ctx, cancel := context.WithDeadline(a.ctx, deadline)
		n, err := a.gossip.JoinReporting(ctx, targets, func(at gossip.JoinAttempt) {
			a.log.Info("join attempt failed; trying again", "attempt", at.Attempt, "error", at.Err,
				"retry_in", at.Next.Round(time.Millisecond).String(), "gives_up_in", max(0, time.Until(deadline)).Round(time.Second).String())
		})
		cancel()
		if err != nil {
			return fmt.Errorf("-join: no member answered within -join-timeout %s: %w", timeout, err)
		}
		a.log.Info("joined gossip", "contacted", n)
		if err := a.refuseTakenID(); err != nil {
			return err
		}
	case len(known) > 0:
		ctx, cancel := context.WithTimeout(a.ctx, 5*time.Second)
		n, err := a.gossip.Join(ctx, known)
		cancel()
		if err != nil {
			a.log.Warn("none of the members this agent knew answered yet; trying again in the background", "peers", len(known), "error", err)
		} else {
			a.log.Info("joined gossip through the members this agent knew", "contacted", n)
			if err := a.refuseTakenID(); err != nil {
				return err
			}
		}
	}
	if len(given)+len(known) > 0 || len(a.cfg.Join) > 0 {
		a.goLoop("join-nudge", a.joinNudgeLoop)
	}
	return nil
}

// refuseTakenID fails the start when, while joining, gossip saw another
// running agent with this agent's node ID (it answers a ping at its
// address): memberlist keeps the one it knows and ignores this one, so
// both would run on, this one unseen. The message names the other agent
// so that the operator can tell which.
func (a *Agent) refuseTakenID() error {
	claim, ok := a.gossip.IDClaimedBy()
	if !ok {
		return nil
	}
	if !a.gossip.ClaimantAnswers(claim) {
		a.log.Info("this node ID is still known at its old gossip address, where nothing answers: a restart at a new address, accepted once the old entry is dead",
			"old_addr", claim.Addr)
		return nil
	}
	who := claim.Addr + " (gossip)"
	if claim.Meta.APIAddr != "" {
		who = fmt.Sprintf("%s (gossip; raft ID %s, API %s)", claim.Addr, claim.Meta.RaftID, claim.Meta.APIAddr)
	}
	return configErrorf("-node-id: %q is already the node ID of the agent at %s; every agent needs its own -node-id", a.cfg.NodeID, who)
}

// joinNudgeLoop joins again every few seconds, for up to two minutes,
// until gossip shows another member alive and a leader is known. A node
// that comes back under its old name at a new address is refused by
// memberlist until its old entry has been dead for DeadNodeReclaimTime;
// after that, a fresh join's state exchange gets it accepted at once,
// instead of at the next periodic push-pull (up to half a minute later).
// And a node whose raft state learns the members only after it started
// (the leader catches it up) joins them too.
func (a *Agent) joinNudgeLoop() {
	ticker := time.NewTicker(2 * time.Second)
	defer ticker.Stop()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-a.ctx.Done():
			return
		case <-ticker.C:
		}
		if a.gossip.NumMembers() > 1 && a.knownLeader() {
			return
		}
		given, known, err := a.joinTargets()
		if err != nil || len(given)+len(known) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(a.ctx, 2*time.Second)
		_, err = a.gossip.Join(ctx, append(given, known...))
		cancel()
		a.log.Debug("joined gossip again", "members", a.gossip.NumMembers(), "error", err, "targets", strconv.Itoa(len(given)+len(known)))
	}
}
