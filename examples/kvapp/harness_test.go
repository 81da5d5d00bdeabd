package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/steward-dev/steward/client"
	"github.com/steward-dev/steward/hooks"
	"github.com/steward-dev/steward/localcluster"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var testSecret = []byte("kvapp-test-secret-0123456789abcdef")

// fakeCluster plays the agents: one table and member list shared by a fake
// agent per node (each answering /v1/status with its own node ID), and a
// record of the migration acknowledgements they receive.
type fakeCluster struct {
	t          testing.TB
	mu         sync.Mutex
	partitions int
	parts      map[int]partitionView
	members    map[string]memberView
	fetches    int
	completed  []string // "node/migration"
	failed     []string
	holdings   map[string][][]int // every holdings report, by node
	// refuseHoldings makes the fake agents answer holdings reports 503, as
	// an agent that has not caught up does.
	refuseHoldings bool
	// leaseless are the nodes whose fake agent holds no primary lease (cut
	// off from its leader); the others are granted every partition the
	// table makes them primary of.
	leaseless map[string]bool
	// frozenLease are grants kept as they were when freezeLease was called
	// (a lease granted before a later change of the table).
	frozenLease map[string]map[string]uint64
	// behind are partition entries one node's fake agent still serves
	// in place of the table's (an agent that has not applied the latest
	// change yet).
	behind map[string]map[int]partitionView
	// index is the state index the fake agents serve (X-Steward-Index),
	// raised by every change of the table or the members.
	index uint64
	// frozen are whole views one node's fake agent serves in place of the
	// current one, with their index (freeze).
	frozen map[string]frozenView
	nodes  map[string]*testNode
	client *http.Client
}

// frozenView is a table and member list as they were at index.
type frozenView struct {
	parts   map[int]partitionView
	members map[string]memberView
	index   uint64
}

// testNode is one kvapp under test with its fake agent.
type testNode struct {
	id      string
	dataDir string
	srv     *server
	ts      *httptest.Server
	agent   *httptest.Server
}

func newFakeCluster(t testing.TB, partitions int) *fakeCluster {
	tr := &http.Transport{}
	c := &fakeCluster{t: t, partitions: partitions, parts: map[int]partitionView{}, members: map[string]memberView{},
		nodes: map[string]*testNode{}, holdings: map[string][][]int{}, leaseless: map[string]bool{}, frozenLease: map[string]map[string]uint64{}, behind: map[string]map[int]partitionView{}, frozen: map[string]frozenView{}, client: &http.Client{Transport: tr}}
	t.Cleanup(tr.CloseIdleConnections)
	return c
}

// setPartition replaces one partition's entry in the table.
func (c *fakeCluster) setPartition(p partitionView) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.parts[p.ID] = p
	c.index++
}

// setAll gives every partition the same placement at epoch.
func (c *fakeCluster) setAll(epoch uint64, primary string, replicas ...string) {
	for id := 0; id < c.partitions; id++ {
		c.setPartition(partitionView{ID: id, Epoch: epoch, Primary: primary, Replicas: replicas})
	}
}

// setBehind makes node's fake agent serve p in place of the table's entry
// for p.ID, as an agent that has not applied the latest change would.
func (c *fakeCluster) setBehind(node string, p partitionView) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.behind[node] == nil {
		c.behind[node] = map[int]partitionView{}
	}
	c.behind[node][p.ID] = p
}

// changeMember applies f to id's member entry, a change of the state like
// any other (the index goes up).
func (c *fakeCluster) changeMember(id string, f func(m *memberView)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.members[id]
	f(&m)
	c.members[id] = m
	c.index++
}

func (c *fakeCluster) setMemberStatus(id, status string) {
	c.changeMember(id, func(m *memberView) { m.Status = status })
}

// freeze makes node's fake agent serve the table and members as they are
// now, at today's index, whatever changes next: an agent that has not
// applied the changes after it.
func (c *fakeCluster) freeze(node string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.frozen[node] = frozenView{parts: maps.Clone(c.parts), members: maps.Clone(c.members), index: c.index}
}

// addMember lists id as an alive member with its app at addr, without an
// app of the harness behind it.
func (c *fakeCluster) addMember(id, addr string) {
	c.changeMember(id, func(m *memberView) { *m = memberView{ID: id, Status: "alive", AppAddr: addr} })
}

// setAppAddr makes the table give addr as id's app address (a proxy in
// front of the app).
func (c *fakeCluster) setAppAddr(id, addr string) {
	c.changeMember(id, func(m *memberView) { m.AppAddr = addr })
}

// setLease gives node's fake agent a lease (granted) or none.
func (c *fakeCluster) setLease(node string, granted bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.leaseless[node] = !granted
}

// freezeLease keeps node's grants as they are now, whatever the table
// does next.
func (c *fakeCluster) freezeLease(node string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.frozenLease[node] = c.grantsLocked(node)
}

// grantsLocked are the partitions the table makes node primary of, with
// their epochs, as GET /v1/lease lists them.
func (c *fakeCluster) grantsLocked(node string) map[string]uint64 {
	out := map[string]uint64{}
	for id, p := range c.parts {
		if p.Primary == node {
			out[strconv.Itoa(id)] = p.Epoch
		}
	}
	return out
}

func (c *fakeCluster) fetchCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fetches
}

func (c *fakeCluster) acks() (completed, failed []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.completed...), append([]string(nil), c.failed...)
}

func (c *fakeCluster) agentHandler(node string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"node_id": node})
	})
	mux.HandleFunc("GET /v1/partitions", func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.fetches++
		table, behind, index := c.parts, c.behind[node], c.index
		if f, ok := c.frozen[node]; ok {
			table, behind, index = f.parts, nil, f.index
		}
		w.Header().Set(client.IndexHeader, strconv.FormatUint(index, 10))
		var parts []partitionView
		for id := 0; id < c.partitions; id++ {
			if p, ok := behind[id]; ok {
				parts = append(parts, p)
			} else if p, ok := table[id]; ok {
				parts = append(parts, p)
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"settings":   map[string]int{"partitions": c.partitions, "replication_factor": 3},
			"partitions": parts,
		})
	})
	mux.HandleFunc("GET /v1/lease", func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		defer c.mu.Unlock()
		primaries := map[string]uint64{}
		if c.leaseless[node] {
			writeJSON(w, http.StatusOK, map[string]any{"valid": false, "remaining_ms": 0, "primaries": primaries})
			return
		}
		if frozen, ok := c.frozenLease[node]; ok {
			primaries = frozen
		} else {
			primaries = c.grantsLocked(node)
		}
		writeJSON(w, http.StatusOK, map[string]any{"valid": true, "remaining_ms": 500, "primaries": primaries})
	})
	mux.HandleFunc("GET /v1/members", func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		defer c.mu.Unlock()
		members := c.members
		if f, ok := c.frozen[node]; ok {
			members = f.members
		}
		var ms []memberView
		for _, m := range members {
			ms = append(ms, m)
		}
		writeJSON(w, http.StatusOK, map[string]any{"members": ms})
	})
	mux.HandleFunc("POST "+hooks.HoldingsPath, func(w http.ResponseWriter, r *http.Request) {
		var h hooks.Holdings
		if err := json.NewDecoder(r.Body).Decode(&h); err != nil || h.Partitions == nil {
			http.Error(w, `{"error":"bad holdings"}`, http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		refuse := c.refuseHoldings
		if !refuse {
			c.holdings[node] = append(c.holdings[node], h.Partitions)
		}
		c.mu.Unlock()
		if refuse {
			http.Error(w, `{"error":"not caught up"}`, http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, http.StatusOK, hooks.HoldingsResult{Node: node, Lost: []int{}, DataLost: []int{}, Redelivered: []int{}})
	})
	mux.HandleFunc("POST /v1/migrations/{id}/{verb}", func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		defer c.mu.Unlock()
		rec := node + "/" + r.PathValue("id")
		switch r.PathValue("verb") {
		case "complete":
			c.completed = append(c.completed, rec)
		case "fail":
			c.failed = append(c.failed, rec)
		default:
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

// addNode starts a kvapp on a fresh data dir and its fake agent, and
// lists it as an alive member with its app address.
func (c *fakeCluster) addNode(id string) *testNode {
	return c.startNode(id, c.t.TempDir(), "")
}

// startNodeNoWait starts a kvapp like addNode, without waiting for its
// holdings report to be taken.
func (c *fakeCluster) startNodeNoWait(id, dataDir string) *testNode {
	return c.startNodeAt(id, dataDir, "", false)
}

// restart stops n's app (its fake agent and address stay) and starts it
// again on dataDir: n's own to restart it with its data, a fresh one for
// an app whose data dir was wiped.
func (c *fakeCluster) restart(n *testNode, dataDir string) *testNode {
	c.t.Helper()
	n.ts.Close()
	n.srv.Close()
	n.agent.Close()
	return c.startNode(n.id, dataDir, n.ts.Listener.Addr().String())
}

func (c *fakeCluster) startNode(id, dataDir, addr string) *testNode {
	return c.startNodeAt(id, dataDir, addr, true)
}

func (c *fakeCluster) startNodeAt(id, dataDir, addr string, wait bool) *testNode {
	t := c.t
	t.Helper()
	agent := httptest.NewServer(c.agentHandler(id))
	ts := httptest.NewUnstartedServer(nil)
	if addr != "" {
		ts.Listener.Close()
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("listen again on %s: %v", addr, err)
		}
		ts.Listener = ln
	}
	cfg := DefaultConfig()
	cfg.Addr = ts.Listener.Addr().String()
	cfg.AgentURL = agent.URL
	cfg.DataDir = dataDir
	cfg.WebhookSecret = testSecret
	cfg.APIToken = "agent-token"
	cfg.RetryBudget = 5 * time.Second
	cfg.PeerTimeout = time.Second
	cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := newServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts.Config.Handler = srv.Handler()
	ts.Start()
	n := &testNode{id: id, dataDir: dataDir, srv: srv, ts: ts, agent: agent}
	t.Cleanup(func() {
		ts.Close()
		srv.Close()
		agent.Close()
	})
	c.mu.Lock()
	c.members[id] = memberView{ID: id, Status: "alive", AppAddr: cfg.Addr}
	c.index++
	c.nodes[id] = n
	c.mu.Unlock()
	if wait {
		eventually(t, id+" to report its holdings", srv.reported.Load)
	}
	return n
}

// reports returns the holdings reports node made, oldest first.
func (c *fakeCluster) reports(node string) [][]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]int(nil), c.holdings[node]...)
}

// testWriter sends the app's logs to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// deliver signs ev as the agent would and posts it to n's webhook
// endpoint, returning the status.
func (c *fakeCluster) deliver(n *testNode, ev hooks.Event) int {
	return c.deliverSigned(n, ev, testSecret)
}

func (c *fakeCluster) deliverSigned(n *testNode, ev hooks.Event, secret []byte) int {
	t := c.t
	t.Helper()
	ev.NodeID = n.id
	if ev.ID == "" {
		ev.ID = hooks.EventID(n.id, ev.Partition, ev.Epoch, ev.Type)
	}
	ev.Timestamp = time.Now().Unix()
	body, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, n.ts.URL+"/steward/events", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	hooks.SignHeaders(req.Header, secret, ev.ID, time.Now(), body)
	resp, err := c.client.Do(req)
	if err != nil {
		t.Fatalf("deliver %s to %s: %v", ev.Type, n.id, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// assignFromTable delivers to every node the assign its role in the
// table calls for, as each agent would at start-up, and fails the test
// unless each is acknowledged with 204.
func (c *fakeCluster) assignFromTable() {
	c.t.Helper()
	c.mu.Lock()
	parts := make([]partitionView, 0, len(c.parts))
	for _, p := range c.parts {
		parts = append(parts, p)
	}
	c.mu.Unlock()
	for _, p := range parts {
		roles := map[string]string{p.Primary: hooks.RolePrimary}
		for _, r := range p.Replicas {
			roles[r] = hooks.RoleReplica
		}
		for _, id := range p.copies("") {
			n := c.nodes[id]
			if n == nil || roles[id] == "" {
				continue
			}
			if code := c.deliver(n, hooks.Event{Type: hooks.TypeAssign, Partition: p.ID, Epoch: p.Epoch, Role: roles[id]}); code != http.StatusNoContent {
				c.t.Fatalf("assign p%d e%d to %s: status %d", p.ID, p.Epoch, id, code)
			}
		}
	}
}

func (c *fakeCluster) put(n *testNode, key, value string) (int, string) {
	c.t.Helper()
	code, body, err := c.tryPut(n, key, value)
	if err != nil {
		c.t.Fatal(err)
	}
	return code, body
}

// mustPut writes key through n and fails the test unless the write is
// acknowledged.
func (c *fakeCluster) mustPut(n *testNode, key, value string) {
	c.t.Helper()
	if code, body := c.put(n, key, value); code != http.StatusNoContent {
		c.t.Fatalf("put %s through %s: %d %s", key, n.id, code, body)
	}
}

// tryPut is put without the test's Fatal, for any goroutine.
func (c *fakeCluster) tryPut(n *testNode, key, value string) (int, string, error) {
	req, err := http.NewRequest(http.MethodPut, n.ts.URL+"/kv/"+key, strings.NewReader(value))
	if err != nil {
		return 0, "", err
	}
	return c.tryDo(req)
}

func (c *fakeCluster) get(n *testNode, key string) (int, string) {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodGet, n.ts.URL+"/kv/"+key, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	return c.do(req)
}

func (c *fakeCluster) do(req *http.Request) (int, string) {
	c.t.Helper()
	code, body, err := c.tryDo(req)
	if err != nil {
		c.t.Fatal(err)
	}
	return code, body
}

func (c *fakeCluster) tryDo(req *http.Request) (int, string, error) {
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("%s %s: %w", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// stored reads a key straight from n's memory, whatever n's role.
func stored(n *testNode, partition int, key string) (string, bool) {
	n.srv.store.mu.Lock()
	defer n.srv.store.mu.Unlock()
	p := n.srv.store.parts[partition]
	if p == nil {
		return "", false
	}
	e, ok := p.data[key]
	return string(e.value), ok
}

// keyCount is how many keys n holds for a partition.
func keyCount(n *testNode, partition int) int {
	n.srv.store.mu.Lock()
	defer n.srv.store.mu.Unlock()
	if p := n.srv.store.parts[partition]; p != nil {
		return len(p.data)
	}
	return 0
}

// eventually polls cond until it holds or 5 s pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	localcluster.EventuallyEvery(t, 10*time.Millisecond, 5*time.Second, what, func() error {
		if !cond() {
			return errors.New("not yet")
		}
		return nil
	})
}

// replicate posts a replicated write to n directly, as a primary would.
func (c *fakeCluster) replicate(n *testNode, msg replicateMsg) (int, apiError) {
	c.t.Helper()
	body, _ := json.Marshal(msg)
	resp, err := c.client.Post(n.ts.URL+"/internal/replicate", "application/json", bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var e apiError
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &e)
	return resp.StatusCode, e
}

func keyIn(partition, partitions int, prefix string) string {
	for i := 0; ; i++ {
		k := fmt.Sprintf("%s%d", prefix, i)
		if partitionOf(k, partitions) == partition {
			return k
		}
	}
}

func timeNow() time.Time { return time.Now() }
