package raftctl

import (
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// keyring is a ClusterSecrets that a test can change while nodes run, as
// an agent's gossip keyring changes during a rotation.
type keyring struct{ keys atomic.Pointer[[][]byte] }

func newKeyring(keys ...string) *keyring {
	k := &keyring{}
	k.set(keys...)
	return k
}

func (k *keyring) set(keys ...string) {
	list := make([][]byte, len(keys))
	for i, s := range keys {
		list[i] = []byte(s)
	}
	k.keys.Store(&list)
}

func (k *keyring) secrets() [][]byte { return *k.keys.Load() }

// keyedNode starts an in-memory node whose cluster secrets come from ring.
func keyedNode(t *testing.T, id string, ring func() [][]byte) *Node {
	t.Helper()
	cfg := testConfig(id, "")
	cfg.InMemory = true
	cfg.ClusterSecrets = ring
	return startNode(t, cfg)
}

// keyedTransport is a raft transport over this package's stream layer that
// proves the key of secret (nil: no handshake), as an intruder's would.
func keyedTransport(t *testing.T, secret []byte) raft.Transport {
	t.Helper()
	var ring func() [][]byte
	if secret != nil {
		ring = secrets(secret)
	}
	stream, err := listenTCP("127.0.0.1:0", "", nil, ring, 2*time.Second, testLogger("intruder"))
	if err != nil {
		t.Fatal(err)
	}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: stream, MaxPool: 1, Timeout: 2 * time.Second, Logger: testLogger("intruder"),
	})
	t.Cleanup(func() { trans.Close() })
	return trans
}

// Without TLS, someone who reaches the raft port but lacks the cluster key
// can neither forward a write, nor be answered a ping, nor speak raft: each
// is refused with a sentence saying why, and the log does not move.
func TestStrangersWithoutTheClusterKeyChangeNothing(t *testing.T) {
	leader := singleLeader(t, "k1", 2*time.Second)
	applied := leader.Stats().AppliedIndex
	data, err := EncodeCommand(upsertCommand("forged", 9))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("a forwarded write with no handshake", func(t *testing.T) {
		reply := rawExchange(t, leader.Addr(), forwardRequest(data), 5*time.Second)
		err := readAuthStatus(strings.NewReader(string(reply)))
		if !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), "requires the cluster-key handshake") {
			t.Fatalf("answer %q (%v), want a refusal that names the handshake", reply, err)
		}
	})
	t.Run("a forwarded write and a ping from a node with another key", func(t *testing.T) {
		mallory := keyedNode(t, "mallory", secrets([]byte("another cluster's secret")))
		_, err := mallory.forward(ctxTimeout(t, 5*time.Second), leader.Addr(), data)
		if !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), "gossip key") {
			t.Fatalf("forward with another key: %v, want ErrUnauthenticated naming the gossip key", err)
		}
		if err := mallory.Ping(ctxTimeout(t, 2*time.Second), leader.Addr()); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("ping with another key: %v, want ErrUnauthenticated", err)
		}
		// The leader, asked to prove itself to a client of another key,
		// is told the key does not match.
		err = clientHandshakeTo(t, leader.Addr(), ClusterKey([]byte("another cluster's secret")), ClusterKey(testSecret))
		if !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), "does not match") {
			t.Fatalf("a client proving another key: %v, want a refusal saying the key does not match", err)
		}
	})
	t.Run("raft RPCs with no handshake", func(t *testing.T) {
		plain, err := raft.NewTCPTransport("127.0.0.1:0", nil, 1, 2*time.Second, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		defer plain.Close()
		intruderRPCs(t, plain, leader)
	})
	t.Run("raft RPCs with another key", func(t *testing.T) {
		intruderRPCs(t, keyedTransport(t, []byte("another cluster's secret")), leader)
	})

	// (intruderRPCs' barriers add log entries, which the state machine
	// never sees.)
	if got := leader.Stats().AppliedIndex; got != applied || memberOf(leader, "forged") {
		t.Fatalf("a stranger's write was applied (applied index %d -> %d)", applied, got)
	}
	// The cluster's own still get through.
	friend := keyedNode(t, "friend", secrets(testSecret))
	if err := friend.Ping(ctxTimeout(t, 2*time.Second), leader.Addr()); err != nil {
		t.Fatalf("ping with the cluster key: %v", err)
	}
	if _, err := friend.forward(ctxTimeout(t, 5*time.Second), leader.Addr(), data); err != nil {
		t.Fatalf("forward with the cluster key: %v", err)
	}
}

// clientHandshakeTo runs the client's side of the handshake with a key
// ring of keys (proving the first) against addr.
func clientHandshakeTo(t *testing.T, addr string, keys ...[]byte) error {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	return clientHandshake(conn, keys)
}

// The cluster key follows the gossip keyring through a rotation (install,
// use, remove): at every step each agent still reaches every other, for
// raft, forwarded writes and pings alike.
func TestClusterKeyRotationKeepsEveryAgentTalking(t *testing.T) {
	ids := []string{"r1", "r2", "r3"}
	rings := make([]*keyring, len(ids))
	nodes := make([]*Node, len(ids))
	for i, id := range ids {
		rings[i] = newKeyring("old")
		nodes[i] = keyedNode(t, id, rings[i].secrets)
	}
	if err := nodes[0].Bootstrap(serversOf(nodes...)); err != nil {
		t.Fatal(err)
	}
	leader := waitLeader(t, nodes...)
	if _, err := leader.Apply(bootstrapCommand(ids...)); err != nil {
		t.Fatal(err)
	}

	everyoneTalks := func(step string, at int64) {
		t.Helper()
		for _, a := range nodes {
			for _, b := range nodes {
				if err := a.Ping(ctxTimeout(t, 2*time.Second), b.Addr()); err != nil {
					t.Fatalf("%s: %s cannot ping %s: %v", step, a.ID(), b.ID(), err)
				}
			}
		}
		leader := waitLeader(t, nodes...)
		for _, f := range followers(leader, nodes...) {
			if _, err := f.ApplyForwarded(ctxTimeout(t, 5*time.Second), upsertCommand(f.ID()+step, at)); err != nil {
				t.Fatalf("%s: forwarded write from %s: %v", step, f.ID(), err)
			}
		}
		// A commit needs raft's own RPCs between the servers.
		if err := leader.Barrier(5 * time.Second); err != nil {
			t.Fatalf("%s: the leader cannot commit: %v", step, err)
		}
	}
	everyoneTalks("start", 2)
	for _, r := range rings {
		r.set("old", "new") // install: accepted, not yet used
	}
	everyoneTalks("installed", 3)
	rings[0].set("new", "old") // use, on one agent so far
	everyoneTalks("used-on-one", 4)
	for _, r := range rings {
		r.set("new", "old")
	}
	everyoneTalks("used", 5)
	for _, r := range rings {
		r.set("new") // remove
	}
	everyoneTalks("removed", 6)

	// A node left with only the old key is shut out.
	stale := keyedNode(t, "stale", secrets([]byte("old")))
	if err := stale.Ping(ctxTimeout(t, 2*time.Second), leader.Addr()); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("ping with a removed key: %v, want ErrUnauthenticated", err)
	}
}

// A node without any cluster secret does not pretend to check a handshake:
// it refuses it and says why.
func TestANodeWithoutAClusterKeyRefusesTheHandshake(t *testing.T) {
	keyless := keyedNode(t, "keyless", nil)
	keyed := keyedNode(t, "keyed", secrets(testSecret))
	err := keyed.Ping(ctxTimeout(t, 2*time.Second), keyless.Addr())
	if !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), "has no cluster key") {
		t.Fatalf("ping of a keyless node: %v, want a refusal saying it has no key", err)
	}
	// Keyless nodes talk to each other without a handshake.
	other := keyedNode(t, "keyless2", func() [][]byte { return nil })
	if err := other.Ping(ctxTimeout(t, 2*time.Second), keyless.Addr()); err != nil {
		t.Fatalf("ping between keyless nodes: %v", err)
	}
}
