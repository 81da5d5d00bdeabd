package agent

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/hooks"
)

const holdingsSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// ackingApp acknowledges every verified webhook and counts them by
// (partition, type).
type ackingApp struct {
	srv    *httptest.Server
	secret []byte
	mu     sync.Mutex
	got    map[string]int
}

func newAckingApp(t *testing.T) *ackingApp {
	secret, err := hooks.ParseSecret(holdingsSecret)
	if err != nil {
		t.Fatal(err)
	}
	app := &ackingApp{secret: secret, got: map[string]int{}}
	app.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ev, err := hooks.ParseEvent(r, app.secret, time.Minute)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		app.mu.Lock()
		app.got[fmt.Sprintf("p%d %s", ev.Partition, ev.Type)]++
		app.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(app.srv.Close)
	return app
}

func (app *ackingApp) count(key string) int {
	app.mu.Lock()
	defer app.mu.Unlock()
	return app.got[key]
}

func postHoldings(t *testing.T, a *Agent, token, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+a.HTTPAddr()+hooks.HoldingsPath, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestHoldingsReport: a one-node cluster (RF 1) whose app acknowledged its
// four partitions. Bad reports are refused with 400 and change nothing; a
// report of everything changes nothing; a report without partitions 2 and
// 3 loses their last copies: they keep no primary, the status says so, and
// nothing is delivered to the app for them.
func TestHoldingsReport(t *testing.T) {
	app := newAckingApp(t)
	cfg := testConfig(t, "solo", t.TempDir())
	cfg.BootstrapExpect = 1
	cfg.Partitions = 4
	cfg.ReplicationFactor = 1
	cfg.APIToken = "s3cret"
	cfg.WebhookURL = app.srv.URL
	cfg.WebhookSecret = holdingsSecret
	cfg.AppAddr = "127.0.0.1:1"
	a := startAgent(t, cfg)
	waitFor(t, 30*time.Second, "every partition acknowledged", func() error {
		if n := a.acks.Len(); n != 4 || a.deliverer.Pending() != 0 {
			return fmt.Errorf("%d acknowledged, %d pending", n, a.deliverer.Pending())
		}
		return nil
	})
	table := func() []failover.Partition {
		var out []failover.Partition
		a.raft.Read(func(c *failover.Cluster) { out = c.Clone().Partitions })
		return out
	}
	before, acksBefore := table(), a.acks.Snapshot()

	for _, c := range []struct{ token, body string }{
		{"", `{"partitions":[]}`},
		{"wrong", `{"partitions":[]}`},
		{"s3cret", `garbage`},
		{"s3cret", `{}`},
		{"s3cret", `{"partitions":null}`},
		{"s3cret", `{"partitions":[0,0]}`},
		{"s3cret", `{"partitions":[-1]}`},
		{"s3cret", `{"partitions":[4]}`},
		{"s3cret", `{"partitions":["0"]}`},
		{"s3cret", `{"partitions":[0],"more":1}`},
		{"s3cret", `{"partitions":[]} {"partitions":[]}`},
	} {
		code, body := postHoldings(t, a, c.token, c.body)
		want := http.StatusBadRequest
		if c.token != "s3cret" {
			want = http.StatusUnauthorized
		}
		if code != want || !strings.Contains(body, `"error"`) {
			t.Errorf("report %q with token %q: %d %s, want %d with an error", c.body, c.token, code, body, want)
		}
	}
	if !reflect.DeepEqual(table(), before) || !reflect.DeepEqual(a.acks.Snapshot(), acksBefore) {
		t.Fatal("a refused report changed the table or the acknowledged state")
	}

	code, body := postHoldings(t, a, "s3cret", `{"partitions":[3,2,1,0]}`)
	var res hooks.HoldingsResult
	if code != http.StatusOK || json.Unmarshal([]byte(body), &res) != nil {
		t.Fatalf("full report: %d %s", code, body)
	}
	if want := (hooks.HoldingsResult{Node: "solo", Lost: []int{}, DataLost: []int{}, Redelivered: []int{}}); !reflect.DeepEqual(res, want) {
		t.Fatalf("full report: %+v, want %+v", res, want)
	}
	if !reflect.DeepEqual(table(), before) {
		t.Fatal("a report of everything changed the table")
	}

	assignsBefore := app.count("p2 partition.assign")
	res, err := hooks.ReportHoldings(t.Context(), nil, "http://"+a.HTTPAddr(), "s3cret", []int{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	if want := (hooks.HoldingsResult{Node: "solo", Lost: []int{2, 3}, DataLost: []int{2, 3}, Redelivered: []int{2, 3}}); !reflect.DeepEqual(res, want) {
		t.Fatalf("report without 2 and 3: %+v, want %+v", res, want)
	}
	after := table()
	for _, p := range []int{2, 3} {
		if after[p].Primary != "" || !after[p].DataLost || after[p].Epoch != before[p].Epoch+1 {
			t.Fatalf("partition %d after its last copy was lost: %+v", p, after[p])
		}
	}
	for _, p := range []int{0, 1} {
		if !reflect.DeepEqual(after[p], before[p]) {
			t.Fatalf("partition %d, still held, changed: %+v", p, after[p])
		}
	}
	var st Status
	if _, err := get(t, a, "/v1/status", &st); err != nil || !reflect.DeepEqual(st.DataLost, []int{2, 3}) {
		t.Fatalf("status data_lost %v (%v), want [2 3]", st.DataLost, err)
	}
	waitFor(t, 10*time.Second, "GET /v1/partitions marks the two lost partitions", func() error {
		var pt PartitionsView
		if code, err := get(t, a, "/v1/partitions", &pt); err != nil || code != http.StatusOK {
			return fmt.Errorf("%d %v", code, err) // 503 until the leader's lease answered this agent
		}
		var lost []int
		for _, p := range pt.Partitions {
			if p.DataLost && p.Primary == "" {
				lost = append(lost, p.ID)
			}
		}
		if !reflect.DeepEqual(lost, []int{2, 3}) {
			return fmt.Errorf("lost without a primary: %v", lost)
		}
		return nil
	})
	waitFor(t, 10*time.Second, "nothing left to deliver", func() error {
		if n := a.deliverer.Pending(); n != 0 {
			return fmt.Errorf("%d pending", n)
		}
		return nil
	})
	// A later plan does not invent an empty primary for them.
	if a.raft.IsLeader() {
		if err := a.ctrl.Reconcile(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if got := table(); got[2].Primary != "" || got[3].Primary != "" {
		t.Fatalf("a lost partition got a primary: %+v %+v", got[2], got[3])
	}
	if n := app.count("p2 partition.assign"); n != assignsBefore {
		t.Fatalf("the app was told to hold a partition whose data is lost (%d assigns)", n-assignsBefore)
	}
	if _, ok := a.acks.Get(2); ok {
		t.Fatal("the lost partition is still acknowledged")
	}
}
