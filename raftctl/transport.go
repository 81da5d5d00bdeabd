package raftctl

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// tcpStreamLayer is raft's StreamLayer over TCP, plain or mutual TLS. raft's
// own NewTCPTransport does the plain part, but it needs the advertised
// address before it listens, so it cannot advertise "the port actually
// bound" when the bind port is 0 and an advertise host is given; listening
// first lets us.
type tcpStreamLayer struct {
	net.Listener
	advertise net.Addr

	// tls is nil for plain TCP. Otherwise serverTLS wraps accepted
	// connections and clientTLS is used to dial.
	serverTLS, clientTLS *tls.Config
	// handshakeTimeout bounds an inbound TLS handshake, so a peer that
	// connects and says nothing cannot hold a raft handler forever.
	handshakeTimeout time.Duration
	logger           hclog.Logger
}

var _ raft.StreamLayer = (*tcpStreamLayer)(nil)

// listenTCP listens on bind and works out the address to advertise. With
// tlsConf non-nil, every accepted and dialled connection is mutual TLS.
func listenTCP(bind, advertise string, tlsConf *tls.Config, handshakeTimeout time.Duration, logger hclog.Logger) (*tcpStreamLayer, error) {
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
	s := &tcpStreamLayer{Listener: ln, advertise: adv, handshakeTimeout: handshakeTimeout, logger: logger}
	if tlsConf != nil {
		s.serverTLS, s.clientTLS = mutualTLS(tlsConf)
	}
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

// Accept waits for the next inbound connection. With TLS it is returned
// before its handshake, which runs on the first Read or Write in raft's
// per-connection goroutine, so a slow or hostile peer never stalls the
// accept loop.
func (t *tcpStreamLayer) Accept() (net.Conn, error) {
	conn, err := t.Listener.Accept()
	if err != nil || t.serverTLS == nil {
		return conn, err
	}
	return &serverTLSConn{
		Conn:    tls.Server(conn, t.serverTLS),
		timeout: t.handshakeTimeout,
		logger:  t.logger,
	}, nil
}

// Dial opens a connection to a peer; with TLS the handshake, peer
// verification included, completes within timeout before it returns.
func (t *tcpStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	if t.clientTLS == nil {
		return d.Dial("tcp", string(address))
	}
	conf := t.clientTLS
	if conf.ServerName == "" {
		host, _, err := net.SplitHostPort(string(address))
		if err != nil {
			return nil, fmt.Errorf("raftctl: peer address %q: %w", address, err)
		}
		conf = conf.Clone()
		conf.ServerName = host
	}
	conn, err := tls.DialWithDialer(d, "tcp", string(address), conf)
	if err != nil {
		return nil, fmt.Errorf("raftctl: TLS connection to %s: %w", address, err)
	}
	return conn, nil
}

// Addr is the advertised address (raft's LocalAddr comes from it).
func (t *tcpStreamLayer) Addr() net.Addr { return t.advertise }

// serverTLSConn is an accepted TLS connection whose handshake is bounded by
// a timeout and whose failure is logged as a refusal, naming the peer:
// raft itself would only log a generic decode error.
type serverTLSConn struct {
	*tls.Conn
	timeout time.Duration
	logger  hclog.Logger

	once         sync.Once
	handshakeErr error
}

func (c *serverTLSConn) handshake() error {
	c.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		defer cancel()
		if err := c.Conn.HandshakeContext(ctx); err != nil {
			c.handshakeErr = fmt.Errorf("raftctl: TLS handshake with %s: %w", c.RemoteAddr(), err)
			c.logger.Warn("refused raft connection: TLS handshake failed", "remote", c.RemoteAddr().String(), "error", err)
		}
	})
	return c.handshakeErr
}

func (c *serverTLSConn) Read(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

func (c *serverTLSConn) Write(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}
