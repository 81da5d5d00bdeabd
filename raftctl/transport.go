package raftctl

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// The raft port carries three kinds of connection, told apart by the first
// byte the client sends on a new connection (after the TLS handshake when
// TLS is on, and after the cluster-key handshake, auth.go, when the agents
// have a cluster key):
//
//   - raft's own RPCs. hashicorp/raft's NetworkTransport starts every
//     connection with an RPC type byte; in raft v1.7.3 (net_transport.go)
//     these are rpcAppendEntries=0, rpcRequestVote=1, rpcInstallSnapshot=2,
//     rpcTimeoutNow=3 and rpcRequestPreVote=4.
//   - Steward's own exchanges, one kind byte each (controlHandlers in
//     control.go): a follower forwarding a write to the leader, an agent
//     probing another, an agent renewing its primary lease with the
//     leader.
//
// Steward's bytes sit far above raft's range, and every byte that is not one
// of them goes to raft, so an RPC type added by a later raft still works.
// Forwards and pings thus reach every agent wherever raft does, under the
// same mutual TLS and the same cluster key.
const (
	kindForward byte = 0xF0
	kindPing    byte = 0xF1
	// 0xF2 is kindLease (lease.go), 0xF3 kindClock (clock.go); 0xFA is
	// kindAuth, the cluster-key handshake (auth.go).
)

// Backoff of the accept loop after a failed Accept (e.g. out of file
// descriptors): the same bounds raft's own accept loop uses.
const (
	acceptBackoffBase = 5 * time.Millisecond
	acceptBackoffMax  = time.Second
)

// controlConn is an inbound connection for Steward's own exchanges, its
// first byte (kind) already consumed.
type controlConn struct {
	kind byte
	conn net.Conn
}

// tcpStreamLayer is raft's StreamLayer over TCP, plain or mutual TLS, with
// the listener shared with Steward's own exchanges (see kindForward). raft's
// own NewTCPTransport does the plain part, but it needs the advertised
// address before it listens, so it cannot advertise "the port actually
// bound" when the bind port is 0 and an advertise host is given; listening
// first lets us.
//
// One accept loop takes every connection and hands it to a goroutine of its
// own that completes the TLS handshake and reads the first byte within
// handshakeTimeout, so a slow or hostile peer never stalls the loop or
// holds a goroutine for longer. The connection then goes to raft (Accept) or
// to the control channel, which the Node serves.
type tcpStreamLayer struct {
	ln        net.Listener
	advertise net.Addr

	// serverTLS and clientTLS are nil for plain TCP. Otherwise serverTLS
	// wraps accepted connections and clientTLS is used to dial.
	serverTLS, clientTLS *tls.Config
	// handshakeTimeout bounds the TLS handshake and the first byte of an
	// inbound connection, so a peer that connects and says nothing is
	// dropped.
	handshakeTimeout time.Duration
	logger           hclog.Logger
	// secrets are the shared secrets the cluster keys derive from (see
	// Config.ClusterSecrets); nil or none: no cluster-key handshake.
	secrets  func() [][]byte
	refusals *refusalLog

	// raftConns carries classified connections to Accept; control carries
	// the others to the Node. Both are unbuffered: a connection nobody
	// takes is closed when the layer closes.
	raftConns chan net.Conn
	control   chan controlConn

	closed    chan struct{}
	closeOnce sync.Once
	closeErr  error
	// wg counts the accept loop and the classifying goroutines.
	wg sync.WaitGroup

	mu sync.Mutex
	// pending are the connections being classified; Close closes them so
	// that shutting down need not wait out their handshake timeout.
	pending map[net.Conn]struct{}
	closing bool // set under mu by Close
}

var _ raft.StreamLayer = (*tcpStreamLayer)(nil)

// listenTCP listens on bind, works out the address to advertise and starts
// accepting. With tlsConf non-nil, every accepted and dialled connection is
// mutual TLS; with secrets giving any, every one starts with the
// cluster-key handshake. Close stops it.
func listenTCP(bind, advertise string, tlsConf *tls.Config, secrets func() [][]byte, handshakeTimeout time.Duration, logger hclog.Logger) (*tcpStreamLayer, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("raftctl: listen on %s: %w", bind, err)
	}
	bound := ln.Addr().(*net.TCPAddr)
	adv, err := advertiseAddr(bound, advertise)
	if err != nil {
		ln.Close()
		return nil, err
	}
	s := &tcpStreamLayer{
		ln:               ln,
		advertise:        adv,
		handshakeTimeout: handshakeTimeout,
		logger:           logger,
		secrets:          secrets,
		refusals:         &refusalLog{logger: logger},
		raftConns:        make(chan net.Conn),
		control:          make(chan controlConn),
		closed:           make(chan struct{}),
		pending:          make(map[net.Conn]struct{}),
	}
	if tlsConf != nil {
		s.serverTLS, s.clientTLS = mutualTLS(tlsConf)
	}
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// mutualTLS derives the server and client sides from the configured TLS:
// at least TLS 1.2 both ways, and client certificates required and verified
// on the server side whatever the caller set.
func mutualTLS(base *tls.Config) (server, client *tls.Config) {
	server = base.Clone()
	if server.MinVersion < tls.VersionTLS12 {
		server.MinVersion = tls.VersionTLS12
	}
	server.ClientAuth = tls.RequireAndVerifyClientCert
	client = server.Clone()
	return server, client
}

// advertiseAddr resolves the address peers should dial: advertise if given
// (with port 0 meaning the bound port), else the bound address, which must
// then be a specific IP.
func advertiseAddr(bound *net.TCPAddr, advertise string) (*net.TCPAddr, error) {
	if advertise == "" {
		if bound.IP == nil || bound.IP.IsUnspecified() {
			return nil, fmt.Errorf("raftctl: bound to %s, which peers cannot dial: set AdvertiseAddr", bound)
		}
		return bound, nil
	}
	adv, err := net.ResolveTCPAddr("tcp", advertise)
	if err != nil {
		return nil, fmt.Errorf("raftctl: AdvertiseAddr %q: %w", advertise, err)
	}
	if adv.IP == nil || adv.IP.IsUnspecified() {
		return nil, fmt.Errorf("raftctl: AdvertiseAddr %q is not an address peers can dial", advertise)
	}
	if adv.Port == 0 {
		adv.Port = bound.Port
	}
	return adv, nil
}

func (t *tcpStreamLayer) acceptLoop() {
	defer t.wg.Done()
	var delay time.Duration
	for {
		conn, err := t.ln.Accept()
		if err != nil {
			select {
			case <-t.closed:
				return
			default:
			}
			delay = min(max(2*delay, acceptBackoffBase), acceptBackoffMax)
			t.logger.Error("failed to accept a connection on the raft port", "error", err, "retry_in", delay)
			timer := time.NewTimer(delay)
			select {
			case <-t.closed:
				timer.Stop()
				return
			case <-timer.C:
			}
			continue
		}
		delay = 0
		if !t.track(conn) {
			conn.Close()
			return
		}
		// The accept loop's own count keeps wg above zero here, so this
		// Add cannot race with Close's Wait.
		t.wg.Add(1)
		go t.classify(conn)
	}
}

func (t *tcpStreamLayer) track(conn net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing {
		return false
	}
	t.pending[conn] = struct{}{}
	return true
}

func (t *tcpStreamLayer) untrack(conn net.Conn) {
	t.mu.Lock()
	delete(t.pending, conn)
	t.mu.Unlock()
}

// classify completes the TLS handshake if any and the cluster-key
// handshake when this node has a key, reads the kind byte and hands the
// connection to raft or to the control channel.
func (t *tcpStreamLayer) classify(raw net.Conn) {
	defer t.wg.Done()
	conn := raw
	remote := raw.RemoteAddr().String()
	raw.SetDeadline(time.Now().Add(t.handshakeTimeout))
	if t.serverTLS != nil {
		tc := tls.Server(raw, t.serverTLS)
		if err := tc.Handshake(); err != nil {
			t.untrack(raw)
			raw.Close()
			if !t.isClosed() {
				t.logger.Warn("refused raft connection: TLS handshake failed", "remote", remote, "error", err)
			}
			return
		}
		conn = tc
	}
	kind, err := t.admit(conn, remote)
	t.untrack(raw)
	if err != nil {
		conn.Close()
		if !t.isClosed() {
			t.logger.Debug("dropped a connection on the raft port", "remote", remote, "error", err)
		}
		return
	}
	if kind == nil {
		conn.Close() // refused, and told why
		return
	}
	// The handlers set deadlines of their own (raft: per RPC on its
	// side; control: per exchange).
	raw.SetDeadline(time.Time{})

	if _, ok := controlHandlers[*kind]; ok {
		select {
		case t.control <- controlConn{kind: *kind, conn: conn}:
		case <-t.closed:
			conn.Close()
		}
		return
	}
	pc := &peekedConn{Conn: conn, first: []byte{*kind}}
	select {
	case t.raftConns <- pc:
	case <-t.closed:
		conn.Close()
	}
}

// admit reads the connection's first byte and, when this node has a
// cluster key, requires the cluster-key handshake before it. It returns
// the kind byte, or nil after refusing the peer (told why, and logged).
func (t *tcpStreamLayer) admit(conn net.Conn, remote string) (*byte, error) {
	keys := clusterKeys(t.secrets)
	var first [1]byte
	if _, err := io.ReadFull(conn, first[:]); err != nil {
		return nil, err
	}
	switch {
	case first[0] == kindAuth:
		refused, err := serverHandshake(conn, keys)
		if err != nil {
			return nil, err
		}
		if refused != "" {
			t.refusals.refused(remote, refused)
			return nil, nil
		}
		if _, err := io.ReadFull(conn, first[:]); err != nil {
			return nil, err
		}
	case len(keys) > 0:
		writeRefusal(conn, refuseNoHandshake)
		t.refusals.refused(remote, fmt.Sprintf("no cluster-key handshake (first byte %#x)", first[0]))
		return nil, nil
	}
	return &first[0], nil
}

func (t *tcpStreamLayer) isClosed() bool {
	select {
	case <-t.closed:
		return true
	default:
		return false
	}
}

// Accept returns the next inbound raft connection, handshake done and first
// byte read (and replayed to raft).
func (t *tcpStreamLayer) Accept() (net.Conn, error) {
	select {
	case conn := <-t.raftConns:
		return conn, nil
	case <-t.closed:
		return nil, net.ErrClosed
	}
}

// Close stops listening, drops the connections not yet handed over and
// waits for the layer's goroutines. Safe to call more than once.
func (t *tcpStreamLayer) Close() error {
	t.closeOnce.Do(func() {
		t.mu.Lock()
		t.closing = true
		close(t.closed)
		for conn := range t.pending {
			conn.Close()
		}
		t.mu.Unlock()
		t.closeErr = t.ln.Close()
		t.wg.Wait()
	})
	return t.closeErr
}

// Dial opens a raft connection to a peer; with TLS the handshake, peer
// verification included, completes within timeout before it returns.
func (t *tcpStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return t.dialContext(ctx, string(address))
}

// dialContext connects to a peer's raft port, with TLS when configured
// (handshake and peer verification done before it returns) and the
// cluster-key handshake when this node has a key. ctx bounds only the
// connection setup.
func (t *tcpStreamLayer) dialContext(ctx context.Context, address string) (net.Conn, error) {
	conn, err := t.dialTransport(ctx, address)
	if err != nil {
		return nil, err
	}
	keys := clusterKeys(t.secrets)
	if len(keys) == 0 {
		return conn, nil
	}
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	err = clientHandshake(conn, keys)
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("raftctl: raft port of %s: %w", address, err)
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}

// dialTransport opens the TCP or TLS connection.
func (t *tcpStreamLayer) dialTransport(ctx context.Context, address string) (net.Conn, error) {
	d := &net.Dialer{}
	if t.clientTLS == nil {
		return d.DialContext(ctx, "tcp", address)
	}
	conf := t.clientTLS
	if conf.ServerName == "" {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return nil, fmt.Errorf("raftctl: peer address %q: %w", address, err)
		}
		conf = conf.Clone()
		conf.ServerName = host
	}
	td := &tls.Dialer{NetDialer: d, Config: conf}
	conn, err := td.DialContext(ctx, "tcp", address)
	if err != nil {
		return nil, fmt.Errorf("raftctl: TLS connection to %s: %w", address, err)
	}
	return conn, nil
}

// Addr is the advertised address (raft's LocalAddr comes from it).
func (t *tcpStreamLayer) Addr() net.Addr { return t.advertise }

// peekedConn replays the byte the stream layer read to classify a
// connection before the connection's own bytes. Only raft's handler reads
// it, from one goroutine.
type peekedConn struct {
	net.Conn
	first []byte
}

func (c *peekedConn) Read(b []byte) (int, error) {
	if len(c.first) == 0 {
		return c.Conn.Read(b)
	}
	if len(b) == 0 {
		return 0, nil
	}
	n := copy(b, c.first)
	c.first = c.first[n:]
	return n, nil
}
