package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/steward-dev/steward/localcluster"
)

// Data scenarios: every node is an agent plus a kvapp. The agent's webhooks
// go through a proxy in the test process that checks every signature and
// can make the app answer 500 for a while, then to the kvapp.

const testWebhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// appNode is an agent with its kvapp, its webhooks going through a proxy
// that checks every signature.
type appNode struct {
	*node
	app   *localcluster.KVApp
	proxy *localcluster.SigningProxy
}

// addAppNode declares an agent wired to a kvapp logging at debug level (not
// started).
func addAppNode(t *testing.T, c *cluster, id string, extra ...string) *appNode {
	return addAppNodeLogging(t, c, id, "debug", 10*time.Second, extra...)
}

// addAppNodeLogging declares an agent wired to a kvapp with the given log
// level, its proxy waiting up to upstreamTimeout for the app's answer.
func addAppNodeLogging(tb testing.TB, c *cluster, id, logLevel string, upstreamTimeout time.Duration, extra ...string) *appNode {
	tb.Helper()
	pl := c.nextPlacement()
	app, err := localcluster.NewKVApp(kvappBin, pl, testWebhookSecret)
	if err != nil {
		tb.Fatal(err)
	}
	app.LogLevel = logLevel
	proxy, err := localcluster.NewSigningProxy(testWebhookSecret, app.WebhookURL(), upstreamTimeout)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(proxy.Close)
	an := &appNode{app: app, proxy: proxy}
	an.node = c.addAt(pl, id, append(slices.Clone(extra), app.AgentFlags(proxy.URL())...)...)
	tb.Cleanup(app.Kill)
	return an
}

// startApp starts the node's kvapp, its data beside the agent's.
func (a *appNode) startApp(tb testing.TB) {
	tb.Helper()
	if err := a.app.Start(a.APIAddr(), a.DataDir); err != nil {
		tb.Fatal(err)
	}
}

// killNode SIGKILLs agent and app together, as a machine loss does.
func (a *appNode) killNode() {
	a.app.Kill()
	a.Kill()
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
		if putKey(client, target.app.Addr(), key, value) == nil {
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
	startAppNodes(t, nodes)
	waitSettled(t, nodes, 3)
	return nodes
}

// startAppNodes starts each node's kvapp and agent, all bootstrapping one
// cluster joined through the first, and waits until they share a table.
func startAppNodes(t *testing.T, nodes []*appNode) {
	t.Helper()
	for _, an := range nodes {
		an.startApp(t)
		an.start("-bootstrap-expect", strconv.Itoa(len(nodes)), "-join", nodes[0].GossipAddr())
	}
	waitSameTable(t, plainNodes(nodes), 60*time.Second)
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
		return tableSettled(nodes, rf)
	})
}

// tableSettled is waitSettled's condition: localcluster.TableSettled.
func tableSettled(nodes []*appNode, rf int) error {
	return localcluster.TableSettled(agents(plainNodes(nodes)), rf)
}

// checkAllReadable reads every acknowledged key through every node.
func checkAllReadable(t *testing.T, nodes []*appNode, acked map[string]string) {
	t.Helper()
	client := &http.Client{Timeout: 15 * time.Second}
	for _, an := range nodes {
		missing := 0
		var first string
		for k, v := range acked {
			got, code, err := getKey(client, an.app.Addr(), k)
			if err != nil || code != http.StatusOK || got != v {
				missing++
				if first == "" {
					first = fmt.Sprintf("%s: got %q (%d, %v), want %q", k, got, code, err, v)
				}
			}
		}
		if missing > 0 {
			t.Fatalf("through %s, %d of %d acknowledged keys are lost or wrong; first: %s", an.ID, missing, len(acked), first)
		}
	}
}

func mostPrimaries(t *testing.T, nodes []*appNode, among []*appNode) *appNode {
	t.Helper()
	pt, err := nodes[0].Partitions()
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, p := range pt.Partitions {
		count[p.Primary]++
	}
	best := among[0]
	for _, an := range among {
		if count[an.ID] > count[best.ID] {
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
		if b := an.proxy.Bad.Load(); b != 0 {
			t.Fatalf("%s's app got %d webhooks with a bad signature", an.ID, b)
		}
		total += an.proxy.Good.Load()
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
		survivors[0].proxy.Failing.Store(true)
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
			if survivors[0].proxy.Refused.Load() == 0 {
				return fmt.Errorf("no webhook refused yet")
			}
			return nil
		})
		survivors[0].proxy.Failing.Store(false)
	}
	wg.Wait()
	cancel()
	waitSettled(t, survivors, 3)
	checkNoPartitionOn(t, survivors[0].node, victim.ID)
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
	releasesBefore := victim.proxy.Seen("partition.release")
	victim.killNode()
	waitFailedAndRemoved(t, plainNodes(survivors), victim.node)
	w.run(context.Background(), func() []*appNode { return survivors }, "while-away", 100)

	victim.startApp(t)
	victim.start("-join", leader.GossipAddr())
	eventually(t, 60*time.Second, "the app hears node.rejoin and releases", func() error {
		if victim.proxy.Seen("node.rejoin") == 0 {
			return fmt.Errorf("no node.rejoin yet")
		}
		if victim.proxy.Seen("partition.release") == releasesBefore {
			return fmt.Errorf("no partition.release for the stale copies yet")
		}
		return nil
	})
	waitSettled(t, nodes, 3)
	checkBalancedEventually(t, leader, ids(plainNodes(nodes)))
	st, err := leader.Status()
	if err != nil || st.LeaderID != leader.ID {
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
	stubborn.proxy.Failing.Store(true)
	victim.killNode()
	survivors := appWithout(nodes, victim)
	waitFailedAndRemoved(t, plainNodes(survivors), victim.node)
	eventually(t, 30*time.Second, "the stubborn app refused something", func() error {
		if stubborn.proxy.Refused.Load() == 0 {
			return fmt.Errorf("nothing refused yet")
		}
		return nil
	})
	var st struct {
		Undelivered int `json:"undelivered_events"`
	}
	if err := stubborn.GetJSON("/v1/status", &st); err != nil || st.Undelivered == 0 {
		t.Fatalf("expected undelivered events before the kill: %+v %v", st, err)
	}
	stubborn.Kill() // the agent only; its app keeps its data
	stubborn.start("-join", leader.GossipAddr())
	stubborn.proxy.Failing.Store(false)
	waitSettled(t, survivors, 3)
	checkAllReadable(t, survivors, w.snapshot())
	checkSignatures(t, survivors)
}
