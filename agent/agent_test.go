package agent

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	"github.com/steward-dev/steward/failover"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// net/http's keep-alive connections of http.DefaultClient, used by
		// the client sub-commands under test, close on their own schedule.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

var testKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

// testConfig is an agent on 127.0.0.1 with free ports and fast timings.
func testConfig(t *testing.T, id string, dataDir string) Config {
	cfg := DefaultConfig()
	cfg.NodeID = id
	cfg.DataDir = dataDir
	cfg.GossipPort = 0
	cfg.RaftPort = 0
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Profile = "local"
	cfg.Encrypt = testKey
	cfg.Partitions = 32
	cfg.JoinTimeout = Duration(20 * time.Second)
	return cfg
}

func startAgent(t *testing.T, cfg Config) *Agent {
	t.Helper()
	out := &quietAfterShutdown{t: t}
	logger := hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: out})
	a, err := New(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatalf("start %s: %v", cfg.NodeID, err)
	}
	t.Cleanup(func() {
		_ = a.Shutdown()
		out.stop()
	})
	return a
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// quietAfterShutdown is a testWriter that drops what is written once the
// agent has shut down: memberlist's probe goroutines are not joined by its
// Shutdown, and one that logs a failed ping after the test has ended
// makes the testing package panic ("Log in goroutine after Test... has
// completed"), seen with three agents in one process under load.
type quietAfterShutdown struct {
	t       *testing.T
	mu      sync.Mutex
	stopped bool
}

func (w *quietAfterShutdown) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *quietAfterShutdown) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not true after %s: %v", what, timeout, err)
}

func get(t *testing.T, a *Agent, path string, out any) (int, error) {
	resp, err := http.Get("http://" + a.HTTPAddr() + path)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, out); err != nil {
			return resp.StatusCode, err
		}
	}
	return resp.StatusCode, nil
}

func TestThreeAgentsInOneProcessFormOneCluster(t *testing.T) {
	dir := t.TempDir()
	var agents []*Agent
	first := testConfig(t, "a1", filepath.Join(dir, "a1"))
	first.BootstrapExpect = 3
	agents = append(agents, startAgent(t, first))
	for _, id := range []string{"a2", "a3"} {
		cfg := testConfig(t, id, filepath.Join(dir, id))
		cfg.BootstrapExpect = 3
		cfg.Join = []string{agents[0].GossipAddr()}
		agents = append(agents, startAgent(t, cfg))
	}

	waitFor(t, 30*time.Second, "one leader and the same table on all three", func() error {
		var leader string
		var table []failover.Partition
		for i, a := range agents {
			var st Status
			if _, err := get(t, a, "/v1/status", &st); err != nil {
				return err
			}
			if st.LeaderID == "" || (i > 0 && st.LeaderID != leader) {
				return fmt.Errorf("%s: leader %q", st.NodeID, st.LeaderID)
			}
			leader = st.LeaderID
			var pt PartitionsView
			code, err := get(t, a, "/v1/partitions", &pt)
			if err != nil || code != http.StatusOK {
				return fmt.Errorf("%s partitions: %d %v", st.NodeID, code, err)
			}
			if len(pt.Partitions) != 32 {
				return fmt.Errorf("%s has %d partitions", st.NodeID, len(pt.Partitions))
			}
			if i > 0 && fmt.Sprint(pt.Partitions) != fmt.Sprint(table) {
				return fmt.Errorf("%s's table differs", st.NodeID)
			}
			table = pt.Partitions
		}
		return nil
	})

	waitFor(t, 30*time.Second, "three alive voters", func() error {
		var ms struct{ Members []MemberView }
		if _, err := get(t, agents[2], "/v1/members", &ms); err != nil {
			return err
		}
		if len(ms.Members) != 3 {
			return fmt.Errorf("%d members", len(ms.Members))
		}
		for _, m := range ms.Members {
			if m.Status != "alive" || !m.Voter {
				return fmt.Errorf("%+v", m)
			}
		}
		return nil
	})

	// A follower forwards a write to the leader.
	var follower *Agent
	for _, a := range agents {
		if !a.raft.IsLeader() {
			follower = a
			break
		}
	}
	res, err := follower.apply(failover.Command{Kind: failover.CmdSetAppHealth, Node: follower.cfg.NodeID, AppUnhealthy: false})
	if err != nil {
		t.Fatalf("forwarded apply: %v (%+v)", err, res)
	}
	// A forwarded command that the state refuses comes back as an error.
	if _, err := follower.apply(failover.Command{Kind: failover.CmdSetVoter, Node: "nobody"}); err == nil || !strings.Contains(err.Error(), "unknown member") {
		t.Fatalf("want the leader's refusal, got %v", err)
	}

	// Metrics expose raft state and partitions per node.
	resp, err := http.Get("http://" + agents[0].HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"steward_raft_state{state=\"leader\"}", "steward_partitions_primary{node=\"a1\"}", "steward_members{status=\"alive\"} 3", "steward_raft_apply_seconds_bucket"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestUnknownEndpointsAndBadBodiesGetJSONErrors(t *testing.T) {
	cfg := testConfig(t, "solo", t.TempDir())
	cfg.BootstrapExpect = 1
	cfg.APIToken = "s3cret"
	a := startAgent(t, cfg)
	for _, c := range []struct {
		method, path, token, body string
		want                      int
	}{
		{"GET", "/v1/nope", "", "", http.StatusNotFound},
		{"POST", "/v1/maintenance", "", "x", http.StatusUnauthorized},
		{"POST", "/v1/maintenance", "wrong", "x", http.StatusUnauthorized},
		{"POST", "/v1/maintenance", "s3cret", "garbage", http.StatusBadRequest},
		{"POST", "/v1/internal/apply", "s3cret", "x", http.StatusNotFound},
	} {
		req, _ := http.NewRequest(c.method, "http://"+a.HTTPAddr()+c.path, strings.NewReader(c.body))
		req.Header.Set("Content-Type", "application/json")
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e APIError
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != c.want || e.Error == "" {
			t.Errorf("%s %s: %d %q, want %d with an error message", c.method, c.path, resp.StatusCode, e.Error, c.want)
		}
	}
	// The UI page is served.
	resp, err := http.Get("http://" + a.HTTPAddr() + "/ui")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "/v1/partitions") {
		t.Fatalf("/ui: %d", resp.StatusCode)
	}
	// The agent still works after bad input.
	if code, err := get(t, a, "/v1/health", nil); err != nil || code != 200 {
		t.Fatalf("health after bad input: %d %v", code, err)
	}
}

func TestDataDirOfAnotherNodeIsRefused(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "node-id"), []byte("other\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := New(testConfig(t, "me", dir), nil)
	if err != nil {
		t.Fatal(err)
	}
	err = a.Start()
	if err == nil || !strings.Contains(err.Error(), `belongs to node "other"`) {
		t.Fatalf("want a refusal naming the owner, got %v", err)
	}
}

// A state file holding garbage is an error that names the file and says
// what to do, never a zero or an empty value taken at face value.
func TestGarbageInStateFilesIsAnErrorNamingTheFile(t *testing.T) {
	for _, c := range []struct {
		file, content string
		webhooks      bool
		says          string
	}{
		{"node-id", "\x00\x01\xfe garbage", false, "not a node ID"},
		{"node-id", "", false, "not a node ID"},
		{"raft-id", "garbage", false, "not a raft ID"},
		{"raft-id", "me-zzzzzzzz", false, "not a raft ID"},
		{"incarnation", "garbage", true, "not an incarnation number"},
		{"webhook-secret", "garbage", true, `does not start with "whsec_"`},
		{"webhook-secret", "whsec_Z2FyYmFnZQ==", true, "holds 7 bytes"},
		{"gossip-peers.json", "garbage", false, "not a list of gossip peers"},
		{"gossip-peers.json", `{"peers":["nowhere"]}`, false, "not host:port"},
	} {
		t.Run(c.file+" "+c.content, func(t *testing.T) {
			dir := t.TempDir()
			if c.file != "node-id" {
				os.WriteFile(filepath.Join(dir, "node-id"), []byte("me\n"), 0o600)
			}
			path := filepath.Join(dir, c.file)
			if err := os.WriteFile(path, []byte(c.content), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := testConfig(t, "me", dir)
			if c.webhooks {
				cfg.WebhookURL = "http://127.0.0.1:1/hooks"
				cfg.AppAddr = "127.0.0.1:1"
			}
			a, err := New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = a.Start()
			if err == nil {
				a.Shutdown()
				t.Fatalf("the agent started on a %s holding %q", c.file, c.content)
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("error %q, want it to name %s and say %q", err, path, c.says)
			}
		})
	}
}

func TestWorldWritableDataDirIsRefused(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	a, err := New(testConfig(t, "me", dir), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err == nil || !strings.Contains(err.Error(), "writable by everyone") {
		t.Fatalf("want a refusal, got %v", err)
	}
}

func TestDataDirIsTightenedTo0700(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := checkDataDirTrust(dir); err != nil {
		t.Fatal(err)
	}
	info, _ := os.Stat(dir)
	if info.Mode().Perm() != 0o700 {
		t.Fatalf("mode %04o, want 0700", info.Mode().Perm())
	}
}
