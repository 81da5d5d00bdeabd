package raftctl

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Steward's own exchanges on the raft port, one per connection: the client
// dials (TLS and the cluster-key handshake first, see transport.go and
// auth.go), sends one request and reads one answer; then both sides close.
// A connection per call costs a few round trips, small next to a raft
// commit, and leaves no pool to go stale when the leader changes. The one
// exceptions are the lease, which every agent renews several times a
// second, and the ping, which the failure detector sends a suspect every
// probe interval: their connections are kept for the next exchange
// (reusable, and keptConn on the client), so that the leader of 50 agents
// does not accept and authenticate hundreds of connections a second, nor
// 50 agents starting together spend a quarter of their CPU on handshakes.
//
//	client: kind (1 byte), frame(request)
//	server: frame(status (1 byte), answer)
//
// A frame is a 4-byte big-endian length, then that many bytes. Each kind
// declares, in controlHandlers, the largest request the server reads and
// the largest answer the client reads. A request longer than its kind
// allows is refused from its length alone, before a byte of it is read or
// allocated; a request's buffer grows only as its bytes arrive, within
// TransportTimeout; and the requests above controlSmallRequest being read
// at once share controlRequestBudget bytes. Status statusOK carries the
// kind's answer; statusRefused carries a sentence saying why the request
// was refused (too large, busy, not understood), which the client returns
// wrapped in ErrRefused. A peer that stops short or says nothing loses its
// connection at TransportTimeout.
//
// Adding a kind: a byte in 0xF0-0xFF not used below (raft's own RPC types
// are below 0x10, and 0xFA is the cluster-key handshake), an entry in
// controlHandlers, and a client that calls Node.exchange.

// controlHandler serves one kind of exchange.
type controlHandler struct {
	// name is the kind's name in logs and errors.
	name string
	// maxRequest and maxAnswer bound the two frames, in bytes.
	maxRequest, maxAnswer int
	// serve answers a request that arrived whole. An error is sent to the
	// client as a refusal, its text unchanged.
	serve func(n *Node, remote string, request []byte) ([]byte, error)
	// reusable: after an answer the server reads another request of the
	// same kind on the connection (a frame, without the kind byte), until
	// the client closes it or stays silent for TransportTimeout. A client
	// that sends one request and closes sees no difference.
	reusable bool
}

// controlHandlers are the kinds of exchange the raft port serves besides
// raft, by their first byte.
var controlHandlers = map[byte]controlHandler{
	kindForward:    {name: "forward", maxRequest: MaxCommandSize, maxAnswer: maxForwardAnswer, serve: (*Node).serveForward},
	kindPing:       {name: "ping", maxRequest: maxPingRequest, maxAnswer: 1 + max(pingAnswerSize, maxPingRequest*2+64), serve: (*Node).servePing, reusable: true},
	kindLease:      {name: "lease", maxRequest: maxLeaseRequest, maxAnswer: maxLeaseAnswer, serve: (*Node).serveLease, reusable: true},
	kindLeaseBatch: {name: "lease batch", maxRequest: maxRelayBatch * maxLeaseRequest, maxAnswer: maxRelayBatch * maxLeaseAnswer, serve: (*Node).serveLeaseBatch, reusable: true},
	kindClock:      {name: "clock", maxRequest: 0, maxAnswer: 1 + clockAnswerSize, serve: (*Node).serveClock},
	kindLoad:       {name: "load", maxRequest: 0, maxAnswer: maxLoadAnswer, serve: (*Node).serveLoad},
}

// Answer status bytes. statusOtherServer is sent only to a ping that named
// a server (clients that never name one never see it).
const (
	statusOK          byte = 0
	statusRefused     byte = 1
	statusOtherServer byte = 2
)

// ErrRefused is wrapped by the error of an exchange the peer refused (a
// request too large or not understood, a peer too busy); the peer's reason
// follows it.
var ErrRefused = errors.New("raftctl: refused by the peer")

// controlSmallRequest is the request size below which a request does not
// count against controlRequestBudget: every request of every kind but a
// large forwarded command.
const controlSmallRequest = 1 << 20

// controlRequestBudget bounds the bytes of large requests being read and
// served at once: room for two of the largest commands. More are refused
// as busy rather than queued, so twenty peers sending the largest frames
// at once cost this much memory, not twenty times MaxCommandSize.
const controlRequestBudget = 2 * MaxCommandSize

// requestBudget is the share of controlRequestBudget in use.
type requestBudget struct {
	mu   sync.Mutex
	used int
}

// reserve takes size bytes of the budget, or reports false when that would
// go over it.
func (b *requestBudget) reserve(size int) bool {
	if size < controlSmallRequest {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+size > controlRequestBudget {
		return false
	}
	b.used += size
	return true
}

func (b *requestBudget) release(size int) {
	if size < controlSmallRequest {
		return
	}
	b.mu.Lock()
	b.used -= size
	b.mu.Unlock()
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

// exchange sends one request of kind to the raft port at addr and returns
// the answer. ctx bounds the whole exchange; without a deadline, fallback
// from now does.
func (n *Node) exchange(ctx context.Context, addr string, kind byte, request []byte, fallback time.Duration) ([]byte, error) {
	h, ok := controlHandlers[kind]
	if !ok {
		return nil, fmt.Errorf("raftctl: no exchange of kind %#x", kind)
	}
	if len(request) > h.maxRequest {
		return nil, fmt.Errorf("raftctl: %s request of %d bytes is over the limit of %d", h.name, len(request), h.maxRequest)
	}
	conn, stop, err := n.dialControl(ctx, addr, fallback)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	defer stop()
	return roundTrip(ctx, conn, h, []byte{kind}, request)
}

// roundTrip sends prefix (the kind byte on a new connection, nothing on a
// reused one) and the request frame on conn, and reads the answer.
func roundTrip(ctx context.Context, conn net.Conn, h controlHandler, prefix, request []byte) ([]byte, error) {
	msg := make([]byte, 0, len(prefix)+4+len(request))
	msg = append(msg, prefix...)
	msg = binary.BigEndian.AppendUint32(msg, uint32(len(request)))
	msg = append(msg, request...)
	if _, err := conn.Write(msg); err != nil {
		return nil, ctxError(ctx, err)
	}
	answer, err := readFrame(conn, h.maxAnswer)
	if err != nil {
		return nil, fmt.Errorf("no answer: %w", ctxError(ctx, err))
	}
	if len(answer) == 0 {
		return nil, errors.New("empty answer")
	}
	switch answer[0] {
	case statusOK:
		return answer[1:], nil
	case statusRefused:
		return nil, fmt.Errorf("%w: %s", ErrRefused, answer[1:])
	case statusOtherServer:
		return nil, fmt.Errorf("%w: %s", ErrOtherServer, answer[1:])
	default:
		return nil, fmt.Errorf("answer with unknown status %#x", answer[0])
	}
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

// errFrameTooLarge is wrapped by readFrame's error for a length over the
// limit; nothing after the length has been read.
var errFrameTooLarge = errors.New("frame too large")

// readFrame reads one length-prefixed frame of at most limit bytes; a
// longer one is refused from its length, before anything is allocated.
func readFrame(r io.Reader, limit int) ([]byte, error) {
	size, err := readFrameSize(r, limit)
	if err != nil {
		return nil, err
	}
	return readFrameBody(r, size)
}

func readFrameSize(r io.Reader, limit int) (int, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, err
	}
	size := binary.BigEndian.Uint32(hdr[:])
	if uint64(size) > uint64(limit) {
		return 0, fmt.Errorf("%w: %d bytes, the limit is %d", errFrameTooLarge, size, limit)
	}
	return int(size), nil
}

// frameReadChunk is the initial buffer of a frame being read: the buffer
// grows as bytes actually arrive, so announcing a length costs nothing.
const frameReadChunk = 64 << 10

func readFrameBody(r io.Reader, size int) ([]byte, error) {
	buf := bytes.NewBuffer(make([]byte, 0, min(size, frameReadChunk)))
	if _, err := io.CopyN(buf, r, int64(size)); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeAnswer writes one answer frame: status, then body.
func writeAnswer(w io.Writer, status byte, body []byte) error {
	buf := binary.BigEndian.AppendUint32(make([]byte, 0, 5+len(body)), uint32(1+len(body)))
	buf = append(buf, status)
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

// handleControl serves one exchange: reads the request within
// TransportTimeout, refusing it from its length if it is too large, and
// answers with the handler's result.
func (n *Node) handleControl(c controlConn) {
	defer n.controlWG.Done()
	defer func() {
		c.conn.Close()
		n.controlMu.Lock()
		delete(n.controlConns, c.conn)
		n.controlMu.Unlock()
	}()
	h := controlHandlers[c.kind]
	remote := c.conn.RemoteAddr().String()
	for first := true; ; first = false {
		if !n.serveOne(c.conn, h, remote, first) || !h.reusable {
			return
		}
	}
}

// serveOne reads one request and answers it, and reports whether the
// connection may carry another. The request must arrive within
// TransportTimeout: a silent or slow peer loses its connection rather
// than holding this goroutine. A connection's next request may end it
// cleanly instead (EOF: the client is done with it).
func (n *Node) serveOne(conn net.Conn, h controlHandler, remote string, first bool) bool {
	conn.SetDeadline(time.Now().Add(n.cfg.TransportTimeout))
	size, err := readFrameSize(conn, h.maxRequest)
	if errors.Is(err, errFrameTooLarge) {
		n.logger.Warn("refused a request on the raft port", "kind", h.name, "remote", remote, "error", err)
		writeAnswer(conn, statusRefused, []byte(fmt.Sprintf("%s request: %v", h.name, err)))
		return false
	}
	if err != nil {
		if first || !errors.Is(err, io.EOF) {
			n.logger.Debug("dropped a request on the raft port", "kind", h.name, "remote", remote, "error", err)
		}
		return false
	}
	if !n.requests.reserve(size) {
		n.logger.Warn("refused a request on the raft port: too many large requests at once", "kind", h.name, "remote", remote, "bytes", size)
		writeAnswer(conn, statusRefused, []byte(fmt.Sprintf("busy: large requests of %d bytes are already being served, try again", controlRequestBudget)))
		return false
	}
	defer n.requests.release(size)
	request, err := readFrameBody(conn, size)
	if err != nil {
		n.logger.Debug("dropped a request on the raft port", "kind", h.name, "remote", remote, "error", err)
		return false
	}
	if !n.running() {
		return false
	}
	answer, err := h.serve(n, remote, request)
	status := statusOK
	var other otherServerError
	switch {
	case errors.As(err, &other):
		status, answer = statusOtherServer, []byte(err.Error())
	case err != nil:
		status, answer = statusRefused, []byte(err.Error())
	}
	conn.SetDeadline(time.Now().Add(n.cfg.TransportTimeout))
	if err := writeAnswer(conn, status, answer); err != nil {
		n.logger.Warn("cannot answer a request on the raft port", "kind", h.name, "remote", remote, "error", err)
		return false
	}
	return true
}
