package raftctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/steward-dev/steward/failover"
)

// Primary leases travel on the raft port like forwarded writes:
//
//	lease: request: LeaseRequest JSON   answer: leaseResponse JSON
//
// (one exchange of control.go, kind 0xF2).
//
// raftctl only carries them: what a lease grants, and when, is decided by
// the LeaseGranter the agent installs on the leader (SetLeaseGranter).
const kindLease byte = 0xF2

// LeaseRequest is an agent asking the leader to renew its primary lease.
type LeaseRequest struct {
	// NodeID is the logical node ID (-node-id) of the agent asking.
	NodeID string `json:"node_id"`
	// Load, when set, is the last load and disk report of the agent's
	// app, and LoadAge how old it was when the request left: the figures
	// ride on the renewals every agent sends the leader anyway, rather
	// than on gossip metadata or raft (see control.LoadBook).
	Load    *failover.NodeFigures `json:"load,omitempty"`
	LoadAge time.Duration         `json:"load_age,omitempty"`
	// RaftID and HeartbeatTimeout are the asking server's raft ID and the
	// heartbeat timeout its raft runs, filled in by RequestLease: a
	// non-voter that runs Config.NonvoterHeartbeatTimeout tells the leader
	// so, and the leader holds its heartbeats longer (thin.go). A leader
	// of an older version ignores them.
	RaftID           string        `json:"raft_id,omitempty"`
	HeartbeatTimeout time.Duration `json:"heartbeat_timeout,omitempty"`
}

// LeaseGrant is the leader's answer to a LeaseRequest.
type LeaseGrant struct {
	// Duration is how long the lease lasts, counted by the requesting
	// agent from the moment it sent its request (never from when the answer
	// arrived: the request left before the leader decided, so counting
	// from it can only end the lease early).
	Duration time.Duration `json:"duration"`
	// Primaries maps each partition the node may serve as primary to the
	// epoch at which the leader's state names it primary. A partition the
	// node is primary of may be missing: its previous holder's lease has
	// not run out yet.
	Primaries map[int]uint64 `json:"primaries"`
	// AppliedIndex is the leader's applied index when it granted, and
	// AppliedTerm the term of that entry (0: unknown, from an older
	// leader, or the index moved on while it granted): a server whose log
	// holds that entry in that term holds everything the leader had
	// applied (HoldsEntry).
	AppliedIndex uint64 `json:"applied_index"`
	AppliedTerm  uint64 `json:"applied_term,omitempty"`
}

// LeaseGranter decides a lease on the leader. It is called concurrently,
// one call per request, and must not block on raft.
type LeaseGranter func(req LeaseRequest) (LeaseGrant, error)

// ErrNoLease is returned by RequestLease when the server asked is not the
// leader, has no granter, or refused the request; the error text says why.
var ErrNoLease = errors.New("raftctl: no lease granted")

// maxLeaseRequest bounds a lease request frame: a node ID and, at most,
// one load report (the agent refuses a report of more than
// MaxLoadReportCopies copies, which fits).
const maxLeaseRequest = controlSmallRequest

// MaxLoadReportCopies bounds the copies of one load report, so that a
// lease request that carries it stays within maxLeaseRequest.
const MaxLoadReportCopies = 16384

// maxLeaseAnswer bounds a lease answer: at most failover.MaxPartitions
// entries of a partition number and an epoch, about 2 MiB at the very
// worst.
const maxLeaseAnswer = 4 << 20

// leaseResponse is the wire form of a grant or a refusal.
type leaseResponse struct {
	Grant *LeaseGrant `json:"grant,omitempty"`
	Error string      `json:"error,omitempty"`
	// LeaderRefused marks a refusal the leader's granter decided (no
	// leadership confirmed yet, not a member), passed on as it is by a
	// relay; unmarked refusals come from a server that could not ask it.
	LeaderRefused bool `json:"leader_refused,omitempty"`
}

// ErrLeaderRefused is wrapped, with ErrNoLease, by RequestLease's error
// when the leader itself refused the request, directly or through a relay:
// asking again elsewhere would get the same answer.
var ErrLeaderRefused = errors.New("raftctl: the leader refused the lease")

// grantResponse is this server's own answer to req: a grant, or a refusal
// marked LeaderRefused when it leads and its granter refused.
func (n *Node) grantResponse(req LeaseRequest) leaseResponse {
	n.thin.said(raft.ServerID(req.RaftID), req.HeartbeatTimeout, time.Now())
	grant, err := n.GrantLocal(req)
	switch {
	case err == nil:
		return leaseResponse{Grant: &grant}
	case errors.Is(err, ErrNotLeader):
		return leaseResponse{Error: err.Error()}
	default:
		return leaseResponse{Error: err.Error(), LeaderRefused: true}
	}
}

// SetLeaseGranter installs the function that answers lease requests on
// this server while it leads. Without one, every request is refused.
func (n *Node) SetLeaseGranter(g LeaseGranter) {
	n.leaseMu.Lock()
	n.leaseGranter = g
	n.leaseMu.Unlock()
}

// GrantLocal asks this server's own granter, as RequestLease asks a
// remote one: an agent that leads renews its own lease without a network
// round trip.
func (n *Node) GrantLocal(req LeaseRequest) (LeaseGrant, error) {
	if n.raft.State() != raft.Leader {
		return LeaseGrant{}, fmt.Errorf("%w: %w", ErrNoLease, ErrNotLeader)
	}
	n.leaseMu.Lock()
	g := n.leaseGranter
	n.leaseMu.Unlock()
	if g == nil {
		return LeaseGrant{}, fmt.Errorf("%w: the leader grants no leases", ErrNoLease)
	}
	// Every renewal answered is a moment to see whose renewals stopped.
	n.thin.releaseSilent(time.Now())
	grant, err := g(req)
	if err != nil {
		return LeaseGrant{}, fmt.Errorf("%w: %w", ErrNoLease, err)
	}
	if index, term := n.fsm.appliedAt(); index == grant.AppliedIndex {
		grant.AppliedTerm = term
	}
	return grant, nil
}

// RequestLease asks the server at addr (the leader's raft address) for a
// lease. ctx bounds the exchange; without a deadline TransportTimeout does.
func (n *Node) RequestLease(ctx context.Context, addr string, req LeaseRequest) (LeaseGrant, error) {
	if !n.running() {
		return LeaseGrant{}, ErrShutdown
	}
	req.RaftID, req.HeartbeatTimeout = n.cfg.ServerID, n.ownHeartbeatTimeout()
	body, err := json.Marshal(req)
	if err != nil {
		return LeaseGrant{}, err
	}
	answer, err := n.leaseConn.exchange(ctx, n, kindLease, addr, body)
	if err != nil {
		return LeaseGrant{}, fmt.Errorf("raftctl: lease from %s: %w", addr, err)
	}
	var resp leaseResponse
	if err := json.Unmarshal(answer, &resp); err != nil {
		return LeaseGrant{}, fmt.Errorf("raftctl: lease from %s: bad answer: %w", addr, err)
	}
	if resp.Grant == nil {
		if resp.LeaderRefused {
			return LeaseGrant{}, fmt.Errorf("%w by %s: %w: %s", ErrNoLease, addr, ErrLeaderRefused, resp.Error)
		}
		return LeaseGrant{}, fmt.Errorf("%w by %s: %s", ErrNoLease, addr, resp.Error)
	}
	return *resp.Grant, nil
}

// keptConn is a connection kept open to one peer between exchanges of one
// reusable kind (see control.go): the lease connection RequestLease keeps
// to the leader, and the ping connections PingStatus keeps to each peer.
// An agent renews its lease several times a second and probes a suspect
// peer every probe interval, and a connection per exchange made the leader
// of 50 agents accept and authenticate hundreds of connections a second,
// and 50 agents starting together spend a quarter of their CPU on the
// handshakes of their probes.
type keptConn struct {
	mu   sync.Mutex
	addr string
	conn net.Conn // nil: none open
}

// exchange sends one request of kind to addr on the kept connection, or
// on a new one when there is none to addr or the kept one fails (the peer
// restarted, or closed it after TransportTimeout of silence).
func (l *keptConn) exchange(ctx context.Context, n *Node, kind byte, addr string, request []byte) ([]byte, error) {
	h := controlHandlers[kind]
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil && l.addr == addr {
		answer, err := l.reuse(ctx, n.cfg.TransportTimeout, h, request)
		if err == nil || errors.Is(err, ErrRefused) || ctx.Err() != nil {
			return answer, err
		}
	}
	l.closeLocked()
	conn, stop, err := n.dialControl(ctx, addr, n.cfg.TransportTimeout)
	if err != nil {
		return nil, err
	}
	answer, err := roundTrip(ctx, conn, h, []byte{kind}, request)
	stop()
	if err != nil {
		conn.Close()
		return nil, err
	}
	l.conn, l.addr = conn, addr
	return answer, nil
}

// reuse is one exchange on the kept connection, bounded by ctx (or by
// fallback from now); the connection is dropped if it fails.
func (l *keptConn) reuse(ctx context.Context, fallback time.Duration, h controlHandler, request []byte) ([]byte, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(fallback)
	}
	conn := l.conn
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	answer, err := roundTrip(ctx, conn, h, nil, request)
	stop()
	if err != nil && !errors.Is(err, ErrRefused) {
		l.closeLocked()
	}
	return answer, err
}

// close drops the kept connection (Shutdown).
func (l *keptConn) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closeLocked()
}

func (l *keptConn) closeLocked() {
	if l.conn != nil {
		l.conn.Close()
		l.conn, l.addr = nil, ""
	}
}

// serveLease answers one lease request.
func (n *Node) serveLease(remote string, data []byte) ([]byte, error) {
	var resp leaseResponse
	var req LeaseRequest
	switch {
	case json.Unmarshal(data, &req) != nil || req.NodeID == "":
		resp.Error = `lease request must be {"node_id": "..."}`
	default:
		if n.cfg.LeaseRelay.Wait > 0 && !n.IsLeader() {
			resp = n.relay(req)
		} else {
			resp = n.grantResponse(req)
		}
	}
	body, err := json.Marshal(resp)
	if err != nil {
		n.logger.Error("cannot encode a lease answer", "remote", remote, "error", err)
		return nil, fmt.Errorf("cannot encode the answer: %w", err)
	}
	return body, nil
}
