package raftctl

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
)

// A ping's request is empty; its answer is the peer's applied index and
// last log index, 8 bytes each. The handshakes (TLS, cluster key) at the
// connection's start authenticate the peer, and each answer follows its
// own request: it proves the peer read this connection since.
const pingAnswerSize = 16

// Ping checks that the agent at addr (its raft address, as in Leader or
// Server.Address) is up: it connects, mutual TLS and the cluster-key
// handshake included when configured, and waits for its answer. A node
// answers only while it runs: not after Shutdown, nor after raft stopped
// because the server was removed from the cluster.
//
// ctx bounds the whole exchange; without a deadline, TransportTimeout does.
// An error means no answer in time: refused, reset, TLS or cluster key
// refused, or ctx.Err() (wrapped) when the deadline passed or ctx was
// cancelled. On a node that is no longer running, Ping returns ErrShutdown.
func (n *Node) Ping(ctx context.Context, addr string) error {
	_, err := n.PingStatus(ctx, addr)
	return err
}

// PeerStatus is what a ping answers: how far the peer's state machine and
// log are, so that a leader can tell whether a non-voter has caught up
// before promoting it (raft's API does not expose a follower's progress).
type PeerStatus struct {
	// AppliedIndex is the last entry the peer's state machine applied.
	AppliedIndex uint64
	// LastIndex is the last entry in the peer's log.
	LastIndex uint64
}

// PingStatus is Ping that also returns the peer's PeerStatus.
func (n *Node) PingStatus(ctx context.Context, addr string) (PeerStatus, error) {
	if !n.running() {
		return PeerStatus{}, ErrShutdown
	}
	kept, ok := n.pingConns.to(addr)
	if !ok {
		return PeerStatus{}, ErrShutdown
	}
	answer, err := kept.exchange(ctx, n, kindPing, addr, nil)
	if err != nil {
		return PeerStatus{}, fmt.Errorf("raftctl: ping %s: %w", addr, err)
	}
	if len(answer) != pingAnswerSize {
		return PeerStatus{}, fmt.Errorf("raftctl: ping %s: answer of %d bytes, want %d", addr, len(answer), pingAnswerSize)
	}
	return PeerStatus{
		AppliedIndex: binary.BigEndian.Uint64(answer),
		LastIndex:    binary.BigEndian.Uint64(answer[8:]),
	}, nil
}

// servePing answers a ping with this node's progress.
func (n *Node) servePing(remote string, request []byte) ([]byte, error) {
	st := n.Stats()
	answer := binary.BigEndian.AppendUint64(make([]byte, 0, pingAnswerSize), st.AppliedIndex)
	return binary.BigEndian.AppendUint64(answer, st.LastIndex), nil
}

// pingConns are the connections PingStatus keeps, one per peer address
// (keptConn): the failure detector pings a suspect every probe interval.
// A peer that is gone costs its entry until Shutdown, not a connection:
// a failed exchange closes it.
type pingConns struct {
	mu     sync.Mutex
	closed bool
	byAddr map[string]*keptConn
}

// to is the kept connection to addr; false once closed.
func (p *pingConns) to(addr string) (*keptConn, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, false
	}
	if p.byAddr == nil {
		p.byAddr = map[string]*keptConn{}
	}
	k, ok := p.byAddr[addr]
	if !ok {
		k = &keptConn{}
		p.byAddr[addr] = k
	}
	return k, true
}

// close drops every kept connection (Shutdown).
func (p *pingConns) close() {
	p.mu.Lock()
	p.closed = true
	conns := p.byAddr
	p.byAddr = nil
	p.mu.Unlock()
	for _, k := range conns {
		k.close()
	}
}
