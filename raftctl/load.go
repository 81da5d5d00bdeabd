package raftctl

import (
	"context"
	"fmt"
)

// The apps' load figures, as the leader holds them, travel to the other
// agents on request (GET /v1/load, /ui and `agent partitions` on a
// follower):
//
//	load: request: empty   answer: the leader's LoadSource output (JSON)
//
// (one exchange of control.go, kind 0xF4). The figures reach the leader on
// the lease renewals (LeaseRequest.Load); raftctl only carries them.
const kindLoad byte = 0xF4

// maxLoadAnswer bounds the answer: a summary per node and the figures of
// at most failover.MaxPartitions partitions.
const maxLoadAnswer = 8 << 20

// LoadSource produces the leader's figures for a peer that asks.
type LoadSource func() ([]byte, error)

// SetLoadSource installs what answers load requests on this server while
// it leads. Without one, every request is refused.
func (n *Node) SetLoadSource(src LoadSource) {
	n.leaseMu.Lock()
	n.loadSource = src
	n.leaseMu.Unlock()
}

// RequestLoad asks the server at addr (the leader's raft address) for its
// figures.
func (n *Node) RequestLoad(ctx context.Context, addr string) ([]byte, error) {
	if !n.running() {
		return nil, ErrShutdown
	}
	answer, err := n.exchange(ctx, addr, kindLoad, nil, n.cfg.TransportTimeout)
	if err != nil {
		return nil, fmt.Errorf("raftctl: load figures from %s: %w", addr, err)
	}
	return answer, nil
}

// serveLoad answers one load request.
func (n *Node) serveLoad(remote string, _ []byte) ([]byte, error) {
	if !n.IsLeader() {
		return nil, fmt.Errorf("%w: this server does not lead", ErrNotLeader)
	}
	n.leaseMu.Lock()
	src := n.loadSource
	n.leaseMu.Unlock()
	if src == nil {
		return nil, fmt.Errorf("this server keeps no load figures")
	}
	return src()
}
