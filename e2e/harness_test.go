// Package e2e runs the real agent binary: several processes on 127.0.0.1
// with free ports, started, killed, paused and restarted by the tests,
// through package localcluster. A cluster with network faults (see
// netfault_test.go) runs each node on its own loopback address and uid
// instead.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/steward-dev/steward/localcluster"
)

// agentBin and kvappBin are the binaries built once by TestMain.
var agentBin, kvappBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "steward-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	agentBin = filepath.Join(dir, "agent")
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(file))
	kvappBin = filepath.Join(dir, "kvapp")
	for bin, pkg := range map[string]string{agentBin: "./cmd/agent", kvappBin: "./examples/kvapp"} {
		build := exec.Command("go", "build", "-o", bin, pkg)
		build.Dir = root
		build.Stdout, build.Stderr = os.Stdout, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building", pkg+":", err)
			os.Exit(1)
		}
	}
	// Nodes of a cluster with network faults run as their own uid: they
	// must be able to reach and run the binaries.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort is localcluster.FreePort for a test: no free port fails it.
func freePort(tb testing.TB) int {
	tb.Helper()
	port, err := localcluster.FreePort()
	if err != nil {
		tb.Fatal(err)
	}
	return port
}

// node is one agent process of a test cluster (localcluster.Agent) and the
// test that fails when it cannot start.
type node struct {
	*localcluster.Agent
	t testing.TB
}

// agents are the nodes' agents, for localcluster's conditions.
func agents(nodes []*node) []*localcluster.Agent {
	out := make([]*localcluster.Agent, len(nodes))
	for i, n := range nodes {
		out[i] = n.Agent
	}
	return out
}

// cluster is a set of agents of one test or benchmark trial; Cleanup
// kills them all.
type cluster struct {
	t     testing.TB
	dir   string
	nodes []*node
	// faults, once set by newNetFaults, places every node added afterwards
	// on its own address and uid.
	faults *netFaults
}

func newCluster(t testing.TB) *cluster {
	c := &cluster{t: t, dir: t.TempDir()}
	t.Cleanup(func() {
		c.close()
		if t.Failed() {
			for _, n := range c.nodes {
				t.Logf("---- log of %s (last 60 lines) ----\n%s", n.ID, n.Tail(60))
			}
		}
	})
	return c
}

// close SIGKILLs every agent. Safe to call twice.
func (c *cluster) close() {
	for _, n := range c.nodes {
		n.Kill()
	}
}

// add declares a node with fresh ports and data dir; it is not started.
func (c *cluster) add(id string, extra ...string) *node {
	return c.addAt(c.nextPlacement(), id, extra...)
}

// nextPlacement is where the next node of the cluster runs: 127.0.0.1 as
// the test's user, or with network faults a fresh address and uid.
func (c *cluster) nextPlacement() localcluster.Placement {
	if c.faults == nil {
		return localcluster.DefaultPlacement
	}
	return c.faults.place()
}

// addAt declares a node placed at pl (see nextPlacement); it is not started.
func (c *cluster) addAt(pl localcluster.Placement, id string, extra ...string) *node {
	c.t.Helper()
	a, err := localcluster.NewAgent(agentBin, id, filepath.Join(c.dir, id), pl, extra...)
	if err != nil {
		c.t.Fatal(err)
	}
	a.Profile, a.LogLevel = "local", "debug"
	n := &node{Agent: a, t: c.t}
	c.nodes = append(c.nodes, n)
	return n
}

// start runs the agent with the node's settings and args; a failure to
// start fails the test.
func (n *node) start(args ...string) {
	n.t.Helper()
	if err := n.Start(args...); err != nil {
		n.t.Fatal(err)
	}
}

// eventually polls cond until it returns nil or the deadline passes.
var eventually = localcluster.Eventually
