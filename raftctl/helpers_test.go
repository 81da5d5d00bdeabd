package raftctl

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/steward-dev/steward/failover"
)

// testLogger discards raft's logs unless RAFTCTL_TEST_LOG is set, in which
// case they go to stderr at debug level.
func testLogger(name string) hclog.Logger {
	if os.Getenv("RAFTCTL_TEST_LOG") == "" {
		return hclog.NewNullLogger()
	}
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Debug, Output: os.Stderr})
}

// testConfig is a loopback configuration with its data in dir.
func testConfig(id, dir string) *Config {
	cfg := DefaultConfig()
	cfg.ServerID = id
	cfg.BindAddr = "127.0.0.1:0"
	cfg.DataDir = dir
	cfg.Logger = testLogger(id)
	cfg.UseLoopbackTimings()
	cfg.ApplyTimeout = 5 * time.Second
	cfg.TransportTimeout = 2 * time.Second
	cfg.ClusterSecrets = secrets(testSecret)
	return cfg
}

// testSecret is the cluster secret of testConfig's nodes.
var testSecret = []byte("raftctl test cluster secret")

// secrets is a ClusterSecrets that always returns list.
func secrets(list ...[]byte) func() [][]byte {
	return func() [][]byte { return list }
}

// startNode opens a node and shuts it down when the test ends.
func startNode(t testing.TB, cfg *Config) *Node {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", cfg.ServerID, err)
	}
	t.Cleanup(func() {
		if err := n.Shutdown(); err != nil {
			t.Errorf("Shutdown(%s): %v", cfg.ServerID, err)
		}
	})
	return n
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitLeader waits until exactly one of nodes is leader and every one of
// them names it, and returns it.
func waitLeader(t testing.TB, nodes ...*Node) *Node {
	t.Helper()
	var leader *Node
	eventually(t, 10*time.Second, "one agreed leader", func() bool {
		leader = nil
		for _, n := range nodes {
			if n.IsLeader() {
				if leader != nil {
					return false
				}
				leader = n
			}
		}
		if leader == nil {
			return false
		}
		for _, n := range nodes {
			if id, addr := n.Leader(); id != leader.ID() || addr != leader.Addr() {
				return false
			}
		}
		return true
	})
	return leader
}

// followers returns the nodes other than leader.
func followers(leader *Node, nodes ...*Node) []*Node {
	var out []*Node
	for _, n := range nodes {
		if n != leader {
			out = append(out, n)
		}
	}
	return out
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// bootstrapCommand is the first command of a cluster of the given members.
func bootstrapCommand(ids ...string) failover.Command {
	members := make([]failover.Member, len(ids))
	for i, id := range ids {
		members[i] = failover.Member{ID: id, RaftID: id, Zone: fmt.Sprintf("z%d", i%3)}
	}
	return failover.Command{
		Kind:     failover.CmdBootstrap,
		At:       1,
		Settings: &failover.Settings{Partitions: 16, ReplicationFactor: 2},
		Members:  members,
	}
}

// upsertCommand adds or updates a member.
func upsertCommand(id string, at int64) failover.Command {
	return failover.Command{Kind: failover.CmdUpsertMember, At: at, Member: &failover.Member{ID: id, RaftID: id, APIAddr: fmt.Sprintf("api-%d", at)}}
}

// serversOf lists nodes as bootstrap voters.
func serversOf(nodes ...*Node) []Server {
	out := make([]Server, len(nodes))
	for i, n := range nodes {
		out[i] = Server{ID: n.ID(), Address: n.Addr(), Voter: true}
	}
	return out
}
