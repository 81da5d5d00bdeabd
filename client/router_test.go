package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/steward-dev/steward/client"
	"github.com/steward-dev/steward/failover"
)

// fakeAgent serves GET /v1/watch from a script: the events it holds when
// a stream opens, then whatever the test sends, until the test ends the
// stream or the client goes.
type fakeAgent struct {
	srv *httptest.Server

	mu      sync.Mutex
	initial []string
	// refuse, when set, is the 503 a new stream gets (an agent out of
	// contact with the leader).
	refuse  string
	streams int
	live    chan string // events for the open stream; closed to end it
}

func newFakeAgent(t *testing.T) *fakeAgent {
	f := &fakeAgent{}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serveWatch))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAgent) addr() string { return strings.TrimPrefix(f.srv.URL, "http://") }

func (f *fakeAgent) serveWatch(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/watch" {
		http.NotFound(w, r)
		return
	}
	f.mu.Lock()
	initial, refuse := append([]string(nil), f.initial...), f.refuse
	live := make(chan string, 16)
	f.live = live
	f.streams++
	f.mu.Unlock()
	if refuse != "" {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "{\"error\":%q}", refuse)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	for _, ev := range initial {
		fmt.Fprint(w, ev)
	}
	w.(http.Flusher).Flush()
	for {
		select {
		case <-r.Context().Done():
			return
		case ev, ok := <-live:
			if !ok {
				return
			}
			fmt.Fprint(w, ev)
			w.(http.Flusher).Flush()
		}
	}
}

// set replaces what new streams start with.
func (f *fakeAgent) set(events ...string) {
	f.mu.Lock()
	f.initial = events
	f.mu.Unlock()
}

// setRefusal makes new streams refused with a 503 ("": served again).
func (f *fakeAgent) setRefusal(msg string) {
	f.mu.Lock()
	f.refuse = msg
	f.mu.Unlock()
}

// send writes an event on the open stream.
func (f *fakeAgent) send(ev string) {
	f.mu.Lock()
	live := f.live
	f.mu.Unlock()
	live <- ev
}

// endStream closes the open stream, as an agent that shuts down does.
func (f *fakeAgent) endStream() {
	f.mu.Lock()
	defer f.mu.Unlock()
	close(f.live)
	f.live = make(chan string) // a later end of the same stream is a no-op
}

func (f *fakeAgent) streamCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.streams
}

// tableEvent is a partitions event: a default resource of n partitions
// with even key ranges, every primary on node primary.
func tableEvent(index uint64, n int, primary string, epoch uint64) string {
	t := client.Table{Settings: client.Settings{Partitions: n, ReplicationFactor: 1}}
	for i := 0; i < n; i++ {
		start, end := failover.EvenKeyRange(i, n)
		t.Partitions = append(t.Partitions, client.Partition{ID: i, Epoch: epoch, Primary: primary, KeyStart: start, KeyEnd: end})
	}
	data, _ := json.Marshal(t)
	return fmt.Sprintf("event: partitions\nid: %d\ndata: %s\n\n", index, data)
}

func membersEvent(index uint64, ids ...string) string {
	var ms []client.Member
	for _, id := range ids {
		ms = append(ms, client.Member{ID: id, Status: "alive", AppAddr: id + ".app:80"})
	}
	data, _ := json.Marshal(map[string]any{"members": ms})
	return fmt.Sprintf("event: members\nid: %d\ndata: %s\n\n", index, data)
}

// runRouter starts a router over addrs, owned by the test, and waits for
// its first table.
func runRouter(t *testing.T, addrs ...string) *client.Router {
	t.Helper()
	r := client.NewRouter(newClient(t, addrs...), client.RouterConfig{MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run ended with %v, want context.Canceled", err)
		}
	})
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := r.WaitReady(wctx); err != nil {
		t.Fatalf("the router got no table: %v", err)
	}
	return r
}

// routeBecomes waits (on the router's own change signal) until key routes
// to primary.
func routeBecomes(t *testing.T, r *client.Router, key, primary string) client.Route {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		changed := r.Changed()
		if rt, err := r.Route("", key); err == nil && rt.Primary == primary {
			return rt
		}
		select {
		case <-changed:
		case <-deadline:
			rt, err := r.Route("", key)
			t.Fatalf("key %q routes to %+v (%v), want primary %s", key, rt, err, primary)
		}
	}
}

// A router on one agent's stream follows the table as it changes: after a
// failover, the key routes to the new primary's app with the new epoch.
func TestTheRouterFollowsAPromotionOnTheStream(t *testing.T) {
	a := newFakeAgent(t)
	a.set(tableEvent(10, 8, "n1", 1), membersEvent(10, "n1", "n2"))
	r := runRouter(t, a.addr())

	rt := routeBecomes(t, r, "user:42", "n1")
	want, _ := failover.PartitionForKey(mustTable(t, r).Partitions, failover.DefaultResource, "user:42")
	if rt.AppAddr != "n1.app:80" || rt.Epoch != 1 || rt.Partition != want.ID || rt.Index != 10 || rt.Stale {
		t.Fatalf("route before the failover: %+v, want partition %d on n1.app:80 at epoch 1, index 10", rt, want.ID)
	}

	a.send(tableEvent(12, 8, "n2", 2))
	rt = routeBecomes(t, r, "user:42", "n2")
	if rt.AppAddr != "n2.app:80" || rt.Epoch != 2 || rt.Index != 12 {
		t.Fatalf("route after the failover: %+v, want n2.app:80 at epoch 2, index 12", rt)
	}
}

// localPoll polls cond until it holds, with a deadline.
func localPoll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mustTable(t *testing.T, r *client.Router) *client.Table {
	t.Helper()
	table, _ := r.Table()
	if table == nil {
		t.Fatal("no table")
	}
	return table
}

// When its agent ends the stream because its view may be stale (it lost
// contact with the leader), the router moves to the next agent at once; one
// that refuses for the same reason is skipped, and the table is taken from
// the next that answers.
func TestTheRouterMovesToAnotherAgentWhenItsAgentGoesOrIsCutOff(t *testing.T) {
	first, cutOff, second := newFakeAgent(t), newFakeAgent(t), newFakeAgent(t)
	first.set(tableEvent(10, 4, "n1", 1), membersEvent(10, "n1", "n2", "n3"))
	cutOff.set(tableEvent(9, 4, "n1", 1), membersEvent(9, "n1", "n2", "n3"))
	cutOff.setRefusal("no contact with the leader for 2s; the table may be stale")
	second.set(tableEvent(14, 4, "n3", 2), membersEvent(14, "n1", "n2", "n3"))
	r := runRouter(t, first.addr(), cutOff.addr(), second.addr())
	routeBecomes(t, r, "k", "n1")

	first.send("event: error\ndata: {\"error\":\"no contact with the leader for 2s\"}\n\n")
	rt := routeBecomes(t, r, "k", "n3")
	if rt.AppAddr != "n3.app:80" || rt.Epoch != 2 || rt.Stale {
		t.Fatalf("route from the next agent in contact: %+v", rt)
	}
	if cutOff.streamCount() != 1 {
		t.Fatalf("the cut-off agent was asked %d times, want once on the way", cutOff.streamCount())
	}
}

// With no agent answering, Route keeps the last table and says it may be
// stale; the router keeps trying, backing off, and picks up again.
func TestTheRouterKeepsTheLastTableWhileNoAgentAnswers(t *testing.T) {
	a := newFakeAgent(t)
	a.set(tableEvent(10, 4, "n1", 1), membersEvent(10, "n1"))
	r := runRouter(t, a.addr())
	routeBecomes(t, r, "k", "n1")

	a.setRefusal("this agent has not caught up with the cluster yet")
	changed := r.Changed()
	a.endStream()
	<-changed
	rt, err := r.Route("", "k")
	if err != nil || rt.Primary != "n1" || !rt.Stale {
		t.Fatalf("route with no agent to follow: %+v %v, want the last one (n1), stale", rt, err)
	}
	localPoll(t, "the router keeps retrying", func() bool { return a.streamCount() >= 4 })

	a.set(tableEvent(15, 4, "n1", 3), membersEvent(15, "n1"))
	a.setRefusal("")
	localPoll(t, "the router picks the agent up again", func() bool {
		rt, err := r.Route("", "k")
		return err == nil && rt.Epoch == 3 && !rt.Stale
	})
	if _, err := r.Route("orders", "k"); !errors.Is(err, client.ErrNoPartition) {
		t.Fatalf("a key of an unknown resource: %v, want ErrNoPartition", err)
	}
}

// A partition without a primary (a failover in progress) is said so.
func TestARouteWithoutAPrimaryIsAnError(t *testing.T) {
	a := newFakeAgent(t)
	a.set(tableEvent(10, 4, "", 3), membersEvent(10, "n1"))
	r := runRouter(t, a.addr())
	rt, err := r.Route("", "k")
	if !errors.Is(err, client.ErrNoPrimary) || rt.Epoch != 3 {
		t.Fatalf("route of a partition without primary: %+v %v, want ErrNoPrimary", rt, err)
	}
}
