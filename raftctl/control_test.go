package raftctl

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/steward-dev/steward/failover"
)

// startCluster starts in-memory nodes (over real TCP on loopback) with the
// given TLS configs (nil entries: plain), forms a cluster of them as voters
// and applies the cluster's bootstrap command. It returns the leader and
// all nodes.
func startCluster(t *testing.T, tlsConfs map[string]*tls.Config, ids ...string) (*Node, []*Node) {
	t.Helper()
	return startClusterWith(t, func(cfg *Config) { cfg.TLS = tlsConfs[cfg.ServerID] }, ids...)
}

// startClusterWith is startCluster with each server's configuration
// changed by configure first.
func startClusterWith(t *testing.T, configure func(*Config), ids ...string) (*Node, []*Node) {
	t.Helper()
	nodes := make([]*Node, len(ids))
	for i, id := range ids {
		cfg := testConfig(id, "")
		cfg.InMemory = true
		configure(cfg)
		nodes[i] = startNode(t, cfg)
	}
	if err := nodes[0].Bootstrap(serversOf(nodes...)); err != nil {
		t.Fatal(err)
	}
	leader := waitLeader(t, nodes...)
	if _, err := leader.Apply(bootstrapCommand(ids...)); err != nil {
		t.Fatal(err)
	}
	return leader, nodes
}

// memberOf reports whether n's state has a member id.
func memberOf(n *Node, id string) bool {
	var ok bool
	n.Read(func(c *failover.Cluster) { _, ok = c.Members[id] })
	return ok
}

func TestFollowerForwardsWritesToTheLeader(t *testing.T) {
	leader, nodes := startCluster(t, nil, "f1", "f2", "f3")
	follower := followers(leader, nodes...)[0]

	if _, err := follower.ApplyForwarded(ctxTimeout(t, 5*time.Second), upsertCommand("newcomer", 2)); err != nil {
		t.Fatalf("forwarded upsert: %v", err)
	}
	if !memberOf(leader, "newcomer") {
		t.Fatalf("the forwarded upsert did not reach the leader's state")
	}

	// One promotion planned against the current epoch, one against an epoch
	// long gone: the leader's Result must come back as it is.
	p := leader.Snapshot().Partitions[0]
	if len(p.Replicas) == 0 {
		t.Fatalf("partition 0 has no replica: %+v", p)
	}
	cmd := failover.Command{Kind: failover.CmdApplyActions, At: 3, Actions: []failover.Action{
		{Kind: failover.ActionPromote, Partition: 0, Epoch: p.Epoch, Node: p.Replicas[0]},
		{Kind: failover.ActionPromote, Partition: 1, Epoch: 99, Node: "f1"},
	}}
	res, err := follower.ApplyForwarded(ctxTimeout(t, 5*time.Second), cmd)
	if err != nil {
		t.Fatalf("forwarded actions: %v", err)
	}
	if res.Applied != 1 || res.Stale != 1 {
		t.Fatalf("Result = %+v, want 1 applied and 1 stale", res)
	}
	if got := leader.Snapshot().Partitions[0].Primary; got != p.Replicas[0] {
		t.Fatalf("partition 0 primary is %q on the leader, want %q", got, p.Replicas[0])
	}
	if err := follower.WaitApplied(ctxTimeout(t, 5*time.Second), leader.Stats().AppliedIndex); err != nil {
		t.Fatalf("the follower did not see its own write: %v", err)
	}

	// On the leader, ApplyForwarded is a local Apply.
	if _, err := leader.ApplyForwarded(ctxTimeout(t, 5*time.Second), upsertCommand("local", 4)); err != nil {
		t.Fatalf("ApplyForwarded on the leader: %v", err)
	}
	if !memberOf(leader, "local") {
		t.Fatalf("the leader's own ApplyForwarded did not apply")
	}
}

func TestForwardedStateMachineErrorsKeepTheirTextAndSentinel(t *testing.T) {
	leader, nodes := startCluster(t, nil, "e1", "e2")
	follower := followers(leader, nodes...)[0]

	cases := []struct {
		name     string
		cmd      failover.Command
		sentinel error // nil: no sentinel, the text must still match
	}{
		{"second bootstrap", bootstrapCommand("e1", "e2"), failover.ErrAlreadyBootstrapped},
		{"unknown member", failover.Command{Kind: failover.CmdSetVoter, Node: "nobody", Voter: true}, failover.ErrUnknownMember},
		{"member still holding partitions", failover.Command{Kind: failover.CmdRemoveMember, Node: "e1"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, want := leader.Apply(tc.cmd)
			if want == nil {
				t.Fatalf("the leader accepted the command; the case is wrong")
			}
			before := leader.Snapshot()
			_, err := follower.ApplyForwarded(ctxTimeout(t, 5*time.Second), tc.cmd)
			if err == nil {
				t.Fatalf("forwarded %s succeeded", tc.name)
			}
			if err.Error() != want.Error() {
				t.Fatalf("forwarded error %q, the leader's own is %q", err, want)
			}
			if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
				t.Fatalf("errors.Is(%v, %v) is false", err, tc.sentinel)
			}
			if errors.Is(err, ErrNotLeader) {
				t.Fatalf("a refusal by the state machine looks like a leadership change: %v", err)
			}
			if after := leader.Snapshot(); !reflect.DeepEqual(after.Members["e1"], before.Members["e1"]) || len(after.Members) != len(before.Members) {
				t.Fatalf("a refused command changed the state")
			}
		})
	}
}

func TestApplyForwardedWithoutALeader(t *testing.T) {
	cfg := testConfig("alone", "")
	cfg.InMemory = true
	n := startNode(t, cfg) // never bootstrapped: it knows no leader
	_, err := n.ApplyForwarded(ctxTimeout(t, 2*time.Second), upsertCommand("x", 1))
	if !errors.Is(err, ErrNoLeader) {
		t.Fatalf("ApplyForwarded without a leader: %v, want ErrNoLeader", err)
	}
}

// A follower whose idea of the leader is stale reaches a server that is not
// leader (any more); it retries once with the leader it then knows.
func TestApplyForwardedRetriesWhenTheServerReachedIsNotLeader(t *testing.T) {
	leader, nodes := startCluster(t, nil, "r1", "r2", "r3")
	fs := followers(leader, nodes...)
	sender, stale := fs[0], fs[1]

	data, err := EncodeCommand(upsertCommand("direct", 2))
	if err != nil {
		t.Fatal(err)
	}
	_, err = sender.forward(ctxTimeout(t, 5*time.Second), stale.Addr(), data)
	if !errors.Is(err, ErrNotLeader) || !strings.Contains(err.Error(), "not leader") {
		t.Fatalf("a follower answered a forwarded command with %v, want ErrNotLeader", err)
	}
	if memberOf(leader, "direct") {
		t.Fatalf("a command sent to a follower was applied")
	}

	var calls atomic.Int32
	sender.forwardTarget = func() (string, string) {
		if calls.Add(1) == 1 {
			return stale.ID(), stale.Addr()
		}
		return sender.Leader()
	}
	if _, err := sender.ApplyForwarded(ctxTimeout(t, 5*time.Second), upsertCommand("retried", 3)); err != nil {
		t.Fatalf("ApplyForwarded after a refusal: %v", err)
	}
	if calls.Load() < 2 {
		t.Fatalf("the leader was looked up %d times, want a second look after the refusal", calls.Load())
	}
	if !memberOf(leader, "retried") {
		t.Fatalf("the retried command did not apply on the leader")
	}

	// If no other leader appears within ctx, the refusal is final.
	sender.forwardTarget = func() (string, string) { return stale.ID(), stale.Addr() }
	last := leader.Stats().LastIndex
	_, err = sender.ApplyForwarded(ctxTimeout(t, 300*time.Millisecond), upsertCommand("never", 4))
	if !errors.Is(err, ErrNoLeader) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ApplyForwarded with only a non-leader to ask: %v, want ErrNoLeader and the deadline", err)
	}
	if got := leader.Stats().LastIndex; got != last || memberOf(leader, "never") {
		t.Fatalf("a command nobody accepted reached the log (last index %d -> %d)", last, got)
	}
}

func TestPing(t *testing.T) {
	var nodes []*Node
	for _, id := range []string{"p1", "p2"} {
		cfg := testConfig(id, "")
		cfg.InMemory = true
		nodes = append(nodes, startNode(t, cfg))
	}
	a, b := nodes[0], nodes[1]

	t.Run("a live node answers", func(t *testing.T) {
		if err := a.Ping(ctxTimeout(t, 2*time.Second), b.Addr()); err != nil {
			t.Fatalf("Ping(live node): %v", err)
		}
		if err := b.Ping(ctxTimeout(t, 2*time.Second), a.Addr()); err != nil {
			t.Fatalf("Ping(live node): %v", err)
		}
	})

	t.Run("the answer carries the peer's progress", func(t *testing.T) {
		if err := b.Bootstrap([]Server{{ID: "p2", Address: b.Addr(), Voter: true}}); err != nil {
			t.Fatal(err)
		}
		waitLeader(t, b)
		if _, err := b.Apply(bootstrapCommand("p2")); err != nil {
			t.Fatal(err)
		}
		st, err := a.PingStatus(ctxTimeout(t, 2*time.Second), b.Addr())
		if err != nil {
			t.Fatal(err)
		}
		want := b.Stats()
		if st.AppliedIndex != want.AppliedIndex || st.LastIndex < want.AppliedIndex || st.AppliedIndex == 0 {
			t.Fatalf("PingStatus = %+v, the peer says %+v", st, want)
		}
	})

	t.Run("a closed port fails", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		if err := a.Ping(ctxTimeout(t, 2*time.Second), addr); err == nil {
			t.Fatalf("Ping(closed port) succeeded")
		}
	})

	t.Run("a peer that never answers fails at the deadline", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		held := make(chan net.Conn, 1)
		go func() {
			conn, err := ln.Accept()
			if err == nil {
				held <- conn // accepted and read, never answered
			}
			close(held)
		}()
		start := time.Now()
		err = a.Ping(ctxTimeout(t, 300*time.Millisecond), ln.Addr().String())
		elapsed := time.Since(start)
		ln.Close()
		for conn := range held {
			conn.Close()
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Ping(silent peer) = %v, want the deadline", err)
		}
		if elapsed > 2*time.Second {
			t.Fatalf("Ping(silent peer) took %v with a 300ms deadline", elapsed)
		}
	})

	t.Run("a shut-down node fails", func(t *testing.T) {
		addr := b.Addr()
		if err := b.Shutdown(); err != nil {
			t.Fatal(err)
		}
		if err := a.Ping(ctxTimeout(t, time.Second), addr); err == nil {
			t.Fatalf("Ping(shut-down node) succeeded")
		}
		if err := b.Ping(ctxTimeout(t, time.Second), a.Addr()); !errors.Is(err, ErrShutdown) {
			t.Fatalf("Ping from a shut-down node: %v, want ErrShutdown", err)
		}
	})
}

func TestTLSNodesPingAndForward(t *testing.T) {
	ca := newTestCA(t, "steward test CA")
	confs := map[string]*tls.Config{"m1": ca.nodeTLS(t, "m1"), "m2": ca.nodeTLS(t, "m2")}
	leader, nodes := startCluster(t, confs, "m1", "m2")
	follower := followers(leader, nodes...)[0]

	if err := follower.Ping(ctxTimeout(t, 2*time.Second), leader.Addr()); err != nil {
		t.Fatalf("Ping over TLS: %v", err)
	}
	if err := leader.Ping(ctxTimeout(t, 2*time.Second), follower.Addr()); err != nil {
		t.Fatalf("Ping over TLS: %v", err)
	}
	// The upsert is idempotent: on a starved machine the two servers may
	// hold an election in between, so it is forwarded again until it lands.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := follower.ApplyForwarded(ctxTimeout(t, 5*time.Second), upsertCommand("over-tls", 2))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ApplyForwarded over TLS: %v", err)
		}
	}
	if !memberOf(leader, "over-tls") {
		t.Fatalf("the command forwarded over TLS did not apply")
	}

	t.Run("a node of another CA cannot ping", func(t *testing.T) {
		other := newTestCA(t, "someone else's CA")
		cfg := testConfig("mallory", "")
		cfg.InMemory = true
		cfg.TLS = other.nodeTLS(t, "mallory")
		mallory := startNode(t, cfg)
		if err := mallory.Ping(ctxTimeout(t, 2*time.Second), leader.Addr()); err == nil {
			t.Fatalf("a node with a foreign certificate got a ping answered")
		}
	})

	t.Run("a plain client's forwarded command is refused", func(t *testing.T) {
		last := leader.Stats().LastIndex
		data, err := EncodeCommand(upsertCommand("plain-intruder", 9))
		if err != nil {
			t.Fatal(err)
		}
		reply := rawExchange(t, leader.Addr(), forwardRequest(data), 5*time.Second)
		if len(reply) >= 4 && json.Valid(reply[4:]) {
			t.Fatalf("a plain client got a forward answer: %q", reply)
		}
		// The server has closed the connection: whatever it was going to do
		// with it is done.
		if got := leader.Stats().LastIndex; memberOf(leader, "plain-intruder") || got != last {
			t.Fatalf("the plain client's command reached the log (last index %d -> %d)", last, got)
		}
	})
}

// forwardRequest is what ApplyForwarded sends, after the handshakes, for
// an encoded command.
func forwardRequest(data []byte) []byte {
	req := []byte{kindForward}
	req = binary.BigEndian.AppendUint32(req, uint32(len(data)))
	return append(req, data...)
}

// rawExchange writes payload to addr over plain TCP and reads until the
// server closes the connection, failing the test if it is still open after
// wait.
func rawExchange(t *testing.T, addr string, payload []byte, wait time.Duration) []byte {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return exchangeOn(t, conn, payload, wait)
}

// exchangeOn writes payload on conn and reads until the server closes it,
// failing the test if it is still open after wait.
func exchangeOn(t *testing.T, conn net.Conn, payload []byte, wait time.Duration) []byte {
	t.Helper()
	if len(payload) > 0 {
		if _, err := conn.Write(payload); err != nil {
			t.Fatal(err)
		}
	}
	conn.SetReadDeadline(time.Now().Add(wait))
	reply, err := io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept the connection open for %v (got %q)", wait, reply)
	}
	return reply
}

// authedConn is a plain TCP connection to addr that has passed the
// cluster-key handshake with the key of secret, ready for a kind byte.
func authedConn(t *testing.T, addr string, secret []byte) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if err := clientHandshake(conn, [][]byte{ClusterKey(secret)}); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	conn.SetDeadline(time.Time{})
	return conn
}

// decodeAnswer parses an answer frame: its status and body.
func decodeAnswer(t *testing.T, reply []byte) (byte, []byte) {
	t.Helper()
	body, err := readFrame(bytes.NewReader(reply), 1<<20)
	if err != nil || len(body) == 0 {
		t.Fatalf("no answer frame in %q (%v)", reply, err)
	}
	return body[0], body[1:]
}

// singleLeader starts one node with testConfig's key, makes it leader of
// its own cluster and bootstraps the state.
func singleLeader(t *testing.T, id string, transportTimeout time.Duration) *Node {
	t.Helper()
	cfg := testConfig(id, "")
	cfg.InMemory = true
	cfg.TransportTimeout = transportTimeout
	n := startNode(t, cfg)
	if err := n.Bootstrap(serversOf(n)); err != nil {
		t.Fatal(err)
	}
	waitLeader(t, n)
	if _, err := n.Apply(bootstrapCommand(id)); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestMalformedControlConnectionsAreClosedWithNothingApplied(t *testing.T) {
	n := singleLeader(t, "g1", 400*time.Millisecond)
	timeout := n.cfg.TransportTimeout
	last := n.Stats().LastIndex

	hdr := func(size uint32) []byte {
		return binary.BigEndian.AppendUint32([]byte{kindForward}, size)
	}
	// Cases the server closes without an answer, at the deadline
	// (TransportTimeout): they stop short.
	closed := []struct {
		name    string
		payload []byte
	}{
		{"body shorter than its length, then silence", append(hdr(100), `{"kind":`...)},
		{"forward byte, then silence", []byte{kindForward}},
		{"ping with half a length, then silence", []byte{kindPing, 0, 0}},
		{"nothing at all", nil},
	}
	for _, tc := range closed {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			reply := exchangeOn(t, authedConn(t, n.Addr(), testSecret), tc.payload, 10*timeout)
			if len(reply) != 0 {
				t.Fatalf("got an answer %q", reply)
			}
			if elapsed := time.Since(start); elapsed > 5*timeout {
				t.Fatalf("closed after %v, TransportTimeout is %v", elapsed, timeout)
			}
		})
	}

	// Lengths over the kind's limit are refused from the length alone:
	// the answer comes at once, with no body sent.
	for _, tc := range []struct {
		name    string
		payload []byte
	}{
		{"forward over MaxCommandSize", hdr(MaxCommandSize + 1)},
		{"forward of 4 GiB", hdr(0xFFFFFFFF)},
		{"ping naming a server over its limit", binary.BigEndian.AppendUint32([]byte{kindPing}, maxPingRequest+1)},
		{"lease request over its limit", binary.BigEndian.AppendUint32([]byte{kindLease}, maxLeaseRequest+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			status, body := decodeAnswer(t, exchangeOn(t, authedConn(t, n.Addr(), testSecret), tc.payload, 5*timeout))
			if status != statusRefused || !strings.Contains(string(body), "frame too large") {
				t.Fatalf("answer %d %q, want a refusal for the size", status, body)
			}
			if elapsed := time.Since(start); elapsed >= timeout {
				t.Fatalf("refused after %v: the server waited for the body (TransportTimeout %v)", elapsed, timeout)
			}
		})
	}

	// Well-framed bodies that are not commands are answered with the reason.
	for _, tc := range []struct {
		name    string
		payload []byte
		want    error
	}{
		{"garbage body", append(hdr(5), "hello"...), ErrUnknownEncoding},
		{"empty body", hdr(0), ErrEmptyCommand},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := decodeAnswer(t, exchangeOn(t, authedConn(t, n.Addr(), testSecret), tc.payload, 5*time.Second))
			var resp forwardResponse
			if status != statusOK || json.Unmarshal(body, &resp) != nil {
				t.Fatalf("answer %d %q, want a forward response", status, body)
			}
			if !errors.Is(resp.err(), tc.want) {
				t.Fatalf("answer %+v, want %v", resp, tc.want)
			}
		})
	}

	if got := n.Stats().LastIndex; got != last {
		t.Fatalf("malformed requests reached the log (last index %d -> %d)", last, got)
	}
	// And the port still serves raft's peers and Steward's after all that.
	if err := n.Ping(ctxTimeout(t, 2*time.Second), n.Addr()); err != nil {
		t.Fatalf("Ping after the malformed requests: %v", err)
	}
}

// The largest requests share a memory budget: a peer that opens many
// connections announcing the largest command gets "busy" for those beyond
// it, at once, instead of making the server hold them all.
func TestLargeRequestsBeyondTheBudgetAreRefusedAsBusy(t *testing.T) {
	n := singleLeader(t, "b1", 2*time.Second)
	announce := binary.BigEndian.AppendUint32([]byte{kindForward}, MaxCommandSize)
	for i := 0; i < controlRequestBudget/MaxCommandSize; i++ {
		conn := authedConn(t, n.Addr(), testSecret)
		if _, err := conn.Write(append(announce, 1, '{')); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, "the budget to be taken", func() bool {
		n.requests.mu.Lock()
		defer n.requests.mu.Unlock()
		return n.requests.used == controlRequestBudget
	})
	status, body := decodeAnswer(t, exchangeOn(t, authedConn(t, n.Addr(), testSecret), announce, 5*time.Second))
	if status != statusRefused || !strings.Contains(string(body), "busy") {
		t.Fatalf("answer %d %q beyond the budget, want busy", status, body)
	}
	// Small requests are not held up by the large ones.
	if err := n.Ping(ctxTimeout(t, 2*time.Second), n.Addr()); err != nil {
		t.Fatalf("Ping while the budget is taken: %v", err)
	}
}

func TestCommandsOverTheLimitNeverReachTheLog(t *testing.T) {
	leader, nodes := startCluster(t, nil, "c1", "c2")
	follower := followers(leader, nodes...)[0]
	huge := upsertCommand("huge", 2)
	huge.Member.Zone = strings.Repeat("z", MaxCommandSize)
	applied := leader.Stats().AppliedIndex

	if _, err := leader.Apply(huge); !errors.Is(err, ErrCommandTooLarge) {
		t.Fatalf("Apply of a command over the limit: %v, want ErrCommandTooLarge", err)
	}
	if _, err := follower.ApplyForwarded(ctxTimeout(t, 5*time.Second), huge); err == nil {
		t.Fatalf("a forwarded command over the limit was accepted")
	}
	if got := leader.Stats().AppliedIndex; got != applied || memberOf(leader, "huge") {
		t.Fatalf("a command over the limit was applied (applied index %d -> %d)", applied, got)
	}
}

// Shutdown does not wait for a control connection's deadline: it closes it.
func TestShutdownClosesControlConnections(t *testing.T) {
	cfg := testConfig("s1", "")
	cfg.InMemory = true
	cfg.TransportTimeout = 10 * time.Second
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	conn := authedConn(t, n.Addr(), testSecret)
	if _, err := conn.Write([]byte{kindForward}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the control handler to hold the connection", func() bool {
		n.controlMu.Lock()
		defer n.controlMu.Unlock()
		return len(n.controlConns) == 1
	})
	start := time.Now()
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Fatalf("Shutdown took %v with a silent control connection open", elapsed)
	}
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("the control connection survived Shutdown: %v", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
