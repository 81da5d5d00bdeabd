package raftctl

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

// A ping's request is empty, or the raft server ID the caller expects at
// that address; its answer is the peer's applied index and last log
// index, 8 bytes each. The handshakes (TLS, cluster key) at the
// connection's start authenticate the peer as one of the cluster's, and
// each answer follows its own request: it proves the peer read this
// connection since. The ID proves it is the server the caller meant: an
// address can be taken over by another agent of the same cluster (a dead
// node's IP given to a new pod, a port reused on a shared host), and a
// dead node whose address answers pings would never be declared failed.
// A server that is not the one named answers statusOtherServer.
const pingAnswerSize = 16

// maxPingRequest bounds the ID a ping names; raft server IDs are short.
const maxPingRequest = 256

// ErrOtherServer is wrapped by the error of PingServer when another raft
// server than the one named answers at the address.
var ErrOtherServer = errors.New("raftctl: another server answers at that address")

// Ping checks that an agent at addr (its raft address, as in Leader or
// Server.Address) is up, whichever server it is (PingServer checks that
// too): it connects, mutual TLS and the cluster-key handshake included
// when configured, and waits for its answer. A node
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
	return n.PingServer(ctx, "", addr)
}

// PingServer is PingStatus that also checks that the raft server answering
// at addr is id (an error wrapping ErrOtherServer if it is another one);
// an empty id checks nothing. A peer of an earlier version, which refuses
// a ping that names a server, is pinged without the name from then on: it
// cannot be told apart from another server, as before.
func (n *Node) PingServer(ctx context.Context, id, addr string) (PeerStatus, error) {
	if !n.running() {
		return PeerStatus{}, ErrShutdown
	}
	kept, ok := n.pingConns.to(addr)
	if !ok {
		return PeerStatus{}, ErrShutdown
	}
	named := id != "" && !n.pingConns.unnamed(addr)
	var request []byte
	if named {
		request = []byte(id)
	}
	answer, err := kept.exchange(ctx, n, kindPing, addr, request)
	if named && errors.Is(err, ErrRefused) && !errors.Is(err, ErrOtherServer) {
		n.pingConns.setUnnamed(addr)
		answer, err = kept.exchange(ctx, n, kindPing, addr, nil)
	}
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

// servePing answers a ping with this node's progress, unless it names
// another server.
func (n *Node) servePing(remote string, request []byte) ([]byte, error) {
	if len(request) > 0 && string(request) != n.cfg.ServerID {
		return nil, otherServerError{want: string(request), is: n.cfg.ServerID}
	}
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
	// plain are the addresses whose server refused a ping naming it (an
	// earlier version): they are pinged without a name.
	plain map[string]bool
}

func (p *pingConns) unnamed(addr string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.plain[addr]
}

func (p *pingConns) setUnnamed(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.plain == nil {
		p.plain = map[string]bool{}
	}
	p.plain[addr] = true
}

// otherServerError is servePing's answer to a ping naming another server;
// the control protocol sends it with statusOtherServer.
type otherServerError struct{ want, is string }

func (e otherServerError) Error() string {
	return fmt.Sprintf("this is raft server %q, not %q", e.is, e.want)
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
