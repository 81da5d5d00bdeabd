package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/steward-dev/steward/hooks"
)

// Data scenarios: every node is an agent plus a kvapp. The agent's webhooks
// go through a proxy in the test process that checks every signature and
// can make the app answer 500 for a while, then to the kvapp.

const testWebhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// webhookProxy forwards signed webhooks to an app, verifying each.
type webhookProxy struct {
	t        *testing.T
	srv      *httptest.Server
	target   string
	secret   []byte
	failing  atomic.Bool
	bad      atomic.Int64
	good     atomic.Int64
	refused  atomic.Int64
	upstream *http.Client

	mu    sync.Mutex
	types map[string]int // verified events by type
}

// seen returns how many verified events of type typ went through.
func (p *webhookProxy) seen(typ string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.types[typ]
}

func newWebhookProxy(t *testing.T, target string) *webhookProxy {
	secret, err := hooks.ParseSecret(testWebhookSecret)
	if err != nil {
		t.Fatal(err)
	}
	p := &webhookProxy{t: t, target: target, secret: secret, upstream: &http.Client{Timeout: 10 * time.Second}}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *webhookProxy) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if err := hooks.Verify(p.secret, r.Header, body, time.Now(), time.Minute); err != nil {
		p.bad.Add(1)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	p.good.Add(1)
	var ev struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(body, &ev) == nil {
		p.mu.Lock()
		if p.types == nil {
			p.types = map[string]int{}
		}
		p.types[ev.Type]++
		p.mu.Unlock()
	}
	if p.failing.Load() {
		p.refused.Add(1)
		http.Error(w, "injected failure", http.StatusInternalServerError)
		return
	}
	req, _ := http.NewRequestWithContext(r.Context(), r.Method, p.target, bytes.NewReader(body))
	req.Header = r.Header.Clone()
	resp, err := p.upstream.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	w.WriteHeader(resp.StatusCode)
	w.Write(out)
}

// kvappProcess is the kvapp next to one agent; tests and benchmarks embed
// it beside the agent's *node.
type kvappProcess struct {
	// appPlace is the node's placement: the app binds its address and runs
	// as its uid, so that a network fault cuts the app with its agent.
	appPlace placement
	appPort  int
	logLevel string // debug for tests, info for benchmarks
	// appDataDir is the app's --data-dir (set by runApp): it survives the
	// app's restarts unless a test wipes it.
	appDataDir string
	app        *exec.Cmd
	appLog     *os.File
	appDone    chan struct{}
}

func (p *kvappProcess) appAddr() string {
	host := p.appPlace.host
	if host == "" {
		host = defaultPlacement.host
	}
	return net.JoinHostPort(host, strconv.Itoa(p.appPort))
}

// agentAppFlags are the agent flags that bind it to its kvapp, its
// webhooks going to webhookURL.
func (p *kvappProcess) agentAppFlags(webhookURL string) []string {
	return []string{
		"-webhook-url", webhookURL,
		"-app-addr", p.appAddr(),
		"-app-health-url", "http://" + p.appAddr() + "/healthz",
		"-webhook-secret", testWebhookSecret,
	}
}

// runApp starts the kvapp for the agent at apiAddr, with its data in
// nodeDir+".app" and its log in nodeDir+".app.log" (nodeDir is the agent's
// data dir).
func (p *kvappProcess) runApp(tb testing.TB, apiAddr, nodeDir string) {
	tb.Helper()
	f, err := os.OpenFile(nodeDir+".app.log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		tb.Fatal(err)
	}
	p.appDataDir = nodeDir + ".app"
	if err := p.appPlace.ownDir(p.appDataDir); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(kvappBin, "--addr", p.appAddr(), "--agent", "http://"+apiAddr, "--data-dir", p.appDataDir,
		"--webhook-secret", testWebhookSecret, "--log-level", p.logLevel)
	p.appPlace.runAs(cmd)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	p.app, p.appLog, p.appDone = cmd, f, done
	go func() { cmd.Wait(); close(done) }()
}

// stopApp sends sig to the kvapp, if running, and waits for it to exit.
func (p *kvappProcess) stopApp(sig syscall.Signal) {
	if p.app == nil {
		return
	}
	_ = p.app.Process.Signal(sig)
	<-p.appDone
	p.app = nil
	p.appLog.Close()
}

func (p *kvappProcess) killApp() { p.stopApp(syscall.SIGKILL) }

// wipeAppData removes the app's data dir, as a lost disk does; the app
// must not be running.
func (p *kvappProcess) wipeAppData(tb testing.TB) {
	tb.Helper()
	if p.app != nil {
		tb.Fatal("wiping the data dir of a running app")
	}
	if err := os.RemoveAll(p.appDataDir); err != nil {
		tb.Fatal(err)
	}
}

// appNode is an agent with its kvapp, its webhooks going through a proxy
// that checks every signature.
type appNode struct {
	*node
	kvappProcess
	proxy *webhookProxy
}

func addAppNode(t *testing.T, c *cluster, id string, extra ...string) *appNode {
	pl := c.nextPlacement()
	an := &appNode{kvappProcess: kvappProcess{appPlace: pl, appPort: freePort(t), logLevel: "debug"}}
	an.proxy = newWebhookProxy(t, "http://"+an.appAddr()+"/steward/events")
	an.node = c.addAt(pl, id, append(slices.Clone(extra), an.agentAppFlags(an.proxy.srv.URL+"/steward/events")...)...)
	t.Cleanup(an.killApp)
	return an
}

func (a *appNode) startApp(t *testing.T) { a.runApp(t, a.apiAddr(), a.dataDir) }

// killNode SIGKILLs agent and app together, as a machine loss does.
func (a *appNode) killNode() {
	a.killApp()
	a.kill()
}

func putKey(client *http.Client, addr, key, value string) error {
	req, _ := http.NewRequest(http.MethodPut, "http://"+addr+"/kv/"+url.PathEscape(key), bytes.NewBufferString(value))
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("PUT %s: %s", key, resp.Status)
	}
	return nil
}

func getKey(client *http.Client, addr, key string) (string, int, error) {
	resp, err := client.Get("http://" + addr + "/kv/" + url.PathEscape(key))
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode, nil
}

// writer writes keys through random nodes and remembers every write that
// was acknowledged.
type writer struct {
	mu    sync.Mutex
	acked map[string]string
	tried int
}

func (w *writer) run(ctx context.Context, nodes func() []*appNode, prefix string, n int) {
	client := &http.Client{Timeout: 15 * time.Second}
	rng := rand.New(rand.NewPCG(1, uint64(len(prefix))))
	for i := 0; i < n && ctx.Err() == nil; i++ {
		ns := nodes()
		target := ns[rng.IntN(len(ns))]
		key := fmt.Sprintf("%s-%d", prefix, i)
		value := "v" + strconv.Itoa(i) + "-" + prefix
		w.mu.Lock()
		w.tried++
		w.mu.Unlock()
		if putKey(client, target.appAddr(), key, value) == nil {
			w.mu.Lock()
			w.acked[key] = value
			w.mu.Unlock()
		}
	}
}

func (w *writer) snapshot() map[string]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]string, len(w.acked))
	for k, v := range w.acked {
		out[k] = v
	}
	return out
}

// formAppCluster starts n agents and kvapps and waits until the table is
// settled and every app has acknowledged its assignment.
func formAppCluster(t *testing.T, c *cluster, n int, extra ...string) []*appNode {
	t.Helper()
	var nodes []*appNode
	for i := 1; i <= n; i++ {
		nodes = append(nodes, addAppNode(t, c, fmt.Sprintf("node%d", i), extra...))
	}
	for _, an := range nodes {
		an.startApp(t)
		an.start("-bootstrap-expect", strconv.Itoa(n), "-join", nodes[0].gossipAddr())
	}
	waitSameTable(t, plainNodes(nodes), 60*time.Second)
	waitSettled(t, nodes, 3)
	return nodes
}

func plainNodes(ans []*appNode) []*node {
	var out []*node
	for _, a := range ans {
		out = append(out, a.node)
	}
	return out
}

// waitSettled waits until every partition has rf copies, no migration is in
// flight, and every agent's app has acknowledged everything.
func waitSettled(t *testing.T, nodes []*appNode, rf int) {
	t.Helper()
	eventually(t, 90*time.Second, "table settled and every webhook acknowledged", func() error {
		return settledError(plainNodes(nodes), rf)
	})
}

// settledError says why the cluster is not settled yet: a partition without
// rf copies or with a migration in flight (on the first agent's table), or
// an agent with an undelivered webhook; nil once settled.
func settledError(nodes []*node, rf int) error {
	var r struct {
		Partitions []struct {
			ID         int      `json:"id"`
			Primary    string   `json:"primary"`
			Replicas   []string `json:"replicas"`
			Migrations []any    `json:"migrations"`
		} `json:"partitions"`
	}
	if err := nodes[0].getJSON("/v1/partitions", &r); err != nil {
		return err
	}
	for _, p := range r.Partitions {
		if p.Primary == "" || 1+len(p.Replicas) != rf || len(p.Migrations) != 0 {
			return fmt.Errorf("partition %d: primary %q replicas %v migrations %d", p.ID, p.Primary, p.Replicas, len(p.Migrations))
		}
	}
	for _, n := range nodes {
		var st struct {
			Undelivered int `json:"undelivered_events"`
		}
		if err := n.getJSON("/v1/status", &st); err != nil {
			return err
		}
		if st.Undelivered != 0 {
			return fmt.Errorf("%s has %d undelivered events", n.id, st.Undelivered)
		}
	}
	return nil
}

// checkAllReadable reads every acknowledged key through every node.
func checkAllReadable(t *testing.T, nodes []*appNode, acked map[string]string) {
	t.Helper()
	client := &http.Client{Timeout: 15 * time.Second}
	for _, an := range nodes {
		missing := 0
		var first string
		for k, v := range acked {
			got, code, err := getKey(client, an.appAddr(), k)
			if err != nil || code != http.StatusOK || got != v {
				missing++
				if first == "" {
					first = fmt.Sprintf("%s: got %q (%d, %v), want %q", k, got, code, err, v)
				}
			}
		}
		if missing > 0 {
			t.Fatalf("through %s, %d of %d acknowledged keys are lost or wrong; first: %s", an.id, missing, len(acked), first)
		}
	}
}

func mostPrimaries(t *testing.T, nodes []*appNode, among []*appNode) *appNode {
	t.Helper()
	pt, err := nodes[0].partitions()
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, p := range pt.Partitions {
		count[p.Primary]++
	}
	best := among[0]
	for _, an := range among {
		if count[an.id] > count[best.id] {
			best = an
		}
	}
	return best
}

func appWithout(nodes []*appNode, gone *appNode) []*appNode {
	var out []*appNode
	for _, n := range nodes {
		if n != gone {
			out = append(out, n)
		}
	}
	return out
}

func checkSignatures(t *testing.T, nodes []*appNode) {
	t.Helper()
	total := int64(0)
	for _, an := range nodes {
		if b := an.proxy.bad.Load(); b != 0 {
			t.Fatalf("%s's app got %d webhooks with a bad signature", an.id, b)
		}
		total += an.proxy.good.Load()
	}
	if total == 0 {
		t.Fatal("no webhook was delivered at all")
	}
}

// killScenario writes keys, kills one node (agent and app) while writing,
// and checks that every acknowledged write survives on every survivor.
func killScenario(t *testing.T, pickVictim func(nodes []*appNode) *appNode, failApp bool) {
	c := newCluster(t)
	nodes := formAppCluster(t, c, 5, "-partitions", "32", "-replication-factor", "3")
	w := &writer{acked: map[string]string{}}
	w.run(context.Background(), func() []*appNode { return nodes }, "before", 200)
	if len(w.snapshot()) < 190 {
		t.Fatalf("only %d of 200 writes acknowledged on a healthy cluster", len(w.snapshot()))
	}
	victim := pickVictim(nodes)
	survivors := appWithout(nodes, victim)
	if failApp {
		// One survivor's app answers 500 to every webhook for a while:
		// what it must do (promotions, copies) waits and is delivered once
		// it recovers.
		survivors[0].proxy.failing.Store(true)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.run(ctx, func() []*appNode { return survivors }, "during", 300)
	}()
	victim.killNode()
	waitFailedAndRemoved(t, plainNodes(survivors), victim.node)
	if failApp {
		eventually(t, 30*time.Second, "the failing app was asked something", func() error {
			if survivors[0].proxy.refused.Load() == 0 {
				return fmt.Errorf("no webhook refused yet")
			}
			return nil
		})
		survivors[0].proxy.failing.Store(false)
	}
	wg.Wait()
	cancel()
	waitSettled(t, survivors, 3)
	checkNoPartitionOn(t, survivors[0].node, victim.id)
	acked := w.snapshot()
	t.Logf("%d of %d writes acknowledged", len(acked), w.tried)
	checkAllReadable(t, survivors, acked)
	checkSignatures(t, survivors)
}

func TestNoAcknowledgedWriteIsLostWhenANodeDies(t *testing.T) {
	killScenario(t, func(nodes []*appNode) *appNode {
		leader := leaderOf(t, plainNodes(nodes))
		var followers []*appNode
		for _, an := range nodes {
			if an.node != leader {
				followers = append(followers, an)
			}
		}
		return mostPrimaries(t, nodes, followers)
	}, false)
}

func TestNoAcknowledgedWriteIsLostWhenTheLeadersNodeDies(t *testing.T) {
	killScenario(t, func(nodes []*appNode) *appNode {
		leader := leaderOf(t, plainNodes(nodes))
		for _, an := range nodes {
			if an.node == leader {
				return an
			}
		}
		t.Fatal("leader not found")
		return nil
	}, false)
}

func TestWebhooksRefusedForAWhileAreDeliveredLater(t *testing.T) {
	killScenario(t, func(nodes []*appNode) *appNode {
		leader := leaderOf(t, plainNodes(nodes))
		for _, an := range nodes {
			if an.node != leader {
				return an
			}
		}
		return nil
	}, true)
}

// TestARejoiningNodeIsToldToReleaseStaleCopiesAndGetsItsShareBack: a node
// (agent and app) dies, is failed, and comes back with the same data dir.
// Its app hears node.rejoin and partition.release for what it held, then
// gets its share again, and every acknowledged write reads back through
// every node, the rejoined one included.
func TestARejoiningNodeIsToldToReleaseStaleCopiesAndGetsItsShareBack(t *testing.T) {
	c := newCluster(t)
	nodes := formAppCluster(t, c, 5, "-partitions", "32", "-replication-factor", "3")
	w := &writer{acked: map[string]string{}}
	w.run(context.Background(), func() []*appNode { return nodes }, "before", 150)
	leader := leaderOf(t, plainNodes(nodes))
	var victim *appNode
	for _, an := range nodes {
		if an.node != leader {
			victim = an
			break
		}
	}
	survivors := appWithout(nodes, victim)
	releasesBefore := victim.proxy.seen("partition.release")
	victim.killNode()
	waitFailedAndRemoved(t, plainNodes(survivors), victim.node)
	w.run(context.Background(), func() []*appNode { return survivors }, "while-away", 100)

	victim.startApp(t)
	victim.start("-join", leader.gossipAddr())
	eventually(t, 60*time.Second, "the app hears node.rejoin and releases", func() error {
		if victim.proxy.seen("node.rejoin") == 0 {
			return fmt.Errorf("no node.rejoin yet")
		}
		if victim.proxy.seen("partition.release") == releasesBefore {
			return fmt.Errorf("no partition.release for the stale copies yet")
		}
		return nil
	})
	waitSettled(t, nodes, 3)
	checkBalancedEventually(t, leader, ids(plainNodes(nodes)))
	st, err := leader.status()
	if err != nil || st.LeaderID != leader.id {
		t.Fatalf("the rejoin changed the leader: %+v %v", st, err)
	}
	checkAllReadable(t, nodes, w.snapshot())
	checkSignatures(t, nodes)
}

// TestAnAgentKilledWithUndeliveredWebhooksDeliversThemAfterRestart: a
// change is pending for an app that refuses webhooks; its agent is
// SIGKILLed and restarted (same data dir) and, once the app answers again,
// delivers what was never acknowledged. No acknowledged write is lost.
func TestAnAgentKilledWithUndeliveredWebhooksDeliversThemAfterRestart(t *testing.T) {
	c := newCluster(t)
	nodes := formAppCluster(t, c, 4, "-partitions", "16", "-replication-factor", "3")
	w := &writer{acked: map[string]string{}}
	w.run(context.Background(), func() []*appNode { return nodes }, "before", 100)
	leader := leaderOf(t, plainNodes(nodes))
	var victim, stubborn *appNode
	for _, an := range nodes {
		switch {
		case an.node == leader:
		case victim == nil:
			victim = an
		case stubborn == nil:
			stubborn = an
		}
	}
	stubborn.proxy.failing.Store(true)
	victim.killNode()
	survivors := appWithout(nodes, victim)
	waitFailedAndRemoved(t, plainNodes(survivors), victim.node)
	eventually(t, 30*time.Second, "the stubborn app refused something", func() error {
		if stubborn.proxy.refused.Load() == 0 {
			return fmt.Errorf("nothing refused yet")
		}
		return nil
	})
	var st struct {
		Undelivered int `json:"undelivered_events"`
	}
	if err := stubborn.getJSON("/v1/status", &st); err != nil || st.Undelivered == 0 {
		t.Fatalf("expected undelivered events before the kill: %+v %v", st, err)
	}
	stubborn.kill() // the agent only; its app keeps its data
	stubborn.start("-join", leader.gossipAddr())
	stubborn.proxy.failing.Store(false)
	waitSettled(t, survivors, 3)
	checkAllReadable(t, survivors, w.snapshot())
	checkSignatures(t, survivors)
}
