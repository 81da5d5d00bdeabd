package hooks

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

// signedRequest builds a delivery of body as the agent would send it.
func signedRequest(t testing.TB, secret []byte, id string, ts time.Time, body []byte) *http.Request {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/steward/events", strings.NewReader(string(body)))
	SignHeaders(r.Header, secret, id, ts, body)
	return r
}

func eventRequest(t testing.TB, ev Event) *http.Request {
	t.Helper()
	body, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return signedRequest(t, testSecret, ev.ID, time.Now(), body)
}

func assignEvent() Event {
	return Event{
		ID: "n1-p3-e7-assign", Type: TypeAssign, NodeID: "n1", Partition: 3, Epoch: 7,
		Role: RoleReplica, Source: &Source{NodeID: "n2", AppAddr: "127.0.0.1:7001"},
		MigrationID: "m12", Timestamp: time.Now().Unix(),
	}
}

func TestParseEventReturnsTheSignedEvent(t *testing.T) {
	want := assignEvent()
	got, err := ParseEvent(eventRequest(t, want), testSecret, 0)
	if err != nil {
		t.Fatalf("ParseEvent: %v", err)
	}
	if got.ID != want.ID || got.Partition != 3 || got.Epoch != 7 || got.Source == nil ||
		*got.Source != *want.Source || got.MigrationID != "m12" || got.Role != RoleReplica {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestParseEventRejectsMalformedEvents(t *testing.T) {
	mutate := func(f func(*Event)) Event { ev := assignEvent(); f(&ev); return ev }
	cases := map[string]Event{
		"negative partition":             mutate(func(e *Event) { e.Partition = -1 }),
		"assign with role none":          mutate(func(e *Event) { e.Role = RoleNone }),
		"assign with unknown role":       mutate(func(e *Event) { e.Role = "leader" }),
		"promote to replica":             mutate(func(e *Event) { e.Type, e.Role, e.Source, e.MigrationID = TypePromote, RoleReplica, nil, "" }),
		"demote to primary":              mutate(func(e *Event) { e.Type, e.Role, e.Source, e.MigrationID = TypeDemote, RolePrimary, nil, "" }),
		"release keeping a role":         mutate(func(e *Event) { e.Type, e.Source, e.MigrationID = TypeRelease, nil, "" }),
		"source on a release":            mutate(func(e *Event) { e.Type, e.Role = TypeRelease, RoleNone }),
		"source without address":         mutate(func(e *Event) { e.Source = &Source{NodeID: "n2"} }),
		"migration without source":       mutate(func(e *Event) { e.Source = nil }),
		"missing node id":                mutate(func(e *Event) { e.NodeID = "" }),
		"quorum neither ok nor lost":     {ID: "q1", Type: TypeQuorum, NodeID: "n1", Quorum: "maybe"},
		"rejoin with negative partition": {ID: "r1", Type: TypeRejoin, NodeID: "n1", Partitions: []int{1, -2}},
	}
	for name, ev := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseEvent(eventRequest(t, ev), testSecret, 0)
			if !errors.Is(err, ErrInvalidEvent) {
				t.Fatalf("ParseEvent = %v, want ErrInvalidEvent", err)
			}
		})
	}
}

func TestParseEventRejectsBadBodies(t *testing.T) {
	cases := map[string]string{
		"not json":         `hello`,
		"trailing data":    `{"id":"x","type":"partition.release","node_id":"n1","role":"none"} {}`,
		"wrong field type": `{"id":"x","type":"partition.release","node_id":"n1","role":"none","epoch":"7"}`,
		"negative epoch":   `{"id":"x","type":"partition.release","node_id":"n1","role":"none","epoch":-1}`,
		"array instead":    `[1,2]`,
		"empty body":       ``,
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseEvent(signedRequest(t, testSecret, "x", time.Now(), []byte(body)), testSecret, 0)
			if !errors.Is(err, ErrInvalidEvent) {
				t.Fatalf("ParseEvent = %v, want ErrInvalidEvent", err)
			}
		})
	}
}

func TestParseEventRefusesAnIDOtherThanTheHeader(t *testing.T) {
	ev := assignEvent()
	body, _ := json.Marshal(ev)
	_, err := ParseEvent(signedRequest(t, testSecret, "another-id", time.Now(), body), testSecret, 0)
	if !errors.Is(err, ErrInvalidEvent) {
		t.Fatalf("ParseEvent = %v, want ErrInvalidEvent", err)
	}
}

func TestParseEventToleratesUnknownFields(t *testing.T) {
	body := `{"id":"x","type":"partition.release","node_id":"n1","partition":2,"epoch":4,"role":"none","added_later":true}`
	ev, err := ParseEvent(signedRequest(t, testSecret, "x", time.Now(), []byte(body)), testSecret, 0)
	if err != nil || ev.Partition != 2 || ev.Epoch != 4 {
		t.Fatalf("ParseEvent = %+v, %v", ev, err)
	}
}

func TestParseEventUnknownTypeIsDistinguishable(t *testing.T) {
	body := `{"id":"x","type":"partition.defragment","node_id":"n1","partition":2}`
	ev, err := ParseEvent(signedRequest(t, testSecret, "x", time.Now(), []byte(body)), testSecret, 0)
	if !errors.Is(err, ErrUnknownType) || errors.Is(err, ErrInvalidEvent) {
		t.Fatalf("ParseEvent err = %v, want ErrUnknownType only", err)
	}
	if ev.Type != "partition.defragment" {
		t.Fatalf("event not decoded: %+v", ev)
	}
}

func TestParseEventLimitsTheBody(t *testing.T) {
	body := []byte(`{"id":"x","pad":"` + strings.Repeat("a", MaxEventBytes) + `"}`)
	_, err := ParseEvent(signedRequest(t, testSecret, "x", time.Now(), body), testSecret, 0)
	if !errors.Is(err, ErrBodyTooLarge) {
		t.Fatalf("ParseEvent = %v, want ErrBodyTooLarge", err)
	}
}

// recordingHandler is a Handler whose callbacks record which one ran.
func recordingHandler(called *[]string, answer Response) *Handler {
	cb := func(name string) Callback {
		return func(ctx context.Context, ev Event) Response {
			*called = append(*called, name+":"+ev.ID)
			return answer
		}
	}
	return &Handler{
		Secret:    testSecret,
		OnAssign:  cb("assign"),
		OnPromote: cb("promote"),
		OnDemote:  cb("demote"),
		OnRelease: cb("release"),
		OnRejoin:  cb("rejoin"),
		OnQuorum:  cb("quorum"),
	}
}

func TestHandlerDispatchesEachTypeToItsCallback(t *testing.T) {
	events := []Event{
		assignEvent(),
		{ID: "p", Type: TypePromote, NodeID: "n1", Partition: 1, Epoch: 2, Role: RolePrimary},
		{ID: "d", Type: TypeDemote, NodeID: "n1", Partition: 1, Epoch: 3, Role: RoleReplica},
		{ID: "r", Type: TypeRelease, NodeID: "n1", Partition: 1, Epoch: 4, Role: RoleNone},
		{ID: "j", Type: TypeRejoin, NodeID: "n1", Partitions: []int{4, 5}},
		{ID: "q", Type: TypeQuorum, NodeID: "n1", Quorum: QuorumLost},
	}
	var called []string
	h := recordingHandler(&called, Ack())
	for _, ev := range events {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, eventRequest(t, ev))
		if w.Code != http.StatusNoContent {
			t.Fatalf("%s: status %d: %s", ev.Type, w.Code, w.Body)
		}
	}
	want := []string{"assign:n1-p3-e7-assign", "promote:p", "demote:d", "release:r", "rejoin:j", "quorum:q"}
	if strings.Join(called, ",") != strings.Join(want, ",") {
		t.Fatalf("called %v, want %v", called, want)
	}
}

func TestHandlerWritesTheCallbacksAnswer(t *testing.T) {
	cases := map[string]struct {
		answer   Response
		status   int
		bodyHint string
	}{
		"ack":                  {Ack(), http.StatusNoContent, ""},
		"zero response":        {Response{}, http.StatusNoContent, ""},
		"copying":              {Copying(), http.StatusAccepted, ""},
		"retry":                {Retry(errors.New("disk full")), http.StatusServiceUnavailable, "disk full"},
		"error without status": {Response{Err: errors.New("boom")}, http.StatusInternalServerError, "boom"},
		"explicit 200":         {Response{Status: http.StatusOK}, http.StatusOK, ""},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var called []string
			w := httptest.NewRecorder()
			recordingHandler(&called, c.answer).ServeHTTP(w, eventRequest(t, assignEvent()))
			if w.Code != c.status || !strings.Contains(w.Body.String(), c.bodyHint) {
				t.Fatalf("status %d body %q, want %d containing %q", w.Code, w.Body, c.status, c.bodyHint)
			}
		})
	}
}

func TestHandlerRefusesUntrustedOrMalformedDeliveries(t *testing.T) {
	good := assignEvent()
	body, _ := json.Marshal(good)
	cases := map[string]struct {
		req    *http.Request
		status int
	}{
		"wrong secret":    {signedRequest(t, []byte("another secret"), good.ID, time.Now(), body), http.StatusUnauthorized},
		"stale timestamp": {signedRequest(t, testSecret, good.ID, time.Now().Add(-10*time.Minute), body), http.StatusUnauthorized},
		"tampered body": {func() *http.Request {
			r := signedRequest(t, testSecret, good.ID, time.Now(), body)
			r.Body = io.NopCloser(strings.NewReader(strings.Replace(string(body), `"epoch":7`, `"epoch":8`, 1)))
			return r
		}(), http.StatusUnauthorized},
		"no headers":     {httptest.NewRequest(http.MethodPost, "/", strings.NewReader(string(body))), http.StatusUnauthorized},
		"bad body":       {signedRequest(t, testSecret, "x", time.Now(), []byte(`{`)), http.StatusBadRequest},
		"invalid event":  {eventRequest(t, Event{ID: "x", Type: TypePromote, NodeID: "n1", Role: RoleNone}), http.StatusBadRequest},
		"GET":            {httptest.NewRequest(http.MethodGet, "/", nil), http.StatusMethodNotAllowed},
		"oversized body": {signedRequest(t, testSecret, "x", time.Now(), []byte(strings.Repeat(" ", MaxEventBytes+1))), http.StatusRequestEntityTooLarge},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var called []string
			w := httptest.NewRecorder()
			recordingHandler(&called, Ack()).ServeHTTP(w, c.req)
			if w.Code != c.status {
				t.Fatalf("status %d (%s), want %d", w.Code, strings.TrimSpace(w.Body.String()), c.status)
			}
			if len(called) != 0 {
				t.Fatalf("callback ran: %v", called)
			}
		})
	}
}

func TestHandlerAcknowledgesEventsItHasNoCallbackFor(t *testing.T) {
	h := &Handler{Secret: testSecret} // an app that cares about nothing yet
	for _, req := range []*http.Request{
		eventRequest(t, assignEvent()),
		signedRequest(t, testSecret, "x", time.Now(), []byte(`{"id":"x","type":"node.future","node_id":"n1"}`)),
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusNoContent {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}

func TestAckAndFailMigrationCallTheAgent(t *testing.T) {
	type call struct{ method, path, auth, contentType, reason string }
	calls := make(chan call, 2)
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Reason string `json:"reason"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		calls <- call{r.Method, r.URL.EscapedPath(), r.Header.Get("Authorization"), r.Header.Get("Content-Type"), body.Reason}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer agent.Close()
	ctx := context.Background()
	if err := AckMigration(ctx, agent.Client(), agent.URL+"/", "m 7", "tok"); err != nil {
		t.Fatalf("AckMigration: %v", err)
	}
	if c := <-calls; c != (call{"POST", "/v1/migrations/m%207/complete", "Bearer tok", "application/json", ""}) {
		t.Fatalf("complete call %+v", c)
	}
	if err := FailMigration(ctx, agent.Client(), agent.URL, "m8", "", "source gone"); err != nil {
		t.Fatalf("FailMigration: %v", err)
	}
	if c := <-calls; c != (call{"POST", "/v1/migrations/m8/fail", "", "application/json", "source gone"}) {
		t.Fatalf("fail call %+v", c)
	}
}

func TestAckMigrationReportsTheAgentsRefusal(t *testing.T) {
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "unknown migration", http.StatusNotFound)
	}))
	defer agent.Close()
	err := AckMigration(context.Background(), agent.Client(), agent.URL, "m1", "")
	if err == nil || !strings.Contains(err.Error(), "unknown migration") || !strings.Contains(err.Error(), "404") {
		t.Fatalf("AckMigration = %v, want the 404 and its message", err)
	}
}
