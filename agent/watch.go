package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// This file is the watch API: blocking queries on the watchable views
// (GET /v1/partitions, /v1/members, ... with ?index=N&wait=D) and the same
// views as a Server-Sent Events stream (GET /v1/watch?topics=...). Both
// wake on the FSM's change notification (raftctl.Node.Subscribe), never by
// polling the state, and both run in the request's own goroutine: a client
// that goes away ends its wait with its request context, and Shutdown ends
// every wait and stream through the agent's context.

// IndexHeader carries the state index of an answer of a watchable view: the
// raft index of the last entry that changed the cluster state. It only goes
// up; a blocking query passes it back as ?index=.
const IndexHeader = "X-Steward-Index"

const (
	// MaxWait bounds ?wait= of a blocking query (and is its default, as in
	// Consul): a proxy between client and agent must let an answer take
	// this long.
	MaxWait = 5 * time.Minute
	// streamWriteTimeout bounds each write to a stream or the answer of a
	// blocking query past its wait: a client that stopped reading is
	// dropped instead of holding its request goroutine forever.
	streamWriteTimeout = 30 * time.Second
	// defaultWatchHeartbeat is how often a stream says it is alive when
	// nothing changes, so that a router notices a dead connection.
	defaultWatchHeartbeat = 5 * time.Second
)

// answerError is a watchable view's refusal: the status and the message of
// the JSON error answer (or of the stream's error event).
type answerError struct {
	code int
	msg  string
}

// watchTopic is one view that can be watched.
type watchTopic struct {
	// name is the topic in /v1/watch?topics= and the path /v1/<name>.
	name string
	// answer renders the view as of now.
	answer func(r *http.Request) (any, *answerError)
	// contactMatters: the answer depends on whether this agent's view is
	// current (in contact with the leader, caught up, storage fine), so a
	// change of that wakes waiters too.
	contactMatters bool
}

// watchTopics are the watchable views. A new one is one line here.
func (a *Agent) watchTopics() []watchTopic {
	return []watchTopic{
		{name: "partitions", answer: a.partitionsAnswer, contactMatters: true},
		{name: "members", answer: a.membersAnswer},
		{name: "resources", answer: a.resourcesAnswer},
	}
}

// stateIndex is the index answers carry: never 0, so that ?index=0 (or no
// index) always answers at once.
func (a *Agent) stateIndex() uint64 { return max(a.raft.StateIndex(), 1) }

// blockingParams are the parsed ?index= and ?wait= of a request.
type blockingParams struct {
	// blocking: ?index= was given.
	blocking bool
	index    uint64
	wait     time.Duration
}

// parseBlockingParams reads ?index=N&wait=D. A wait without an index, a
// negative or unparsable value and a wait above MaxWait are errors, so
// that a client's mistake is told instead of silently answered at once.
func parseBlockingParams(q url.Values) (blockingParams, error) {
	var p blockingParams
	rawIndex, rawWait := q.Get("index"), q.Get("wait")
	if rawIndex == "" {
		if rawWait != "" {
			return p, errors.New("wait= needs index= (the " + IndexHeader + " of an earlier answer)")
		}
		return p, nil
	}
	index, err := strconv.ParseUint(rawIndex, 10, 64)
	if err != nil {
		return p, fmt.Errorf("index=%q: want the unsigned integer of an earlier answer's %s", rawIndex, IndexHeader)
	}
	p.blocking, p.index, p.wait = true, index, MaxWait
	if rawWait != "" {
		wait, err := parseWait(rawWait)
		if err != nil {
			return p, err
		}
		p.wait = wait
	}
	return p, nil
}

// parseWait accepts a Go duration ("30s", "2m") or, as Consul does, a bare
// number of seconds.
func parseWait(raw string) (time.Duration, error) {
	d, err := time.ParseDuration(raw)
	if err != nil {
		secs, serr := strconv.ParseUint(raw, 10, 32)
		if serr != nil {
			return 0, fmt.Errorf("wait=%q: want a duration such as 30s or 2m (at most %s)", raw, MaxWait)
		}
		d = time.Duration(secs) * time.Second
	}
	if d <= 0 || d > MaxWait {
		return 0, fmt.Errorf("wait=%q: must be more than 0 and at most %s", raw, MaxWait)
	}
	return d, nil
}

// withJitter adds up to 1/16 of wait, so that many clients that started
// together do not all come back at the same instant (Consul does the same).
func withJitter(wait time.Duration) time.Duration {
	return wait + rand.N(wait/16+1)
}

// blockingQuery serves a watchable view: at once without ?index=, else
// once the state index is above it, the wait has passed, or (for a view
// that depends on it) this agent's view stopped or started being current.
func (a *Agent) blockingQuery(t watchTopic) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := parseBlockingParams(r.URL.Query())
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		if p.blocking {
			wait := withJitter(p.wait)
			// The server's WriteTimeout counts from the request: a long
			// wait moves the deadline (ignored where it cannot be moved,
			// as in an app's own server with the Handler mounted).
			_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(wait + streamWriteTimeout))
			a.waitForChange(r.Context(), p.index, wait, t.contactMatters)
			if r.Context().Err() != nil {
				return // the client went away
			}
		}
		index := a.stateIndex()
		body, aerr := t.answer(r)
		w.Header().Set(IndexHeader, strconv.FormatUint(index, 10))
		if aerr != nil {
			writeError(w, aerr.code, aerr.msg)
			return
		}
		writeJSON(w, http.StatusOK, body)
	}
}

// waitForChange returns once the state index is above after, wait has
// passed, ctx or the agent ends, or (contactMatters) whether this agent's
// view is current changed. It runs in the caller's goroutine and leaves
// nothing behind.
func (a *Agent) waitForChange(ctx context.Context, after uint64, wait time.Duration, contactMatters bool) {
	changes, unsubscribe := a.raft.Subscribe()
	defer unsubscribe()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	var contactTicks <-chan time.Time
	current, _ := a.readiness()
	if contactMatters {
		// Contact is the age of the last lease grant, a clock reading
		// rather than an event: look at it as often as the lease is renewed.
		ticker := time.NewTicker(a.leaseTimings.Renew)
		defer ticker.Stop()
		contactTicks = ticker.C
	}
	for a.stateIndex() <= after {
		select {
		case <-ctx.Done():
			return
		case <-a.ctx.Done():
			return
		case <-timer.C:
			return
		case <-changes:
		case <-contactTicks:
			if now, _ := a.readiness(); now != current {
				return
			}
		}
	}
}

// parseTopics reads ?topics=a,b (default: every topic).
func (a *Agent) parseTopics(raw string) ([]watchTopic, error) {
	all := a.watchTopics()
	if raw == "" {
		return all, nil
	}
	var names []string
	for _, t := range all {
		names = append(names, t.name)
	}
	var out []watchTopic
	for _, name := range strings.Split(raw, ",") {
		i := slices.Index(names, strings.TrimSpace(name))
		if i < 0 {
			return nil, fmt.Errorf("topics=%q: unknown topic %q (known: %s)", raw, name, strings.Join(names, ", "))
		}
		if !slices.ContainsFunc(out, func(t watchTopic) bool { return t.name == all[i].name }) {
			out = append(out, all[i])
		}
	}
	return out, nil
}

// WatchHeartbeat is the data of a stream's heartbeat event.
type WatchHeartbeat struct {
	Index uint64 `json:"index"`
}

// handleWatch is GET /v1/watch?topics=partitions,members[&stale=true]: a
// Server-Sent Events stream. Each topic's full view comes first (event
// named after the topic, id the state index), then again whenever it
// changes; a heartbeat event comes when nothing did for a while. When a
// view can no longer be answered (this agent lost contact with the leader
// and ?stale=true was not given), an error event ends the stream: a router
// then tries another agent. Shutdown ends every stream.
func (a *Agent) handleWatch(w http.ResponseWriter, r *http.Request) {
	topics, err := a.parseTopics(r.URL.Query().Get("topics"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	s := &eventStream{w: w, rc: http.NewResponseController(w), sent: map[string][]byte{}}
	contactMatters := false
	for _, t := range topics {
		contactMatters = contactMatters || t.contactMatters
	}

	changes, unsubscribe := a.raft.Subscribe()
	defer unsubscribe()
	// The first views are rendered before the stream starts, so that an
	// agent that cannot answer says so with a status code.
	index := a.stateIndex()
	first, aerr := renderTopics(r, topics)
	if aerr != nil {
		w.Header().Set(IndexHeader, strconv.FormatUint(index, 10))
		writeError(w, aerr.code, aerr.msg)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // a proxy must not hold events back
	h.Set(IndexHeader, strconv.FormatUint(index, 10))
	w.WriteHeader(http.StatusOK)
	if err := s.sendViews(index, topics, first); err != nil {
		return
	}

	heartbeat := time.NewTicker(a.watchHeartbeat)
	defer heartbeat.Stop()
	var contactTicks <-chan time.Time
	current, _ := a.readiness()
	if contactMatters {
		ticker := time.NewTicker(a.leaseTimings.Renew)
		defer ticker.Stop()
		contactTicks = ticker.C
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case <-a.ctx.Done():
			return
		case <-heartbeat.C:
			data, _ := json.Marshal(WatchHeartbeat{Index: a.stateIndex()})
			if s.event("heartbeat", 0, data) != nil {
				return
			}
			continue
		case <-changes:
		case <-contactTicks:
			now, _ := a.readiness()
			if now == current {
				continue
			}
			current = now
		}
		index := a.stateIndex()
		views, aerr := renderTopics(r, topics)
		if aerr != nil {
			data, _ := json.Marshal(APIError{Error: aerr.msg})
			_ = s.event("error", index, data)
			return
		}
		if s.sendViews(index, topics, views) != nil {
			return
		}
		heartbeat.Reset(a.watchHeartbeat)
	}
}

// renderTopics renders every topic's view, or the first refusal.
func renderTopics(r *http.Request, topics []watchTopic) ([]any, *answerError) {
	views := make([]any, len(topics))
	for i, t := range topics {
		v, aerr := t.answer(r)
		if aerr != nil {
			return nil, aerr
		}
		views[i] = v
	}
	return views, nil
}

// eventStream writes Server-Sent Events and remembers what each topic last
// sent, so that a change of one view does not resend the others.
type eventStream struct {
	w    http.ResponseWriter
	rc   *http.ResponseController
	sent map[string][]byte
}

// sendViews sends each view that differs from what its topic sent last.
func (s *eventStream) sendViews(index uint64, topics []watchTopic, views []any) error {
	for i, t := range topics {
		data, err := json.Marshal(views[i])
		if err != nil {
			return err
		}
		if bytes.Equal(data, s.sent[t.name]) {
			continue
		}
		if err := s.event(t.name, index, data); err != nil {
			return err
		}
		s.sent[t.name] = data
	}
	return nil
}

// event writes one event (id omitted when 0) and flushes it.
func (s *eventStream) event(name string, id uint64, data []byte) error {
	_ = s.rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	var b bytes.Buffer
	b.WriteString("event: " + name + "\n")
	if id > 0 {
		b.WriteString("id: " + strconv.FormatUint(id, 10) + "\n")
	}
	b.WriteString("data: ")
	b.Write(data) // compact JSON: one line
	b.WriteString("\n\n")
	if _, err := s.w.Write(b.Bytes()); err != nil {
		return err
	}
	return s.rc.Flush()
}
