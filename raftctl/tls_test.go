package raftctl

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/steward-dev/steward/failover"
)

// testCA is a throwaway certificate authority for mutual TLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

var serial int64 = 100

// issue returns a node certificate for the given IP SANs (and DNS names),
// usable as server and client.
func (ca *testCA) issue(t testing.TB, cn string, ips []net.IP, dns ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  ips,
		DNSNames:     dns,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

var loopback = []net.IP{net.ParseIP("127.0.0.1")}

// nodeTLS is the mutual TLS config of a node whose certificate comes from
// ca and that trusts ca.
func (ca *testCA) nodeTLS(t testing.TB, cn string) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{ca.issue(t, cn, loopback)},
		RootCAs:      ca.pool,
		ClientCAs:    ca.pool,
	}
}

// tlsLeader starts a single TLS node, bootstraps it with one member and
// returns it as leader.
func tlsLeader(t *testing.T, ca *testCA) *Node {
	t.Helper()
	cfg := testConfig("tls1", t.TempDir())
	cfg.TLS = ca.nodeTLS(t, "tls1")
	n := startNode(t, cfg)
	if err := n.Bootstrap(serversOf(n)); err != nil {
		t.Fatal(err)
	}
	waitLeader(t, n)
	if _, err := n.Apply(bootstrapCommand("tls1")); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestTLSNodesFormAClusterAndReplicate(t *testing.T) {
	ca := newTestCA(t, "steward test CA")
	nodes := make([]*Node, 3)
	for i, id := range []string{"t1", "t2", "t3"} {
		cfg := testConfig(id, t.TempDir())
		cfg.TLS = ca.nodeTLS(t, id)
		nodes[i] = startNode(t, cfg)
	}
	for _, n := range nodes {
		if err := n.Bootstrap(serversOf(nodes...)); err != nil {
			t.Fatalf("Bootstrap on %s: %v", n.ID(), err)
		}
	}
	leader := waitLeader(t, nodes...)
	if _, err := leader.Apply(bootstrapCommand("t1", "t2", "t3")); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if _, err := leader.Apply(upsertCommand("t4", 2)); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	want := leader.Snapshot()
	for _, n := range nodes {
		if err := n.WaitApplied(ctxTimeout(t, 5*time.Second), leader.Stats().AppliedIndex); err != nil {
			t.Fatalf("%s did not catch up over TLS: %v", n.ID(), err)
		}
		if !reflect.DeepEqual(n.Snapshot(), want) {
			t.Fatalf("%s serves a different state than the leader", n.ID())
		}
	}
}

// A shared ServerName lets node certificates carry one DNS name instead of
// every node's IP.
func TestTLSWithSharedServerName(t *testing.T) {
	ca := newTestCA(t, "steward test CA")
	nodes := make([]*Node, 2)
	for i, id := range []string{"s1", "s2"} {
		cfg := testConfig(id, t.TempDir())
		cfg.TLS = &tls.Config{
			Certificates: []tls.Certificate{ca.issue(t, id, nil, "raft.steward.internal")},
			RootCAs:      ca.pool,
			ClientCAs:    ca.pool,
			ServerName:   "raft.steward.internal",
		}
		nodes[i] = startNode(t, cfg)
	}
	if err := nodes[0].Bootstrap(serversOf(nodes...)); err != nil {
		t.Fatal(err)
	}
	leader := waitLeader(t, nodes...)
	if _, err := leader.Apply(bootstrapCommand("s1", "s2")); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	for _, n := range nodes {
		if err := n.WaitApplied(ctxTimeout(t, 5*time.Second), leader.Stats().AppliedIndex); err != nil {
			t.Fatalf("%s did not catch up: %v", n.ID(), err)
		}
	}
}

// intruderRPCs sends what a rogue leader would: a vote request for a much
// higher term and an AppendEntries carrying a command. Both must fail, and
// the TLS leader must be untouched: same term, still leader, nothing new
// applied.
func intruderRPCs(t *testing.T, trans raft.Transport, n *Node) {
	t.Helper()
	term := n.raft.CurrentTerm()
	last := n.raft.LastIndex()
	applied := n.Stats().AppliedIndex
	var prev raft.Log
	if err := n.logs.GetLog(last, &prev); err != nil {
		t.Fatal(err)
	}
	header := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("mallory"), Addr: []byte(trans.LocalAddr())}

	var voteResp raft.RequestVoteResponse
	err := trans.RequestVote(raft.ServerID(n.ID()), raft.ServerAddress(n.Addr()), &raft.RequestVoteRequest{
		RPCHeader: header, Term: term + 10, LastLogIndex: last + 10, LastLogTerm: term + 10,
	}, &voteResp)
	if err == nil {
		t.Fatalf("RequestVote over an unauthenticated connection succeeded: %+v", voteResp)
	}

	data, err := EncodeCommand(upsertCommand("mallory", 99))
	if err != nil {
		t.Fatal(err)
	}
	var appendResp raft.AppendEntriesResponse
	err = trans.AppendEntries(raft.ServerID(n.ID()), raft.ServerAddress(n.Addr()), &raft.AppendEntriesRequest{
		RPCHeader: header, Term: term + 10, PrevLogEntry: last, PrevLogTerm: prev.Term,
		Entries:           []*raft.Log{{Index: last + 1, Term: term + 10, Type: raft.LogCommand, Data: data}},
		LeaderCommitIndex: last + 1,
	}, &appendResp)
	if err == nil {
		t.Fatalf("AppendEntries over an unauthenticated connection succeeded: %+v", appendResp)
	}

	if err := n.Barrier(5 * time.Second); err != nil {
		t.Fatalf("the TLS leader lost leadership or cannot commit after the intrusion: %v", err)
	}
	if got := n.raft.CurrentTerm(); got != term {
		t.Fatalf("term moved from %d to %d: the intruder's RPC reached raft", term, got)
	}
	if got := n.Stats().AppliedIndex; got != applied {
		t.Fatalf("applied index moved from %d to %d", applied, got)
	}
	n.Read(func(c *failover.Cluster) {
		if _, ok := c.Members["mallory"]; ok {
			t.Fatalf("the intruder's command was applied")
		}
	})
}

func TestTLSRefusesPlainTCPClients(t *testing.T) {
	n := tlsLeader(t, newTestCA(t, "steward test CA"))

	// A raft peer speaking plain TCP.
	plain, err := raft.NewTCPTransport("127.0.0.1:0", nil, 1, 2*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	intruderRPCs(t, plain, n)

	// Raw bytes: the server answers with a TLS alert at most and closes.
	conn, err := net.DialTimeout("tcp", n.Addr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET / HTTP/1.0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	reply, err := io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the TLS port kept a plain connection open")
	}
	if strings.Contains(string(reply), "HTTP") || len(reply) > 64 {
		t.Fatalf("unexpected reply to plain bytes: %q", reply)
	}
}

// A peer that connects and never speaks is dropped after the handshake
// timeout (TransportTimeout) rather than holding a handler forever.
func TestTLSDropsSilentConnections(t *testing.T) {
	n := tlsLeader(t, newTestCA(t, "steward test CA"))
	conn, err := net.DialTimeout("tcp", n.Addr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(3 * n.cfg.TransportTimeout))
	_, err = conn.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("a silent connection was still open after %v", 3*n.cfg.TransportTimeout)
	}
	if err == nil {
		t.Fatalf("the server sent data to a client that never said hello")
	}
}

// tlsTransport is a raft transport over this package's stream layer with
// the given TLS config, not validated (so that it can lack a certificate).
func tlsTransport(t *testing.T, conf *tls.Config) *raft.NetworkTransport {
	t.Helper()
	// It holds the cluster key, so that TLS alone is what refuses it.
	stream, err := listenTCP("127.0.0.1:0", "", conf, secrets(testSecret), 2*time.Second, testLogger("intruder"))
	if err != nil {
		t.Fatal(err)
	}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: stream, MaxPool: 1, Timeout: 2 * time.Second, Logger: testLogger("intruder"),
	})
	t.Cleanup(func() { trans.Close() })
	return trans
}

func TestTLSRefusesCertificatesFromAnotherCA(t *testing.T) {
	ca := newTestCA(t, "steward test CA")
	other := newTestCA(t, "someone else's CA")
	n := tlsLeader(t, ca)

	t.Run("client certificate from another CA", func(t *testing.T) {
		// It even trusts our CA, so only the server's check of its
		// certificate stands in the way.
		intruderRPCs(t, tlsTransport(t, &tls.Config{
			Certificates: []tls.Certificate{other.issue(t, "mallory", loopback)},
			RootCAs:      ca.pool,
		}), n)
	})
	t.Run("no client certificate", func(t *testing.T) {
		intruderRPCs(t, tlsTransport(t, &tls.Config{RootCAs: ca.pool}), n)
	})
	t.Run("peer trusting another CA", func(t *testing.T) {
		intruderRPCs(t, tlsTransport(t, other.nodeTLS(t, "mallory")), n)
	})
	t.Run("leader refuses a server with a foreign certificate", func(t *testing.T) {
		stream, err := listenTCP("127.0.0.1:0", "", other.nodeTLS(t, "mallory"), secrets(testSecret), 2*time.Second, testLogger("mallory"))
		if err != nil {
			t.Fatal(err)
		}
		defer stream.Close()
		// The stream layer hands raft only connections whose handshake
		// succeeded: Accept must yield nothing before the layer closes.
		accepted := make(chan error, 1)
		go func() {
			conn, err := stream.Accept()
			if err == nil {
				conn.Close()
			}
			accepted <- err
		}()
		ours, err := listenTCP("127.0.0.1:0", "", ca.nodeTLS(t, "dialer"), secrets(testSecret), 2*time.Second, testLogger("dialer"))
		if err != nil {
			t.Fatal(err)
		}
		defer ours.Close()
		if conn, err := ours.Dial(raft.ServerAddress(stream.Addr().String()), 2*time.Second); err == nil {
			conn.Close()
			t.Fatalf("dialled a server whose certificate is from another CA")
		}
		stream.Close()
		if err := <-accepted; err == nil {
			t.Fatalf("the foreign server completed a handshake with us")
		}
	})
}

// Without ServerName, a peer's certificate must carry the IP of its raft
// address.
func TestTLSChecksThePeerAddressAgainstItsCertificate(t *testing.T) {
	ca := newTestCA(t, "steward test CA")
	conf := ca.nodeTLS(t, "elsewhere")
	conf.Certificates = []tls.Certificate{ca.issue(t, "elsewhere", []net.IP{net.ParseIP("10.1.2.3")})}
	stream, err := listenTCP("127.0.0.1:0", "", conf, secrets(testSecret), 2*time.Second, testLogger("elsewhere"))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if conn, err := stream.Accept(); err == nil {
			conn.Close()
		}
	}()
	ours, err := listenTCP("127.0.0.1:0", "", ca.nodeTLS(t, "dialer"), secrets(testSecret), 2*time.Second, testLogger("dialer"))
	if err != nil {
		t.Fatal(err)
	}
	defer ours.Close()
	conn, err := ours.Dial(raft.ServerAddress(stream.Addr().String()), 2*time.Second)
	if err == nil {
		conn.Close()
		t.Fatalf("accepted a certificate valid for 10.1.2.3 at %s", stream.Addr())
	}
	if !strings.Contains(err.Error(), "10.1.2.3") {
		t.Fatalf("error does not say which address the certificate is for: %v", err)
	}
	stream.Close()
	<-done
}

func TestTLSConfigValidation(t *testing.T) {
	ca := newTestCA(t, "steward test CA")
	cases := map[string]func(*tls.Config){
		"insecure skip verify": func(c *tls.Config) { c.InsecureSkipVerify = true },
		"no certificate":       func(c *tls.Config) { c.Certificates = nil },
		"no root CAs":          func(c *tls.Config) { c.RootCAs = nil },
		"no client CAs":        func(c *tls.Config) { c.ClientCAs = nil },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig("x", t.TempDir())
			cfg.InMemory = true
			cfg.TLS = ca.nodeTLS(t, "x")
			mutate(cfg.TLS)
			n, err := New(cfg)
			if err == nil {
				n.Shutdown()
				t.Fatalf("New accepted a TLS config with %s", name)
			}
			if !strings.HasPrefix(err.Error(), "raftctl: TLS:") {
				t.Fatalf("error %q does not say it is about TLS", err)
			}
		})
	}
}

func TestMutualTLSRaisesMinVersionAndRequiresClientCerts(t *testing.T) {
	server, client := mutualTLS(&tls.Config{MinVersion: tls.VersionTLS10, ClientAuth: tls.NoClientCert})
	for _, c := range []*tls.Config{server, client} {
		if c.MinVersion != tls.VersionTLS12 {
			t.Fatalf("MinVersion = %x, want TLS 1.2", c.MinVersion)
		}
	}
	if server.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Fatalf("server ClientAuth = %v", server.ClientAuth)
	}
	server, _ = mutualTLS(&tls.Config{MinVersion: tls.VersionTLS13})
	if server.MinVersion != tls.VersionTLS13 {
		t.Fatalf("a stricter MinVersion was lowered to %x", server.MinVersion)
	}
}
