package health

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestAppHealthTransitions(t *testing.T) {
	tests := []struct {
		name    string
		recover int
		results string // one letter per check: o ok, x failed
		want    []bool // transitions, in order
		healthy bool
	}{
		{"healthy app never transitions", 1, "oooooo", nil, true},
		{"two failures are not enough", 1, "xxoxx", nil, true},
		{"three failures make it unhealthy", 1, "xxx", []bool{false}, false},
		{"one success makes it healthy again", 1, "xxxxo", []bool{false, true}, true},
		{"a success in between resets the count", 1, "xxoxxoxx", nil, true},
		{"recover threshold 2: one success is not enough", 2, "xxxoxo", []bool{false}, false},
		{"recover threshold 2: two in a row", 2, "xxxoo", []bool{false, true}, true},
		{"flapping app", 1, "xxxoxxxo", []bool{false, true, false, true}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultAppConfig()
			cfg.RecoverThreshold = tt.recover
			h := NewAppHealth(cfg)
			var got []bool
			for i, r := range tt.results {
				var err error
				if r == 'x' {
					err = errRefused
				}
				at := t0.Add(time.Duration(i) * time.Second)
				if tr, changed := h.Record(err, at); changed {
					if !tr.At.Equal(at) || tr.Reason == "" {
						t.Fatalf("transition %+v: want At %v and a reason", tr, at)
					}
					got = append(got, tr.Healthy)
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("transitions %v, want %v", got, tt.want)
			}
			if st := h.Status(); st.Healthy != tt.healthy || st.Checks != len(tt.results) {
				t.Fatalf("status %+v, want healthy=%v after %d checks", st, tt.healthy, len(tt.results))
			}
		})
	}
}

// scriptedApp answers checks from a script of results; past its end it
// repeats the last one.
type scriptedApp struct {
	mu      sync.Mutex
	results []error
}

func (a *scriptedApp) set(results ...error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.results = results
}

func (a *scriptedApp) probe(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	err := a.results[0]
	if len(a.results) > 1 {
		a.results = a.results[1:]
	}
	return err
}

func nextTransition(t *testing.T, c *AppChecker) AppTransition {
	t.Helper()
	select {
	case tr, ok := <-c.Transitions():
		if !ok {
			t.Fatal("transitions channel closed")
		}
		return tr
	case <-time.After(5 * time.Second):
		t.Fatal("no transition within 5s")
	}
	panic("unreachable")
}

func TestAppCheckerReportsUnhealthyThenRecovered(t *testing.T) {
	clock := NewManualClock(t0)
	cfg := AppConfig{Interval: time.Hour, Timeout: 30 * time.Minute, FailureThreshold: 3, RecoverThreshold: 1}
	app := &scriptedApp{}
	app.set(errRefused, errRefused, errRefused, nil)
	c := NewAppChecker(cfg, app.probe, clock)
	defer c.Close()

	checks := func(n int) func() bool { return func() bool { return c.Status().Checks == n } }
	// The first check runs at once, then one per interval.
	eventually(t, "first check", checks(1))
	clock.Advance(cfg.Interval)
	eventually(t, "second check", checks(2))
	if st := c.Status(); !st.Healthy || st.ConsecutiveFailures != 2 {
		t.Fatalf("after two failures: %+v, want still healthy with 2 failures", st)
	}
	clock.Advance(cfg.Interval)
	tr := nextTransition(t, c)
	if tr.Healthy || !tr.At.Equal(t0.Add(2*cfg.Interval)) || !strings.Contains(tr.Reason, "connection refused") {
		t.Fatalf("transition %+v: want unhealthy at t0+2h with the error as reason", tr)
	}
	clock.Advance(cfg.Interval)
	if tr := nextTransition(t, c); !tr.Healthy {
		t.Fatalf("transition %+v: want healthy again", tr)
	}
}

func TestAppCheckerCloseStopsACheckInFlight(t *testing.T) {
	started := make(chan struct{})
	var cancelled atomic.Bool
	hang := func(ctx context.Context) error {
		close(started)
		<-ctx.Done()
		cancelled.Store(true)
		return ctx.Err()
	}
	cfg := AppConfig{Interval: time.Hour, Timeout: 30 * time.Minute, FailureThreshold: 3, RecoverThreshold: 1}
	c := NewAppChecker(cfg, hang, NewManualClock(t0))
	<-started
	c.Close()
	c.Close()
	if !cancelled.Load() {
		t.Fatal("the check in flight was not cancelled")
	}
	if st := c.Status(); st.Checks != 0 {
		t.Fatalf("a check cancelled by Close was recorded: %+v", st)
	}
	if _, open := <-c.Transitions(); open {
		t.Fatal("transitions channel open after Close")
	}
}

func TestHTTPProbe(t *testing.T) {
	var status atomic.Int32
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := int(status.Load())
		if code == 0 { // hang until the client gives up or the test ends
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		if code == http.StatusFound {
			http.Redirect(w, r, "/elsewhere", code)
			return
		}
		w.WriteHeader(code)
	}))
	defer srv.Close()
	defer close(release)
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("test server at %s, want loopback", srv.URL)
	}

	probe := HTTPProbe(srv.URL+"/health", 100*time.Millisecond)
	tests := []struct {
		name    string
		status  int
		healthy bool
	}{
		{"200 is healthy", http.StatusOK, true},
		{"204 is healthy", http.StatusNoContent, true},
		{"500 is unhealthy", http.StatusInternalServerError, false},
		{"503 is unhealthy", http.StatusServiceUnavailable, false},
		{"a redirect is not an answer", http.StatusFound, false},
		{"no answer within the timeout is unhealthy", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status.Store(int32(tt.status))
			start := time.Now()
			err := probe(context.Background())
			if (err == nil) != tt.healthy {
				t.Fatalf("probe error %v, want healthy=%v", err, tt.healthy)
			}
			if elapsed := time.Since(start); elapsed > 5*time.Second {
				t.Fatalf("probe took %v despite its 100ms timeout", elapsed)
			}
		})
	}

	t.Run("a closed port is unhealthy", func(t *testing.T) {
		dead := httptest.NewServer(http.NotFoundHandler())
		url := dead.URL
		dead.Close()
		if err := HTTPProbe(url, 100*time.Millisecond)(context.Background()); err == nil {
			t.Fatal("probe of a closed port succeeded")
		}
	})
	t.Run("the caller's context is honoured", func(t *testing.T) {
		status.Store(0)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := HTTPProbe(srv.URL, time.Minute)(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("probe with a cancelled context: %v, want context.Canceled", err)
		}
	})
}

func TestAppCheckerWithHTTPProbe(t *testing.T) {
	var healthy atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !healthy.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()

	clock := NewManualClock(t0)
	cfg := AppConfig{Interval: time.Hour, Timeout: time.Second, FailureThreshold: 2, RecoverThreshold: 1}
	c := NewAppChecker(cfg, HTTPProbe(srv.URL, cfg.Timeout), clock)
	defer c.Close()

	eventually(t, "first check", func() bool { return c.Status().Checks == 1 })
	clock.Advance(cfg.Interval)
	if tr := nextTransition(t, c); tr.Healthy || !strings.Contains(tr.Reason, "status 503") {
		t.Fatalf("transition %+v: want unhealthy with status 503", tr)
	}
	healthy.Store(true)
	clock.Advance(cfg.Interval)
	if tr := nextTransition(t, c); !tr.Healthy {
		t.Fatalf("transition %+v: want healthy", tr)
	}
}
