package hooks

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"
	"testing"
	"time"
)

func TestReportHoldingsPostsTheListWithTheToken(t *testing.T) {
	var mu sync.Mutex
	var got []string
	status := http.StatusOK
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization")+" "+string(body))
		code := status
		mu.Unlock()
		if code != http.StatusOK {
			http.Error(w, `{"error":"no"}`, code)
			return
		}
		json.NewEncoder(w).Encode(HoldingsResult{Node: "n1", Lost: []int{4}, Redelivered: []int{4, 9}})
	}))
	defer agent.Close()
	ctx := context.Background()

	res, err := ReportHoldings(ctx, nil, agent.URL+"/", "tok", []int{3, 1})
	if err != nil {
		t.Fatal(err)
	}
	if want := (HoldingsResult{Node: "n1", Lost: []int{4}, Redelivered: []int{4, 9}}); !reflect.DeepEqual(res, want) {
		t.Fatalf("result %+v, want %+v", res, want)
	}
	if _, err := ReportHoldings(ctx, nil, agent.URL, "", nil); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	want := []string{
		`POST /v1/app/holdings Bearer tok {"partitions":[3,1]}`,
		`POST /v1/app/holdings  {"partitions":[]}`, // holding nothing is a list, never null
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("requests:\n%q\nwant\n%q", got, want)
	}
	status = http.StatusBadRequest
	mu.Unlock()
	if _, err := ReportHoldings(ctx, nil, agent.URL, "tok", []int{1}); !errors.Is(err, ErrHoldingsRefused) {
		t.Fatalf("a 400 gives %v, want ErrHoldingsRefused", err)
	}
	mu.Lock()
	status = http.StatusServiceUnavailable
	mu.Unlock()
	if _, err := ReportHoldings(ctx, nil, agent.URL, "tok", []int{1}); err == nil || errors.Is(err, ErrHoldingsRefused) {
		t.Fatalf("a 503 gives %v, want an error worth retrying", err)
	}
}

// TestAppHoldingsRedeliversWhatARestartedAppNoLongerHas: the app had
// acknowledged three partitions and a copy in flight; it restarts holding
// only partition 0. The others, the copy included, are delivered again;
// partition 0 is not.
func TestAppHoldingsRedeliversWhatARestartedAppNoLongerHas(t *testing.T) {
	app := newFakeApp(t)
	app.setAnswer(func(ev Event, attempt int) int {
		if ev.MigrationID != "" {
			return http.StatusAccepted
		}
		return http.StatusNoContent
	})
	store := openStore(t, t.TempDir())
	d := startDeliverer(t, testConfig(app.srv.URL), store, &sinkRecorder{})
	copyOf3 := Assignment{Partition: 3, Epoch: 2, Role: RoleReplica, Source: &Source{NodeID: "n2", AppAddr: "x:1"}, MigrationID: "m1"}
	d.SetDesired(map[int]Assignment{
		0: {Partition: 0, Epoch: 1, Role: RolePrimary},
		1: {Partition: 1, Epoch: 1, Role: RoleReplica},
		2: {Partition: 2, Epoch: 4, Role: RolePrimary},
		3: copyOf3,
	})
	eventually(t, "every partition acknowledged", func() bool { return store.Len() == 4 && d.Stats().InFlight == 0 })

	forgot, err := d.AppHoldings(map[int]bool{0: true, 3: true})
	if err != nil {
		t.Fatal(err)
	}
	// 3 is held but its copy was never reported finished: made again.
	if !reflect.DeepEqual(forgot, []int{1, 2, 3}) {
		t.Fatalf("forgot %v, want [1 2 3]", forgot)
	}
	for _, p := range forgot {
		if _, ok := store.Get(p); ok {
			t.Fatalf("partition %d is still acknowledged in the store", p)
		}
	}
	eventually(t, "the forgotten partitions delivered again", func() bool { return store.Len() == 4 && d.Stats().InFlight == 0 })
	for _, tc := range []struct {
		p    int
		typ  string
		e    uint64
		want int
	}{{0, TypeAssign, 1, 1}, {1, TypeAssign, 1, 2}, {2, TypeAssign, 4, 2}, {3, TypeAssign, 2, 2}} {
		if n := app.attemptsOf(EventID("n1", tc.p, tc.e, tc.typ)); n != tc.want {
			t.Errorf("partition %d: %d deliveries, want %d", tc.p, n, tc.want)
		}
	}
	var again Event
	for _, ev := range app.log() {
		if ev.Partition == 3 {
			again = ev
		}
	}
	if again.Source == nil || again.MigrationID != "m1" {
		t.Fatalf("the copy was announced again without its source: %+v", again)
	}
}

// TestAppHoldingsRetriesRefusedEventsAtOnce: events the app refused while
// it started are sent again when it reports, not after their backoff.
func TestAppHoldingsRetriesRefusedEventsAtOnce(t *testing.T) {
	app := newFakeApp(t)
	var mu sync.Mutex
	ready := false
	app.setAnswer(func(ev Event, attempt int) int {
		mu.Lock()
		defer mu.Unlock()
		if !ready {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	cfg := testConfig(app.srv.URL)
	cfg.BackoffBase, cfg.BackoffMax = time.Hour, time.Hour
	if wait := backoff(1, cfg.BackoffBase, cfg.BackoffMax, rand.New(rand.NewPCG(7, 11))); wait < time.Minute {
		t.Fatalf("the seeded first retry comes after %s: the test would not show anything", wait)
	}
	store := openStore(t, t.TempDir())
	d := startDeliverer(t, cfg, store, &sinkRecorder{})
	d.SetDesired(map[int]Assignment{0: {Partition: 0, Epoch: 1, Role: RolePrimary}})
	eventually(t, "a refusal", func() bool { return len(app.log()) >= 1 && d.Stats().InFlight == 0 })
	mu.Lock()
	ready = true
	mu.Unlock()
	if _, err := d.AppHoldings(map[int]bool{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the refused assign delivered again", synced(d))
}
