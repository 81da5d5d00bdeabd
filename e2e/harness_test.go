// Package e2e runs the real agent binary: several processes on 127.0.0.1
// with free ports, started, killed, paused and restarted by the tests. A
// cluster with network faults (see netfault_test.go) runs each node on its
// own loopback address and uid instead.
package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
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

// handedOut are the ports freePort has returned in this process: the
// kernel may hand a port that was just closed out again, and a benchmark
// starts dozens of clusters.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// freePort returns a port free for TCP and UDP on 127.0.0.1 (gossip needs
// both), never one it returned before in this process.
func freePort(tb testing.TB) int {
	tb.Helper()
	low, high := portRange()
	for i := 0; i < 500; i++ {
		port := low + rand.IntN(high-low)
		handedOut.Lock()
		seen := handedOut.ports[port]
		handedOut.Unlock()
		if seen || !bindable(port) {
			continue
		}
		handedOut.Lock()
		handedOut.ports[port] = true
		handedOut.Unlock()
		return port
	}
	tb.Fatal("no free port")
	return 0
}

// portRange is where freePort picks: below the kernel's ephemeral range,
// so that no connection or port-0 listener (the tests' own HTTP servers,
// any outgoing connection) is given a port between the moment freePort
// checks it and the moment an agent binds it.
func portRange() (low, high int) {
	low, high = 20000, 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var eLow, eHigh int
		if _, err := fmt.Sscan(string(b), &eLow, &eHigh); err == nil && eLow > 12000 {
			high = eLow
			low = max(10000, eLow-12000)
		}
	}
	return low, high
}

// bindable reports whether port is free for both TCP and UDP on 127.0.0.1.
func bindable(port int) bool {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	u, err := net.ListenPacket("udp", addr)
	l.Close()
	if err != nil {
		return false
	}
	u.Close()
	return true
}

// gossipKey is shared by all agents of a test cluster.
var gossipKey = base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))

// node is one agent process and its settings.
type node struct {
	t  testing.TB
	id string
	placement
	dataDir    string
	gossipPort int
	raftPort   int
	httpPort   int
	extraArgs  []string
	// profile is the -profile it runs with ("local" unless a benchmark
	// says otherwise); logLevel its -log-level (debug for tests, info for
	// benchmarks, whose timings should not pay for five agents' debug logs).
	profile  string
	logLevel string

	mu      sync.Mutex
	cmd     *exec.Cmd
	logBuf  *bytes.Buffer
	logFile *os.File
	exited  chan struct{}
	exitErr error
}

// placement is where a node's processes (agent and app) run: the address
// they bind and the uid they run as. The zero uid is the test's own: the
// default placement is 127.0.0.1 as the test's user.
type placement struct {
	host string
	uid  int
}

// defaultPlacement is where nodes run unless their cluster has network
// faults.
var defaultPlacement = placement{host: "127.0.0.1"}

// runAs makes cmd run as the placement's uid (and gid), if it has one.
func (pl placement) runAs(cmd *exec.Cmd) {
	if pl.uid == 0 {
		return
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(pl.uid), Gid: uint32(pl.uid)}}
}

// ownDir creates dir (if missing) owned by the placement's uid with mode
// 0700: the agent refuses a data dir another user owns, and an app of the
// node needs its own dirs too. With the test's own uid it only creates it.
func (pl placement) ownDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if pl.uid == 0 {
		return nil
	}
	return os.Chown(dir, pl.uid, pl.uid)
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
				t.Logf("---- log of %s (last 60 lines) ----\n%s", n.id, n.tail(60))
			}
		}
	})
	return c
}

// close SIGKILLs every agent and closes their log files. Safe to call twice.
func (c *cluster) close() {
	for _, n := range c.nodes {
		n.kill()
		n.mu.Lock()
		if n.logFile != nil {
			n.logFile.Close()
			n.logFile = nil
		}
		n.mu.Unlock()
	}
}

// add declares a node with fresh ports and data dir; it is not started.
func (c *cluster) add(id string, extra ...string) *node {
	return c.addAt(c.nextPlacement(), id, extra...)
}

// nextPlacement is where the next node of the cluster runs: 127.0.0.1 as
// the test's user, or with network faults a fresh address and uid.
func (c *cluster) nextPlacement() placement {
	if c.faults == nil {
		return defaultPlacement
	}
	return c.faults.place()
}

// addAt declares a node placed at pl (see nextPlacement); it is not started.
func (c *cluster) addAt(pl placement, id string, extra ...string) *node {
	n := &node{
		t: c.t, id: id, placement: pl, dataDir: filepath.Join(c.dir, id),
		gossipPort: freePort(c.t), raftPort: freePort(c.t), httpPort: freePort(c.t),
		extraArgs: extra, profile: "local", logLevel: "debug",
	}
	c.nodes = append(c.nodes, n)
	return n
}

func (n *node) gossipAddr() string { return net.JoinHostPort(n.host, strconv.Itoa(n.gossipPort)) }
func (n *node) apiAddr() string    { return net.JoinHostPort(n.host, strconv.Itoa(n.httpPort)) }

// start runs the agent binary with the node's settings.
func (n *node) start(args ...string) {
	n.t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	all := []string{"run",
		"-node-id", n.id, "-data-dir", n.dataDir, "-bind", n.host,
		"-gossip-port", strconv.Itoa(n.gossipPort), "-raft-port", strconv.Itoa(n.raftPort),
		"-http-addr", n.apiAddr(), "-encrypt", gossipKey, "-profile", n.profile, "-log-level", n.logLevel,
	}
	all = append(all, n.extraArgs...)
	all = append(all, args...)
	cmd := exec.Command(agentBin, all...)
	n.runAs(cmd)
	if n.uid != 0 {
		// Created (again, after a test wiped it) for the node's uid: the
		// agent could not create it in the test's private temp dir.
		if err := n.ownDir(n.dataDir); err != nil {
			n.t.Fatal(err)
		}
	}
	if n.logFile == nil {
		f, err := os.Create(n.dataDir + ".log")
		if err != nil {
			n.t.Fatal(err)
		}
		n.logFile = f
	}
	n.logBuf = &bytes.Buffer{}
	w := io.MultiWriter(n.logFile, &lockedWriter{mu: &n.mu, w: n.logBuf})
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		n.t.Fatalf("start %s: %v", n.id, err)
	}
	n.cmd = cmd
	exited := make(chan struct{})
	n.exited = exited
	go func() {
		err := cmd.Wait()
		n.mu.Lock()
		n.exitErr = err
		n.mu.Unlock()
		close(exited)
	}()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// log returns everything this node's current process has printed.
func (n *node) log() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.logBuf == nil {
		return ""
	}
	return n.logBuf.String()
}

// tail returns the last lines of the node's whole log file.
func (n *node) tail(lines int) string {
	b, err := os.ReadFile(n.dataDir + ".log")
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

func (n *node) signal(sig syscall.Signal) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil && n.cmd.Process != nil {
		_ = n.cmd.Process.Signal(sig)
	}
}

// kill SIGKILLs the process (if running) and waits for it.
func (n *node) kill() {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGCONT)
	_ = cmd.Process.Kill()
	<-exited
}

// stop sends SIGTERM and waits for a clean exit.
func (n *node) stop(timeout time.Duration) error {
	n.signal(syscall.SIGTERM)
	select {
	case <-n.exited:
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.exitErr
	case <-time.After(timeout):
		n.kill()
		return fmt.Errorf("%s did not exit within %s of SIGTERM", n.id, timeout)
	}
}

// getJSON GETs path from the node's API.
func (n *node) getJSON(path string, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.apiAddr()+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s %s", n.id, path, resp.Status, strings.TrimSpace(string(body)))
	}
	return json.Unmarshal(body, out)
}

type status struct {
	NodeID       string `json:"node_id"`
	LeaderID     string `json:"leader_id"`
	RaftState    string `json:"raft_state"`
	Term         uint64 `json:"term"`
	AppliedIndex uint64 `json:"applied_index"`
	Voter        bool   `json:"voter"`
	Ready        bool   `json:"ready"`
}

type member struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Voter  bool   `json:"voter"`
}

type partition struct {
	ID       int      `json:"id"`
	Epoch    uint64   `json:"epoch"`
	Primary  string   `json:"primary"`
	Replicas []string `json:"replicas"`
}

type partitionTable struct {
	Settings struct {
		Partitions        int `json:"partitions"`
		ReplicationFactor int `json:"replication_factor"`
	} `json:"settings"`
	Partitions []partition `json:"partitions"`
}

func (n *node) status() (status, error) {
	var s status
	return s, n.getJSON("/v1/status", &s)
}

func (n *node) members() ([]member, error) {
	var r struct {
		Members []member `json:"members"`
	}
	return r.Members, n.getJSON("/v1/members", &r)
}

func (n *node) partitions() (partitionTable, error) {
	var p partitionTable
	return p, n.getJSON("/v1/partitions", &p)
}

// eventually polls cond until it returns nil or the deadline passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not true after %s: %v", what, timeout, err)
}
