package raftctl

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"
)

// A clock exchange asks a peer for its wall clock:
//
//	clock: request: empty   answer: unix nanoseconds (8 bytes)
//
// (one exchange of control.go, kind 0xF3). A follower compares the leader's
// clock with its own: nothing in raftctl or the leader's decisions depends
// on wall clocks, but webhooks carry the agent's, and an app rejects
// timestamps far off its own. A peer of a version without this kind
// refuses it as not understood.
const kindClock byte = 0xF3

// clockAnswerSize is the length of a clock exchange's answer.
const clockAnswerSize = 8

// PeerClock returns the wall clock of the agent at raft address addr, as it
// read it while answering, and the round trip as this node's monotonic
// clock measured it: the peer read its clock within that time.
func (n *Node) PeerClock(ctx context.Context, addr string) (peer time.Time, rtt time.Duration, err error) {
	if !n.running() {
		return time.Time{}, 0, ErrShutdown
	}
	start := time.Now()
	answer, err := n.exchange(ctx, addr, kindClock, nil, n.cfg.TransportTimeout)
	rtt = time.Since(start)
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("raftctl: clock of %s: %w", addr, err)
	}
	if len(answer) != clockAnswerSize {
		return time.Time{}, 0, fmt.Errorf("raftctl: clock of %s: answer of %d bytes, want %d", addr, len(answer), clockAnswerSize)
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(answer))), rtt, nil
}

// serveClock answers with this node's wall clock.
func (n *Node) serveClock(remote string, request []byte) ([]byte, error) {
	return binary.BigEndian.AppendUint64(make([]byte, 0, clockAnswerSize), uint64(time.Now().UnixNano())), nil
}
