package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// startSolo starts a one-agent cluster and waits until it serves its table.
func startSolo(t *testing.T, id string, tune func(a *Agent)) *Agent {
	t.Helper()
	cfg := testConfig(t, id, filepath.Join(t.TempDir(), id))
	cfg.BootstrapExpect = 1
	logger := hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: testWriter{t}})
	a, err := New(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	if tune != nil {
		tune(a)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Shutdown() })
	waitFor(t, 20*time.Second, id+" serves its table", func() error {
		if code, err := get(t, a, "/v1/partitions", nil); err != nil || code != http.StatusOK {
			return fmt.Errorf("GET /v1/partitions: %d %v", code, err)
		}
		return nil
	})
	return a
}

// indexedGet is one GET with its status, X-Steward-Index and body.
type indexedGet struct {
	code  int
	index uint64
	body  string
	took  time.Duration
}

func getIndexed(ctx context.Context, a *Agent, path string) (indexedGet, error) {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a.HTTPAddr()+path, nil)
	if err != nil {
		return indexedGet{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return indexedGet{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return indexedGet{}, err
	}
	out := indexedGet{code: resp.StatusCode, body: string(body), took: time.Since(start)}
	if h := resp.Header.Get(IndexHeader); h != "" {
		if out.index, err = strconv.ParseUint(h, 10, 64); err != nil {
			return out, fmt.Errorf("%s: %q", IndexHeader, h)
		}
	}
	return out, nil
}

func setMaintenance(t *testing.T, a *Agent, on bool) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+a.HTTPAddr()+"/v1/maintenance", strings.NewReader(fmt.Sprintf(`{"enabled": %v}`, on)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("maintenance %v: %s", on, resp.Status)
	}
}

// A router asks for the table with the index of its last answer: the
// agent holds the request until the state moves past it, then answers at
// once; with nothing changing it answers when the wait is over.
func TestABlockingQueryAnswersOnTheNextChangeOfTheState(t *testing.T) {
	a := startSolo(t, "solo", nil)
	ctx := context.Background()

	first, err := getIndexed(ctx, a, "/v1/partitions")
	if err != nil || first.code != http.StatusOK || first.index == 0 {
		t.Fatalf("plain GET: %+v %v, want 200 with %s", first, err, IndexHeader)
	}

	quiet, err := getIndexed(ctx, a, fmt.Sprintf("/v1/partitions?index=%d&wait=300ms", first.index))
	if err != nil || quiet.code != http.StatusOK || quiet.index != first.index || quiet.took < 300*time.Millisecond {
		t.Fatalf("blocking GET with nothing changing: %d index %d after %s (%v); want 200, index %d, after the wait",
			quiet.code, quiet.index, quiet.took, err, first.index)
	}

	idle := a.raft.Subscribers()
	answered := make(chan indexedGet, 1)
	go func() {
		res, err := getIndexed(ctx, a, fmt.Sprintf("/v1/members?index=%d&wait=1m", first.index))
		if err != nil {
			res.body = err.Error()
		}
		answered <- res
	}()
	waitFor(t, 10*time.Second, "the blocking query waits", func() error {
		if n := a.raft.Subscribers(); n != idle+1 {
			return fmt.Errorf("%d subscribers, want %d", n, idle+1)
		}
		return nil
	})
	setMaintenance(t, a, true)
	select {
	case res := <-answered:
		if res.code != http.StatusOK || res.index <= first.index || !strings.Contains(res.body, `"id": "solo"`) {
			t.Fatalf("blocking GET after a change: %d index %d %s; want 200 with an index above %d", res.code, res.index, res.body, first.index)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the blocking query did not answer after the state changed")
	}
	if n := a.raft.Subscribers(); n != idle {
		t.Fatalf("%d subscribers after the answer, want %d", n, idle)
	}
}

// A client that gives up (its context ends) ends the wait with it: nothing
// is left subscribed on the agent.
func TestABlockingQueryEndsWhenItsClientGoesAway(t *testing.T) {
	a := startSolo(t, "solo", nil)
	first, err := getIndexed(context.Background(), a, "/v1/partitions")
	if err != nil {
		t.Fatal(err)
	}
	idle := a.raft.Subscribers()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = getIndexed(ctx, a, fmt.Sprintf("/v1/partitions?index=%d&wait=5m", first.index))
	}()
	waitFor(t, 10*time.Second, "the blocking query waits", func() error {
		if n := a.raft.Subscribers(); n != idle+1 {
			return fmt.Errorf("%d subscribers, want %d", n, idle+1)
		}
		return nil
	})
	cancel()
	<-done
	waitFor(t, 10*time.Second, "the wait ends with its client", func() error {
		if n := a.raft.Subscribers(); n != idle {
			return fmt.Errorf("%d subscribers, want %d", n, idle)
		}
		return nil
	})
}

func TestBadWatchParametersAreRefusedWithAClearError(t *testing.T) {
	a := startSolo(t, "solo", nil)
	for _, c := range []struct{ path, mentions string }{
		{"/v1/partitions?index=abc", "index="},
		{"/v1/partitions?index=-1", "index="},
		{"/v1/members?index=3&wait=forever", "wait="},
		{"/v1/members?index=3&wait=-5s", "more than 0"},
		{"/v1/members?index=3&wait=6m", "at most 5m0s"},
		{"/v1/partitions?wait=30s", "needs index="},
		{"/v1/watch?topics=partitions,tables", `unknown topic "tables"`},
	} {
		res, err := getIndexed(context.Background(), a, c.path)
		if err != nil {
			t.Fatal(err)
		}
		var e APIError
		_ = json.Unmarshal([]byte(res.body), &e)
		if res.code != http.StatusBadRequest || !strings.Contains(e.Error, c.mentions) {
			t.Errorf("GET %s: %d %q; want 400 mentioning %q", c.path, res.code, e.Error, c.mentions)
		}
	}
	if res, err := getIndexed(context.Background(), a, "/v1/partitions?index=1&wait=10"); err != nil || res.code != http.StatusOK {
		t.Fatalf("wait given in seconds, as Consul takes it: %d %v", res.code, err)
	}
}

// sseEvent is one Server-Sent Event.
type sseEvent struct {
	name string
	id   string
	data string
}

// readEvents parses a stream into events until it ends.
func readEvents(body io.Reader, events chan<- sseEvent) {
	defer close(events)
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			events <- ev
			ev = sseEvent{}
		case strings.HasPrefix(line, "event: "):
			ev.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "id: "):
			ev.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "data: "):
			ev.data = strings.TrimPrefix(line, "data: ")
		}
	}
}

func nextEvent(t *testing.T, events <-chan sseEvent, what string, match func(sseEvent) bool) sseEvent {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("the stream ended before %s", what)
			}
			if match(ev) {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s within 30s", what)
		}
	}
}

// A router on the stream gets the full views first, then a view again each
// time it changes (a member joins), heartbeats while nothing does, and the
// end of the stream when the agent shuts down.
func TestAWatchStreamSendsTheViewsThenEveryChangeUntilShutdown(t *testing.T) {
	a1 := startSolo(t, "a1", func(a *Agent) { a.watchHeartbeat = 100 * time.Millisecond })
	resp, err := http.Get("http://" + a1.HTTPAddr() + "/v1/watch?topics=members,partitions")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /v1/watch: %s %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	events := make(chan sseEvent, 64)
	go readEvents(resp.Body, events)

	members := nextEvent(t, events, "the first event", func(sseEvent) bool { return true })
	if members.name != "members" || members.id == "" || !strings.Contains(members.data, `"id":"a1"`) {
		t.Fatalf("first event %+v, want the members view with an id", members)
	}
	table := nextEvent(t, events, "the second event", func(sseEvent) bool { return true })
	var view PartitionsView
	if err := json.Unmarshal([]byte(table.data), &view); table.name != "partitions" || err != nil || len(view.Partitions) != 32 {
		t.Fatalf("second event %q: %d partitions (%v), want the full table of 32", table.name, len(view.Partitions), err)
	}
	nextEvent(t, events, "a heartbeat", func(ev sseEvent) bool { return ev.name == "heartbeat" })

	cfg := testConfig(t, "a2", filepath.Join(t.TempDir(), "a2"))
	cfg.Join = []string{a1.GossipAddr()}
	startAgent(t, cfg)
	nextEvent(t, events, "the members view with a2", func(ev sseEvent) bool {
		return ev.name == "members" && strings.Contains(ev.data, `"id":"a2"`)
	})

	if err := a1.Shutdown(); err != nil {
		t.Fatalf("shutdown with a stream open: %v", err)
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-events:
			if !ok {
				return // the stream ended
			}
		case <-deadline:
			t.Fatalf("the stream did not end with the agent")
		}
	}
}

// A router waiting on an agent that loses contact with the leader is told
// at once, not at the end of its wait: the blocking query answers 503 and
// the stream sends an error event and ends, so that the router asks
// another agent. The leader here is shut down.
func TestAnAgentThatLosesTheLeaderEndsWaitsAndStreamsWithAnError(t *testing.T) {
	leader := startSolo(t, "a1", nil)
	cfg := testConfig(t, "a2", filepath.Join(t.TempDir(), "a2"))
	cfg.Join = []string{leader.GossipAddr()}
	follower := startAgent(t, cfg)
	var first indexedGet
	waitFor(t, 30*time.Second, "a2 serves the table", func() (err error) {
		first, err = getIndexed(context.Background(), follower, "/v1/partitions")
		if err == nil && first.code != http.StatusOK {
			err = fmt.Errorf("GET /v1/partitions on a2: %d %s", first.code, first.body)
		}
		return err
	})

	// On a starved machine a2 may lose contact with a1 for a moment after
	// serving the table; its stream then ends with an error at once, as it
	// should. The stream is opened again until it starts with the table.
	var events chan sseEvent
	waitFor(t, 30*time.Second, "a2 streams the table", func() error {
		resp, err := http.Get("http://" + follower.HTTPAddr() + "/v1/watch?topics=partitions")
		if err != nil {
			return err
		}
		events = make(chan sseEvent, 64)
		go readEvents(resp.Body, events)
		t.Cleanup(func() { resp.Body.Close() })
		for ev := range events {
			if ev.name == "partitions" {
				return nil
			}
			if ev.name == "error" {
				break
			}
		}
		resp.Body.Close()
		for range events {
			// the reader ends with the body
		}
		return errors.New("the stream ended before the table")
	})

	idle := follower.raft.Subscribers()
	answered := make(chan indexedGet, 1)
	go func() {
		res, err := getIndexed(context.Background(), follower, fmt.Sprintf("/v1/partitions?index=%d&wait=5m", first.index+1000))
		if err != nil {
			res.body = err.Error()
		}
		answered <- res
	}()
	waitFor(t, 10*time.Second, "the blocking query waits", func() error {
		if n := follower.raft.Subscribers(); n != idle+1 {
			return fmt.Errorf("%d subscribers, want %d", n, idle+1)
		}
		return nil
	})
	if err := leader.Shutdown(); err != nil {
		t.Fatal(err)
	}

	ev := nextEvent(t, events, "the error event", func(ev sseEvent) bool { return ev.name == "error" })
	if !strings.Contains(ev.data, "stale") {
		t.Fatalf("error event %q, want it to say the table may be stale", ev.data)
	}
	select {
	case res := <-answered:
		if res.code != http.StatusServiceUnavailable || !strings.Contains(res.body, "stale") {
			t.Fatalf("blocking query after the leader went: %d %s; want 503 saying the table may be stale", res.code, res.body)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the blocking query still waits 30s after the leader went (its wait is 5m)")
	}
	for range events {
		// drained: the stream ends after the error event
	}
}
