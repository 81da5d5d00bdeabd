package hooks

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// fakeLeaseAgent serves GET /v1/lease with whatever the test sets.
type fakeLeaseAgent struct {
	mu     sync.Mutex
	answer string
	status int
}

func (f *fakeLeaseAgent) set(status int, answer string) {
	f.mu.Lock()
	f.status, f.answer = status, answer
	f.mu.Unlock()
}

func (f *fakeLeaseAgent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.URL.Path != "/v1/lease" {
		http.NotFound(w, r)
		return
	}
	w.WriteHeader(f.status)
	w.Write([]byte(f.answer))
}

func newTestKeeper(t *testing.T) (*LeaseKeeper, *fakeLeaseAgent, *httptest.Server) {
	agent := &fakeLeaseAgent{status: http.StatusOK, answer: `{"valid":false}`}
	srv := httptest.NewServer(agent)
	t.Cleanup(srv.Close)
	k, err := NewLeaseKeeper(LeaseKeeperConfig{AgentURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	return k, agent, srv
}

func TestAnAppServesOnlyThePartitionsItsLeaseGrants(t *testing.T) {
	k, agent, _ := newTestKeeper(t)
	if k.Serving(3, 5) {
		t.Fatal("serving before any answer from the agent")
	}
	agent.set(http.StatusOK, `{"valid":true,"remaining_ms":60000,"primaries":{"3":5,"4":2}}`)
	if err := k.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := k.Check(3, 5); err != nil {
		t.Fatalf("partition 3 at epoch 5: %v", err)
	}
	if err := k.Check(4, 9); err != nil {
		t.Fatalf("partition 4 at a newer epoch than granted: %v", err)
	}
	if err := k.Check(3, 4); !errors.Is(err, ErrNoLease) {
		t.Fatalf("partition 3 at an epoch older than granted: %v, want ErrNoLease", err)
	}
	if err := k.Check(7, 1); !errors.Is(err, ErrNoLease) {
		t.Fatalf("partition 7 not granted: %v, want ErrNoLease", err)
	}
}

func TestALeaseRunsOutOnTheAppsClockWhenTheAgentFallsSilent(t *testing.T) {
	k, agent, srv := newTestKeeper(t)
	agent.set(http.StatusOK, `{"valid":true,"remaining_ms":150,"primaries":{"1":1}}`)
	if err := k.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !k.Serving(1, 1) {
		t.Fatal("not serving with a fresh lease")
	}
	srv.Close() // the agent is gone: no renewal reaches the app
	if err := k.Refresh(context.Background()); err == nil {
		t.Fatal("a refresh from a closed agent succeeded")
	}
	deadline := time.Now().Add(5 * time.Second)
	for k.Serving(1, 1) {
		if time.Now().After(deadline) {
			t.Fatal("the lease did not run out")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := k.Check(1, 1); !errors.Is(err, ErrNoLease) {
		t.Fatalf("after expiry: %v", err)
	}
}

func TestAnAgentOutOfContactEndsTheLeaseAtOnce(t *testing.T) {
	k, agent, _ := newTestKeeper(t)
	agent.set(http.StatusOK, `{"valid":true,"remaining_ms":60000,"primaries":{"1":1}}`)
	k.Refresh(context.Background())
	agent.set(http.StatusOK, `{"valid":false,"remaining_ms":0,"primaries":{}}`)
	if err := k.Refresh(context.Background()); !errors.Is(err, ErrNoLease) {
		t.Fatalf("refresh with an invalid lease: %v", err)
	}
	if k.Serving(1, 1) {
		t.Fatal("still serving after the agent said it holds no lease")
	}
}

func TestBadLeaseAnswersChangeNothing(t *testing.T) {
	k, agent, _ := newTestKeeper(t)
	agent.set(http.StatusOK, `{"valid":true,"remaining_ms":60000,"primaries":{"1":1}}`)
	k.Refresh(context.Background())
	for _, bad := range []struct {
		status int
		body   string
	}{
		{http.StatusOK, `not json`},
		{http.StatusOK, `{"valid":true,"remaining_ms":60000,"primaries":{"x":1}}`},
		{http.StatusInternalServerError, `{"error":"boom"}`},
	} {
		agent.set(bad.status, bad.body)
		if err := k.Refresh(context.Background()); err == nil {
			t.Errorf("answer %d %q accepted", bad.status, bad.body)
		}
		if !k.Serving(1, 1) {
			t.Errorf("answer %d %q ended a valid lease", bad.status, bad.body)
		}
	}
}

func TestTheKeeperPollsOnItsOwnUntilClosed(t *testing.T) {
	k, agent, _ := newTestKeeper(t)
	agent.set(http.StatusOK, `{"valid":true,"remaining_ms":60000,"primaries":{"2":3}}`)
	k.Start()
	deadline := time.Now().Add(5 * time.Second)
	for !k.Serving(2, 3) {
		if time.Now().After(deadline) {
			t.Fatal("the keeper did not pick up the lease on its own")
		}
		time.Sleep(5 * time.Millisecond)
	}
	k.Close()
	k.Close()
}
