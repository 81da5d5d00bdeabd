package raftctl

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/hashicorp/raft"
	"github.com/steward-dev/steward/failover"
)

// Steward's own exchanges on the raft port (see kindForward), one per
// connection: the client dials, sends its request and reads one answer;
// then both sides close. A connection per call costs a TCP (and TLS)
// handshake, which is small next to a raft commit, and leaves no pool to
// go stale when the leader changes.
//
//	ping:    client: 0xF1, nonce (8 bytes)     server: the same nonce
//	forward: client: 0xF0, frame(command)      server: frame(forwardResponse JSON)
//
// A frame is a 4-byte big-endian length, then that many bytes (1 to
// maxFrameSize). The command is EncodeCommand's output. The server closes
// the connection without answering on a malformed frame: a length of 0 or
// above maxFrameSize, a short read, or silence past TransportTimeout. A
// well-framed command that does not decode is answered with the decoding
// error, and never reaches the log.

// maxFrameSize bounds a forwarded command and its answer. The largest
// legitimate command, one action with its reasons for each of
// failover.MaxPartitions partitions (a failed node that held a copy of
// everything), encodes to about 17 MB; 64 MiB leaves room for more than
// one action per partition. A length beyond it is garbage or hostile and
// is refused before anything is read, and a frame's buffer grows only as
// its bytes actually arrive (within TransportTimeout), so a peer cannot
// make the server allocate by merely announcing a length.
const maxFrameSize = 64 << 20

// frameReadChunk is the initial buffer of a frame being read.
const frameReadChunk = 64 << 10

// pingNonceSize is the length of a ping's nonce. A random nonce makes the
// answer prove that the peer read this ping, not that some byte arrived.
const pingNonceSize = 8

// ErrNoLeader is returned by ApplyForwarded when this server knows of no
// leader (an election is under way, or the cluster has no quorum).
var ErrNoLeader = errors.New("raftctl: no leader")

// forwardResponse is the leader's answer to a forwarded command.
type forwardResponse struct {
	// Result is what Apply returned.
	Result failover.Result `json:"result"`
	// Error is the text of Apply's error; empty on success.
	Error string `json:"error,omitempty"`
	// Is names the sentinel errors (forwardSentinels) that Error wraps, so
	// that errors.Is works on the follower too.
	Is []string `json:"is,omitempty"`
}

// forwardSentinels are the errors a forwarded command's error can be
// matched against on the follower. The names are the wire format: keep
// them stable; an unknown name is ignored.
var forwardSentinels = []struct {
	name string
	err  error
}{
	{"not_leader", ErrNotLeader},
	{"already_bootstrapped", failover.ErrAlreadyBootstrapped},
	{"unknown_member", failover.ErrUnknownMember},
	{"empty_command", ErrEmptyCommand},
	{"unknown_encoding", ErrUnknownEncoding},
}

// sentinelNames lists the forwardSentinels err wraps. A leader that is
// shutting down is, for the follower, a server that is not leader: it
// should look for the next one, not believe itself shut down.
func sentinelNames(err error) []string {
	var names []string
	for _, s := range forwardSentinels {
		if errors.Is(err, s.err) || (s.err == ErrNotLeader && errors.Is(err, ErrShutdown)) {
			names = append(names, s.name)
		}
	}
	return names
}

// forwardedError is an error the leader returned for a forwarded command:
// its text unchanged, and the sentinels it wrapped there.
type forwardedError struct {
	msg string
	is  []error
}

func (e *forwardedError) Error() string   { return e.msg }
func (e *forwardedError) Unwrap() []error { return e.is }

func (r *forwardResponse) err() error {
	if r.Error == "" {
		return nil
	}
	e := &forwardedError{msg: r.Error}
	for _, name := range r.Is {
		for _, s := range forwardSentinels {
			if s.name == name {
				e.is = append(e.is, s.err)
			}
		}
	}
	return e
}

// running reports whether this node serves: not shut down, and raft not
// stopped on its own (as it does when the server is removed from the
// configuration).
func (n *Node) running() bool {
	select {
	case <-n.shutdownCh:
		return false
	default:
	}
	return n.raft.State() != raft.Shutdown
}

// Ping checks that the agent at addr (its raft address, as in Leader or
// Server.Address) is up: it connects, mutual TLS included when configured,
// sends a random nonce and waits for it to come back. A node answers only
// while it runs: not after Shutdown, nor after raft stopped because the
// server was removed from the cluster.
//
// ctx bounds the whole exchange; without a deadline, TransportTimeout does.
// An error means no answer in time: refused, reset, TLS refused, or
// ctx.Err() (wrapped) when the deadline passed or ctx was cancelled. On a
// node that is no longer running, Ping returns ErrShutdown.
func (n *Node) Ping(ctx context.Context, addr string) error {
	_, err := n.PingStatus(ctx, addr)
	return err
}

// PeerStatus is what a ping answers besides its nonce: how far the peer's
// state machine and log are, so that a leader can tell whether a
// non-voter has caught up before promoting it (raft's API does not expose
// a follower's progress).
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
	nonce := make([]byte, pingNonceSize)
	rand.Read(nonce) // never fails (crypto/rand, Go 1.24+)
	conn, stop, err := n.dialControl(ctx, addr, n.cfg.TransportTimeout)
	if err != nil {
		return PeerStatus{}, fmt.Errorf("raftctl: ping %s: %w", addr, err)
	}
	defer conn.Close()
	defer stop()
	if _, err := conn.Write(append([]byte{kindPing}, nonce...)); err != nil {
		return PeerStatus{}, fmt.Errorf("raftctl: ping %s: %w", addr, ctxError(ctx, err))
	}
	answer := make([]byte, pingNonceSize+16)
	if _, err := io.ReadFull(conn, answer); err != nil {
		return PeerStatus{}, fmt.Errorf("raftctl: ping %s: %w", addr, ctxError(ctx, err))
	}
	if !bytes.Equal(answer[:pingNonceSize], nonce) {
		return PeerStatus{}, fmt.Errorf("raftctl: ping %s: wrong answer", addr)
	}
	return PeerStatus{
		AppliedIndex: binary.BigEndian.Uint64(answer[pingNonceSize:]),
		LastIndex:    binary.BigEndian.Uint64(answer[pingNonceSize+8:]),
	}, nil
}

// ApplyForwarded applies cmd wherever the leader is: here if this server
// leads (exactly Apply), otherwise on the leader named by Leader, over the
// raft port (mutual TLS when configured), one connection per call. It
// returns the leader's Result and error; an error from the state machine
// keeps its text, and errors.Is matches it against ErrNotLeader,
// failover.ErrAlreadyBootstrapped, failover.ErrUnknownMember,
// ErrEmptyCommand and ErrUnknownEncoding as on the leader.
//
// Apply keeps its meaning (ErrNotLeader on a follower), so callers that
// must not leave this server, such as the leader's own control loop, still
// can; ApplyForwarded is what a follower's writes use.
//
// With no leader known it returns ErrNoLeader at once. If the server it
// reached says it is no longer leader (or this server lost leadership while
// applying), it waits within ctx for another leader to be known and tries
// once more; if none appears it returns ErrNoLeader wrapping ctx's error.
// A retried command may have committed the first time (leadership lost
// after the append): Steward's commands are compare-and-set on epochs or
// idempotent, so it then applies as stale or reports
// failover.ErrAlreadyBootstrapped or failover.ErrUnknownMember.
//
// ctx bounds the exchange with the leader; without a deadline,
// ApplyTimeout plus twice TransportTimeout does. An I/O error (leader
// unreachable, connection lost before the answer) is returned as is and
// not retried: the command may or may not have applied.
func (n *Node) ApplyForwarded(ctx context.Context, cmd failover.Command) (failover.Result, error) {
	data, err := EncodeCommand(cmd)
	if err != nil {
		return failover.Result{}, err
	}
	var refused string // address of the server that said it is not leader
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if err := n.waitOtherLeader(ctx, refused); err != nil {
				return failover.Result{}, err
			}
		}
		var res failover.Result
		var target string
		if n.raft.State() == raft.Leader {
			target = n.Addr()
			res, err = n.apply(data)
		} else {
			if !n.running() {
				return failover.Result{}, ErrShutdown
			}
			_, target = n.forwardTarget()
			if target == "" {
				return failover.Result{}, ErrNoLeader
			}
			res, err = n.forward(ctx, target, data)
		}
		if attempt > 0 || !errors.Is(err, ErrNotLeader) {
			return res, err
		}
		refused = target
	}
}

// waitOtherLeader waits until this server leads or knows of a leader at
// another address than refused.
func (n *Node) waitOtherLeader(ctx context.Context, refused string) error {
	tick := time.NewTicker(waitPollInterval)
	defer tick.Stop()
	for {
		if n.raft.State() == raft.Leader {
			return nil
		}
		if !n.running() {
			return ErrShutdown
		}
		if _, addr := n.forwardTarget(); addr != "" && addr != refused {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s is not leader and no other leader appeared: %w", ErrNoLeader, refused, ctx.Err())
		case <-n.shutdownCh:
			return ErrShutdown
		case <-tick.C:
		}
	}
}

// forward sends an encoded command to the server at addr and returns its
// answer.
func (n *Node) forward(ctx context.Context, addr string, data []byte) (failover.Result, error) {
	conn, stop, err := n.dialControl(ctx, addr, n.cfg.ApplyTimeout+2*n.cfg.TransportTimeout)
	if err != nil {
		return failover.Result{}, fmt.Errorf("raftctl: forward to leader at %s: %w", addr, err)
	}
	defer conn.Close()
	defer stop()
	req := make([]byte, 0, 1+4+len(data))
	req = append(req, kindForward)
	req = binary.BigEndian.AppendUint32(req, uint32(len(data)))
	req = append(req, data...)
	if _, err := conn.Write(req); err != nil {
		return failover.Result{}, fmt.Errorf("raftctl: forward to leader at %s: %w", addr, ctxError(ctx, err))
	}
	body, err := readFrame(conn)
	if err != nil {
		return failover.Result{}, fmt.Errorf("raftctl: forward to leader at %s: no answer: %w", addr, ctxError(ctx, err))
	}
	var resp forwardResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		return failover.Result{}, fmt.Errorf("raftctl: forward to leader at %s: bad answer: %w", addr, err)
	}
	return resp.Result, resp.err()
}

// dialControl connects to addr's raft port for one exchange bounded by ctx
// (or by fallback from now when ctx has no deadline). stop must be called
// when done; cancelling ctx meanwhile closes the connection.
func (n *Node) dialControl(ctx context.Context, addr string, fallback time.Duration) (net.Conn, func() bool, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(fallback)
	}
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	conn, err := n.stream.dialContext(dctx, addr)
	if err != nil {
		return nil, nil, ctxError(ctx, err)
	}
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	return conn, stop, nil
}

// ctxError names ctx's end as the cause of an I/O error when it is one: a
// deadline passed shows up as a timeout on the connection, a cancellation
// as a use of a closed connection.
func ctxError(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%w (%w)", ctxErr, err)
	}
	if deadline, ok := ctx.Deadline(); ok && !time.Now().Before(deadline) {
		return fmt.Errorf("%w (%w)", context.DeadlineExceeded, err)
	}
	return err
}

// readFrame reads one length-prefixed frame, refusing lengths outside 1 to
// maxFrameSize before allocating.
func readFrame(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(hdr[:])
	if size == 0 || size > maxFrameSize {
		return nil, fmt.Errorf("raftctl: frame of %d bytes (allowed 1 to %d)", size, maxFrameSize)
	}
	buf := bytes.NewBuffer(make([]byte, 0, min(int(size), frameReadChunk)))
	if _, err := io.CopyN(buf, r, int64(size)); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeFrame(w io.Writer, body []byte) error {
	if len(body) == 0 || len(body) > maxFrameSize {
		return fmt.Errorf("raftctl: frame of %d bytes (allowed 1 to %d)", len(body), maxFrameSize)
	}
	buf := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(body)), uint32(len(body)))
	_, err := w.Write(append(buf, body...))
	return err
}

// serveControl hands each control connection the stream layer classifies to
// a handler goroutine of its own, until Shutdown.
func (n *Node) serveControl() {
	defer n.controlWG.Done()
	for {
		select {
		case c := <-n.stream.control:
			if !n.trackControl(c.conn) {
				c.conn.Close()
				continue
			}
			n.controlWG.Add(1)
			go n.handleControl(c)
		case <-n.shutdownCh:
			return
		}
	}
}

// trackControl records a live control connection, so that Shutdown can
// close it; false once Shutdown has begun.
func (n *Node) trackControl(conn net.Conn) bool {
	n.controlMu.Lock()
	defer n.controlMu.Unlock()
	if n.controlClosed {
		return false
	}
	n.controlConns[conn] = struct{}{}
	return true
}

// closeControl closes every live control connection and refuses new ones.
func (n *Node) closeControl() {
	n.controlMu.Lock()
	defer n.controlMu.Unlock()
	n.controlClosed = true
	for conn := range n.controlConns {
		conn.Close()
	}
}

func (n *Node) handleControl(c controlConn) {
	defer n.controlWG.Done()
	defer func() {
		c.conn.Close()
		n.controlMu.Lock()
		delete(n.controlConns, c.conn)
		n.controlMu.Unlock()
	}()
	// The request must arrive within TransportTimeout: a silent or slow
	// peer loses its connection rather than holding this goroutine.
	c.conn.SetDeadline(time.Now().Add(n.cfg.TransportTimeout))
	switch c.kind {
	case kindPing:
		nonce := make([]byte, pingNonceSize)
		if _, err := io.ReadFull(c.conn, nonce); err != nil {
			n.logger.Debug("dropped a ping", "remote", c.conn.RemoteAddr().String(), "error", err)
			return
		}
		if !n.running() {
			return
		}
		st := n.Stats()
		answer := append(nonce, make([]byte, 16)...)
		binary.BigEndian.PutUint64(answer[pingNonceSize:], st.AppliedIndex)
		binary.BigEndian.PutUint64(answer[pingNonceSize+8:], st.LastIndex)
		c.conn.Write(answer)
	case kindForward:
		n.serveForward(c.conn)
	case kindLease:
		n.serveLease(c)
	}
}

// serveForward applies a command forwarded by a follower and answers with
// the result.
func (n *Node) serveForward(conn net.Conn) {
	remote := conn.RemoteAddr().String()
	data, err := readFrame(conn)
	if err != nil {
		n.logger.Warn("dropped a forwarded command", "remote", remote, "error", err)
		return
	}
	// Refused commands (not leader, undecodable, refused by the model) are
	// answered: the follower deserves the reason. ApplyEncoded bounds the
	// wait to enqueue by ApplyTimeout, and raft's commit ends when it
	// commits, loses leadership or shuts down.
	res, err := n.ApplyEncoded(data)
	resp := forwardResponse{Result: res}
	if err != nil {
		resp.Error = err.Error()
		resp.Is = sentinelNames(err)
	}
	body, err := json.Marshal(resp)
	if err != nil {
		n.logger.Error("cannot encode the answer to a forwarded command", "remote", remote, "error", err)
		return
	}
	conn.SetDeadline(time.Now().Add(n.cfg.TransportTimeout))
	if err := writeFrame(conn, body); err != nil {
		n.logger.Warn("cannot answer a forwarded command", "remote", remote, "error", err)
	}
}
