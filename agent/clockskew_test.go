package agent

import (
	"bytes"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/steward-dev/steward/control"
)

func TestEstimateClockSkewTakesTheMiddleOfTheRoundTrip(t *testing.T) {
	sent := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name string
		rtt  time.Duration
		peer time.Time
		want time.Duration
	}{
		{"same clock", 2 * time.Second, sent.Add(time.Second), 0},
		{"this clock an hour ahead", 2 * time.Second, sent.Add(time.Second - time.Hour), time.Hour},
		{"this clock an hour behind", 0, sent.Add(time.Hour), -time.Hour},
	} {
		if got := estimateClockSkew(sent, tt.rtt, tt.peer); got != tt.want {
			t.Errorf("%s: skew %s, want %s", tt.name, got, tt.want)
		}
	}
}

// steppedClock is the system clock with its wall reading stepped by
// offset; its monotonic reading is the real one.
type steppedClock struct {
	control.SystemClock
	offset time.Duration
}

func (c steppedClock) Now() time.Time { return time.Now().Add(c.offset) }

// syncBuffer is a log sink read while the agent writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestAClockSteppedAnHourAwayFromTheLeadersWarnsAndShows(t *testing.T) {
	for _, offset := range []time.Duration{time.Hour, -time.Hour} {
		t.Run(offset.String(), func(t *testing.T) {
			var logs syncBuffer
			logger := hclog.New(&hclog.LoggerOptions{Level: hclog.Info, Output: io.MultiWriter(&logs, testWriter{t})})
			a, err := New(testConfig(t, "skewed", filepath.Join(t.TempDir(), "d")), logger)
			if err != nil {
				t.Fatal(err)
			}
			a.clock = steppedClock{SystemClock: control.NewSystemClock(), offset: offset}
			if err := a.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = a.Shutdown() })

			// The "leader" here is an agent whose clock is right: the
			// raft port answers with the process's real wall clock.
			skew, ok := a.measureClockSkew(a.raft.Addr())
			if !ok {
				t.Fatal("no clock in the ping answer")
			}
			if d := skew - offset; d < -2*time.Second || d > 2*time.Second {
				t.Fatalf("measured skew %s, the clock is stepped by %s", skew, offset)
			}
			a.setClockSkew(skew)

			var st Status
			if _, err := get(t, a, "/v1/status", &st); err != nil {
				t.Fatal(err)
			}
			if d := st.ClockSkewSeconds - offset.Seconds(); d < -2 || d > 2 {
				t.Fatalf("/v1/status clock_skew_seconds %v, want about %v", st.ClockSkewSeconds, offset.Seconds())
			}
			resp, err := http.Get("http://" + a.HTTPAddr() + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			sign := ""
			if offset < 0 {
				sign = "-"
			}
			if !strings.Contains(string(body), "steward_clock_skew_seconds "+sign+"3") {
				t.Fatalf("metrics lack steward_clock_skew_seconds of about %v:\n%s", offset.Seconds(), grepLines(string(body), "clock_skew"))
			}
			if !strings.Contains(logs.String(), "WALL CLOCK OFF") {
				t.Fatal("no loud warning in the log")
			}
			a.setClockSkew(time.Second)
			if !strings.Contains(logs.String(), "back within tolerance") {
				t.Fatal("no notice once the clock is back")
			}
		})
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
