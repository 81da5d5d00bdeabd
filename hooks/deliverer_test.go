package hooks

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// fakeApp is the app next to the agent: it verifies every delivery and
// answers what its test tells it to.
type fakeApp struct {
	t   *testing.T
	srv *httptest.Server

	mu          sync.Mutex
	attempts    []Event // every verified attempt, in arrival order
	answer      func(ev Event, attempt int) int
	byID        map[string]int // attempts per webhook-id
	inFlight    map[int]int    // requests per partition under way
	maxPerPart  int
	total       int
	maxTotal    int
	hold        chan struct{} // when set, requests wait on it
	unsignedGot int
}

func newFakeApp(t *testing.T) *fakeApp {
	a := &fakeApp{t: t, byID: map[string]int{}, inFlight: map[int]int{}}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *fakeApp) serve(w http.ResponseWriter, r *http.Request) {
	ev, err := ParseEvent(r, testSecret, time.Minute)
	if err != nil {
		a.mu.Lock()
		a.unsignedGot++
		a.mu.Unlock()
		a.t.Errorf("the app got a delivery it cannot trust: %v", err)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	a.mu.Lock()
	a.attempts = append(a.attempts, ev)
	a.byID[ev.ID]++
	n := a.byID[ev.ID]
	a.inFlight[ev.Partition]++
	a.maxPerPart = max(a.maxPerPart, a.inFlight[ev.Partition])
	a.total++
	a.maxTotal = max(a.maxTotal, a.total)
	answer, hold := a.answer, a.hold
	a.mu.Unlock()
	if hold != nil {
		<-hold
	}
	status := http.StatusNoContent
	if answer != nil {
		status = answer(ev, n)
	}
	a.mu.Lock()
	a.inFlight[ev.Partition]--
	a.total--
	a.mu.Unlock()
	w.WriteHeader(status)
}

func (a *fakeApp) setAnswer(f func(ev Event, attempt int) int) {
	a.mu.Lock()
	a.answer = f
	a.mu.Unlock()
}

func (a *fakeApp) log() []Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Event(nil), a.attempts...)
}

func (a *fakeApp) attemptsOf(id string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.byID[id]
}

// sinkRecorder is the agent's side of copies.
type sinkRecorder struct {
	mu     sync.Mutex
	done   []string
	failed []string
}

func (s *sinkRecorder) CopyDone(p int, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done = append(s.done, fmt.Sprintf("p%d/%s", p, id))
}

func (s *sinkRecorder) CopyFailed(p int, id, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failed = append(s.failed, fmt.Sprintf("p%d/%s/%s", p, id, reason))
}

func (s *sinkRecorder) snapshot() (done, failed []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.done...), append([]string(nil), s.failed...)
}

type observed struct {
	typ, result string
	attempt     int
}

type observerRecorder struct {
	mu  sync.Mutex
	got []observed
}

func (o *observerRecorder) ObserveDelivery(typ, result string, attempt int, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.got = append(o.got, observed{typ, result, attempt})
}

func testConfig(url string) Config {
	cfg := DefaultConfig()
	cfg.NodeID = "n1"
	cfg.URL = url
	cfg.Secret = testSecret
	cfg.Timeout = 2 * time.Second
	cfg.BackoffBase = 2 * time.Millisecond
	cfg.BackoffMax = 20 * time.Millisecond
	cfg.Rand = rand.New(rand.NewPCG(7, 11))
	return cfg
}

func openStore(t *testing.T, dir string) *AckStore {
	t.Helper()
	s, err := OpenAckStore(filepath.Join(dir, "hooks-acked.json"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func startDeliverer(t *testing.T, cfg Config, store *AckStore, sink CopySink) *Deliverer {
	t.Helper()
	d, err := NewDeliverer(cfg, store, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func synced(d *Deliverer) func() bool {
	return func() bool { return d.Pending() == 0 }
}

func ids(evs []Event) map[string]bool {
	out := map[string]bool{}
	for _, ev := range evs {
		out[ev.ID] = true
	}
	return out
}

func TestAtStartTheAppLearnsItsFullAssignment(t *testing.T) {
	app := newFakeApp(t)
	store := openStore(t, t.TempDir())
	d := startDeliverer(t, testConfig(app.srv.URL), store, &sinkRecorder{})
	if d.Pending() != 0 || len(app.log()) != 0 {
		t.Fatal("delivered before the first desired state")
	}
	d.SetDesired(map[int]Assignment{
		0: {Partition: 0, Epoch: 1, Role: RolePrimary},
		1: {Partition: 1, Epoch: 1, Role: RoleReplica},
		2: {Partition: 2, Epoch: 3, Role: RoleReplica},
	})
	eventually(t, "every partition acknowledged", synced(d))
	got := ids(app.log())
	for _, id := range []string{"n1-p0-e1-assign", "n1-p1-e1-assign", "n1-p2-e3-assign"} {
		if !got[id] {
			t.Errorf("app never got %s (got %v)", id, got)
		}
	}
	if len(got) != 3 {
		t.Fatalf("app got %v, want exactly three assigns", got)
	}
	if a, _ := store.Get(2); a != (Acked{Role: RoleReplica, Epoch: 3}) {
		t.Fatalf("store has %+v for partition 2", a)
	}
	for _, ev := range app.log() {
		if ev.NodeID != "n1" || ev.Timestamp == 0 {
			t.Fatalf("event without node or timestamp: %+v", ev)
		}
	}
}

func TestEachChangeOfRoleSendsItsEvent(t *testing.T) {
	app := newFakeApp(t)
	store := openStore(t, t.TempDir())
	d := startDeliverer(t, testConfig(app.srv.URL), store, &sinkRecorder{})
	d.SetDesired(map[int]Assignment{
		0: {Partition: 0, Epoch: 1, Role: RolePrimary},
		1: {Partition: 1, Epoch: 1, Role: RoleReplica},
		2: {Partition: 2, Epoch: 1, Role: RoleReplica},
		3: {Partition: 3, Epoch: 1, Role: RoleReplica},
	})
	eventually(t, "initial assignment acknowledged", synced(d))
	before := len(app.log())

	d.SetDesired(map[int]Assignment{
		0: {Partition: 0, Epoch: 2, Role: RoleReplica}, // demoted
		1: {Partition: 1, Epoch: 2, Role: RolePrimary}, // promoted
		3: {Partition: 3, Epoch: 4, Role: RoleReplica}, // same role, new epoch
		// 2 moved away: released
	})
	eventually(t, "changes acknowledged", synced(d))
	got := map[string]Event{}
	for _, ev := range app.log()[before:] {
		got[ev.ID] = ev
	}
	want := map[string]struct {
		typ, role string
		epoch     uint64
	}{
		"n1-p0-e2-demote":  {TypeDemote, RoleReplica, 2},
		"n1-p1-e2-promote": {TypePromote, RolePrimary, 2},
		"n1-p2-e1-release": {TypeRelease, RoleNone, 1},
		"n1-p3-e4-assign":  {TypeAssign, RoleReplica, 4},
	}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for id, w := range want {
		ev, ok := got[id]
		if !ok || ev.Type != w.typ || ev.Role != w.role || ev.Epoch != w.epoch {
			t.Errorf("%s: got %+v, want %+v", id, ev, w)
		}
	}
	if _, ok := store.Get(2); ok {
		t.Fatal("a released partition is still in the store")
	}
}

func TestFailedDeliveriesAreRetriedWithTheSameIDUntilAcknowledged(t *testing.T) {
	app := newFakeApp(t)
	app.setAnswer(func(ev Event, attempt int) int {
		if attempt <= 3 {
			return http.StatusInternalServerError
		}
		return http.StatusNoContent
	})
	obs := &observerRecorder{}
	cfg := testConfig(app.srv.URL)
	cfg.Observer = obs
	store := openStore(t, t.TempDir())
	d := startDeliverer(t, cfg, store, &sinkRecorder{})
	d.SetDesired(map[int]Assignment{5: {Partition: 5, Epoch: 2, Role: RolePrimary}})
	eventually(t, "acknowledged after the app recovers", synced(d))

	if n := app.attemptsOf("n1-p5-e2-assign"); n != 4 {
		t.Fatalf("%d attempts, want 4 (three 500s then a 204)", n)
	}
	st := d.Stats()
	if st.Retries != 3 || st.Deliveries[DeliveryKey{TypeAssign, ResultRejected}] != 3 || st.Deliveries[DeliveryKey{TypeAssign, ResultOK}] != 1 {
		t.Fatalf("stats %+v", st)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	want := []observed{{TypeAssign, ResultRejected, 1}, {TypeAssign, ResultRejected, 2}, {TypeAssign, ResultRejected, 3}, {TypeAssign, ResultOK, 4}}
	if fmt.Sprint(obs.got) != fmt.Sprint(want) {
		t.Fatalf("observed %v, want %v", obs.got, want)
	}
}

func TestAnAppThatIsDownGetsItsEventsWhenItComesBack(t *testing.T) {
	app := newFakeApp(t)
	url := app.srv.URL
	app.srv.Close() // nobody listening
	store := openStore(t, t.TempDir())
	cfg := testConfig(url)
	d := startDeliverer(t, cfg, store, &sinkRecorder{})
	d.SetDesired(map[int]Assignment{1: {Partition: 1, Epoch: 1, Role: RolePrimary}})
	eventually(t, "a few failed attempts", func() bool { return d.Stats().Deliveries[DeliveryKey{TypeAssign, ResultError}] >= 3 })
	if d.Pending() != 1 {
		t.Fatalf("pending %d, want 1", d.Pending())
	}
}

func TestACopyAcknowledgedWith202CompletesWhenTheAppSaysSo(t *testing.T) {
	app := newFakeApp(t)
	app.setAnswer(func(ev Event, _ int) int {
		if ev.Source != nil {
			return http.StatusAccepted
		}
		return http.StatusNoContent
	})
	store := openStore(t, t.TempDir())
	sink := &sinkRecorder{}
	d := startDeliverer(t, testConfig(app.srv.URL), store, sink)
	copyOf2 := Assignment{Partition: 2, Epoch: 6, Role: RoleReplica, Source: &Source{NodeID: "n2", AppAddr: "127.0.0.1:7002"}, MigrationID: "m9"}
	d.SetDesired(map[int]Assignment{2: copyOf2})
	eventually(t, "the copy is announced", synced(d))

	ev := app.log()[0]
	if ev.Source == nil || *ev.Source != *copyOf2.Source || ev.MigrationID != "m9" {
		t.Fatalf("assign without its source: %+v", ev)
	}
	if a, _ := store.Get(2); !a.Copying || d.Stats().CopiesPending != 1 {
		t.Fatalf("store %+v, stats %+v: the copy should be pending", a, d.Stats())
	}
	if done, _ := sink.snapshot(); len(done) != 0 {
		t.Fatalf("copy reported done before the app said so: %v", done)
	}
	if err := d.MigrationCompleted("m-other"); err == nil {
		t.Fatal("completed a migration this node never had")
	}
	if err := d.MigrationCompleted("m9"); err != nil {
		t.Fatal(err)
	}
	if done, _ := sink.snapshot(); fmt.Sprint(done) != "[p2/m9]" {
		t.Fatalf("sink got %v", done)
	}
	if a, _ := store.Get(2); a.Copying {
		t.Fatal("still copying after completion")
	}

	// The cluster then makes the copy a replica at a new epoch.
	d.SetDesired(map[int]Assignment{2: {Partition: 2, Epoch: 7, Role: RoleReplica}})
	eventually(t, "the new replica epoch acknowledged", synced(d))
	if last := app.log()[len(app.log())-1]; last.ID != "n1-p2-e7-assign" || last.Source != nil {
		t.Fatalf("last event %+v", last)
	}
}

func TestACopyDoneWithinTheRequestIsReportedAtOnce(t *testing.T) {
	app := newFakeApp(t) // answers 204 to everything
	sink := &sinkRecorder{}
	d := startDeliverer(t, testConfig(app.srv.URL), openStore(t, t.TempDir()), sink)
	d.SetDesired(map[int]Assignment{4: {Partition: 4, Epoch: 2, Role: RoleReplica, Source: &Source{NodeID: "n3", AppAddr: "x:1"}, MigrationID: "m1"}})
	eventually(t, "copy reported", func() bool { done, _ := sink.snapshot(); return len(done) == 1 })
	if done, _ := sink.snapshot(); done[0] != "p4/m1" {
		t.Fatalf("sink got %v", done)
	}
}

// A migration with nothing to copy from (every copy of the partition is
// gone, so the planner makes a new empty one) reaches the app as a plain
// assign, valid on the wire, and its acknowledgement completes the
// migration, even a 202: the app was given no migration to report on.
func TestANewEmptyCopyIsAPlainAssignWhoseAcknowledgementCompletesIt(t *testing.T) {
	app := newFakeApp(t)
	app.setAnswer(func(Event, int) int { return http.StatusAccepted })
	store := openStore(t, t.TempDir())
	sink := &sinkRecorder{}
	d := startDeliverer(t, testConfig(app.srv.URL), store, sink)
	d.SetDesired(map[int]Assignment{5: {Partition: 5, Epoch: 3, Role: RoleReplica, MigrationID: "m4"}})
	eventually(t, "copy reported", func() bool { done, _ := sink.snapshot(); return len(done) == 1 })
	if done, _ := sink.snapshot(); done[0] != "p5/m4" {
		t.Fatalf("sink got %v", done)
	}
	ev := app.log()[0]
	if ev.Type != TypeAssign || ev.Role != RoleReplica || ev.Source != nil || ev.MigrationID != "" || ev.Validate() != nil {
		t.Fatalf("the app got %+v (valid: %v), want a plain replica assign", ev, ev.Validate())
	}
	eventually(t, "nothing pending", synced(d))
	if a, _ := store.Get(5); a.Copying || a.MigrationID != "m4" || d.Stats().CopiesPending != 0 {
		t.Fatalf("store %+v, stats %+v: the copy should be recorded done", a, d.Stats())
	}
	if n := len(app.log()); n != 1 {
		t.Fatalf("the app got %d deliveries, want 1", n)
	}
}

func TestAFailedCopyIsReported(t *testing.T) {
	app := newFakeApp(t)
	app.setAnswer(func(Event, int) int { return http.StatusAccepted })
	sink := &sinkRecorder{}
	d := startDeliverer(t, testConfig(app.srv.URL), openStore(t, t.TempDir()), sink)
	d.SetDesired(map[int]Assignment{4: {Partition: 4, Epoch: 2, Role: RoleReplica, Source: &Source{NodeID: "n3", AppAddr: "x:1"}, MigrationID: "m1"}})
	eventually(t, "copy announced", synced(d))
	if err := d.MigrationFailed("m1", "source unreachable"); err != nil {
		t.Fatal(err)
	}
	if _, failed := sink.snapshot(); fmt.Sprint(failed) != "[p4/m1/source unreachable]" {
		t.Fatalf("sink got %v", failed)
	}
}

func TestANewerEpochSupersedesAnUndeliveredOlderOne(t *testing.T) {
	app := newFakeApp(t)
	app.setAnswer(func(ev Event, _ int) int {
		if ev.Epoch == 1 {
			return http.StatusServiceUnavailable // the app cannot take epoch 1 yet
		}
		return http.StatusNoContent
	})
	d := startDeliverer(t, testConfig(app.srv.URL), openStore(t, t.TempDir()), &sinkRecorder{})
	d.SetDesired(map[int]Assignment{0: {Partition: 0, Epoch: 1, Role: RoleReplica}})
	eventually(t, "epoch 1 tried twice", func() bool { return app.attemptsOf("n1-p0-e1-assign") >= 2 })

	d.SetDesired(map[int]Assignment{0: {Partition: 0, Epoch: 2, Role: RolePrimary}})
	eventually(t, "epoch 2 acknowledged", synced(d))
	// Let any stray retry of epoch 1 show itself: a few more backoff periods.
	d.SetDesired(map[int]Assignment{0: {Partition: 0, Epoch: 2, Role: RolePrimary}, 1: {Partition: 1, Epoch: 3, Role: RoleReplica}})
	eventually(t, "an unrelated partition acknowledged", synced(d))

	seenNewer := false
	for _, ev := range app.log() {
		if ev.Partition != 0 {
			continue
		}
		if ev.Epoch == 2 {
			seenNewer = true
		}
		if ev.Epoch == 1 && seenNewer {
			t.Fatal("epoch 1 was delivered after epoch 2")
		}
	}
	if !seenNewer {
		t.Fatal("epoch 2 never delivered")
	}
	// From nothing straight to primary at epoch 2: an assign, not a promote.
	if app.attemptsOf("n1-p0-e2-assign") != 1 {
		t.Fatalf("log %v", app.log())
	}
}

func TestOnePartitionHasOneEventInFlightAndEpochsOnlyGoUp(t *testing.T) {
	app := newFakeApp(t)
	// Slow answers, so that changes pile up while requests are in flight.
	app.setAnswer(func(ev Event, attempt int) int {
		time.Sleep(3 * time.Millisecond) // the app's work, not synchronisation
		if (ev.Epoch+uint64(attempt))%3 == 0 {
			return http.StatusInternalServerError
		}
		return http.StatusNoContent
	})
	cfg := testConfig(app.srv.URL)
	cfg.MaxConcurrency = 3
	d := startDeliverer(t, cfg, openStore(t, t.TempDir()), &sinkRecorder{})
	roles := []string{RoleReplica, RolePrimary}
	for epoch := uint64(1); epoch <= 30; epoch++ {
		desired := map[int]Assignment{}
		for p := range 6 {
			if (int(epoch)+p)%5 == 0 {
				continue // released for a while
			}
			desired[p] = Assignment{Partition: p, Epoch: epoch, Role: roles[(int(epoch)+p)%2]}
		}
		d.SetDesired(desired)
		time.Sleep(time.Millisecond) // pace the changes, as raft applies would
	}
	eventually(t, "all partitions in agreement", synced(d))

	app.mu.Lock()
	maxPerPart, maxTotal := app.maxPerPart, app.maxTotal
	app.mu.Unlock()
	if maxPerPart != 1 {
		t.Fatalf("%d requests of one partition in flight at once", maxPerPart)
	}
	if maxTotal > 3 {
		t.Fatalf("%d requests in flight, MaxConcurrency is 3", maxTotal)
	}
	last := map[int]uint64{}
	for _, ev := range app.log() {
		if ev.Type == TypeRelease {
			// A release names the epoch that was acknowledged: never newer
			// than what came before it.
			if ev.Epoch > last[ev.Partition] {
				t.Fatalf("release of p%d at e%d after e%d", ev.Partition, ev.Epoch, last[ev.Partition])
			}
			continue
		}
		if ev.Epoch < last[ev.Partition] {
			t.Fatalf("p%d: epoch %d delivered after %d", ev.Partition, ev.Epoch, last[ev.Partition])
		}
		last[ev.Partition] = ev.Epoch
	}
}

func TestARestartRedeliversOnlyWhatWasNotAcknowledged(t *testing.T) {
	dir := t.TempDir()
	app := newFakeApp(t)
	app.setAnswer(func(ev Event, _ int) int {
		if ev.Partition == 1 {
			return http.StatusInternalServerError
		}
		return http.StatusNoContent
	})
	desired := map[int]Assignment{
		0: {Partition: 0, Epoch: 1, Role: RolePrimary},
		1: {Partition: 1, Epoch: 1, Role: RoleReplica},
		2: {Partition: 2, Epoch: 1, Role: RoleReplica},
	}
	first, err := NewDeliverer(testConfig(app.srv.URL), openStore(t, dir), &sinkRecorder{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	first.SetDesired(desired)
	eventually(t, "partitions 0 and 2 acknowledged, 1 failing", func() bool {
		return first.Pending() == 1 && app.attemptsOf("n1-p1-e1-assign") >= 1
	})
	first.Close()
	first.Close() // idempotent

	// The agent comes back; meanwhile partition 2 moved away.
	app.setAnswer(nil)
	before := len(app.log())
	second := startDeliverer(t, testConfig(app.srv.URL), openStore(t, dir), &sinkRecorder{})
	delete(desired, 2)
	second.SetDesired(desired)
	eventually(t, "in agreement after the restart", synced(second))
	got := ids(app.log()[before:])
	if len(got) != 2 || !got["n1-p1-e1-assign"] || !got["n1-p2-e1-release"] {
		t.Fatalf("after restart the app got %v, want p1's assign and p2's release only", got)
	}
}

func TestACopyInProgressIsAnnouncedAgainAfterARestart(t *testing.T) {
	dir := t.TempDir()
	app := newFakeApp(t)
	app.setAnswer(func(Event, int) int { return http.StatusAccepted })
	desired := map[int]Assignment{3: {Partition: 3, Epoch: 5, Role: RoleReplica, Source: &Source{NodeID: "n2", AppAddr: "x:1"}, MigrationID: "m3"}}
	first, err := NewDeliverer(testConfig(app.srv.URL), openStore(t, dir), &sinkRecorder{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	first.SetDesired(desired)
	eventually(t, "copy announced", synced(first))
	first.Close()

	sink := &sinkRecorder{}
	second := startDeliverer(t, testConfig(app.srv.URL), openStore(t, dir), sink)
	second.SetDesired(desired)
	eventually(t, "copy announced again", func() bool { return app.attemptsOf("n1-p3-e5-assign") == 2 })
	eventually(t, "in agreement", synced(second))
	// The app still copies; its report reaches the sink through the new
	// Deliverer, which learned of the copy from the store.
	if err := second.MigrationCompleted("m3"); err != nil {
		t.Fatal(err)
	}
	if done, _ := sink.snapshot(); fmt.Sprint(done) != "[p3/m3]" {
		t.Fatalf("sink got %v", done)
	}
}

func TestRedirectsAreNotFollowed(t *testing.T) {
	elsewhere := newFakeApp(t)
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.srv.URL, http.StatusTemporaryRedirect)
	}))
	defer redirector.Close()
	d := startDeliverer(t, testConfig(redirector.URL), openStore(t, t.TempDir()), &sinkRecorder{})
	d.SetDesired(map[int]Assignment{0: {Partition: 0, Epoch: 1, Role: RolePrimary}})
	eventually(t, "several redirected attempts", func() bool {
		return d.Stats().Deliveries[DeliveryKey{TypeAssign, ResultRejected}] >= 3
	})
	if n := len(elsewhere.log()); n != 0 {
		t.Fatalf("the redirect target got %d deliveries", n)
	}
	if d.Pending() != 1 {
		t.Fatal("a redirect counted as an acknowledgement")
	}
}

func TestNotifyDeliversOneOffEventsWithRetries(t *testing.T) {
	app := newFakeApp(t)
	app.setAnswer(func(ev Event, attempt int) int {
		if ev.Type == TypeQuorum && attempt == 1 {
			return http.StatusBadGateway
		}
		return http.StatusNoContent
	})
	d := startDeliverer(t, testConfig(app.srv.URL), openStore(t, t.TempDir()), &sinkRecorder{})
	if err := d.Notify(Event{Type: TypeRejoin, Partitions: []int{3, 4}}); err != nil {
		t.Fatal(err)
	}
	if err := d.Notify(Event{Type: TypeQuorum, Quorum: QuorumLost}); err != nil {
		t.Fatal(err)
	}
	if err := d.Notify(Event{Type: "node.bogus"}); err == nil {
		t.Fatal("Notify accepted an unknown type")
	}
	eventually(t, "one-offs delivered", synced(d))
	var quorumAttempts, rejoins int
	var quorumIDs = map[string]bool{}
	for _, ev := range app.log() {
		switch ev.Type {
		case TypeQuorum:
			quorumAttempts++
			quorumIDs[ev.ID] = true
			if ev.Quorum != QuorumLost {
				t.Fatalf("quorum event %+v", ev)
			}
		case TypeRejoin:
			rejoins++
			if fmt.Sprint(ev.Partitions) != "[3 4]" || ev.NodeID != "n1" {
				t.Fatalf("rejoin event %+v", ev)
			}
		}
	}
	if quorumAttempts != 2 || len(quorumIDs) != 1 || rejoins != 1 {
		t.Fatalf("%d quorum attempts under ids %v, %d rejoins", quorumAttempts, quorumIDs, rejoins)
	}
}

// A node back in the cluster: its app re-syncs what it missed while away
// when it gets node.rejoin. A promotion delivered before that would make
// it serve as primary from a copy that has not caught up, so no partition
// event goes out until the app has acknowledged the rejoin.
func TestPartitionEventsWaitUntilTheAppHasAcknowledgedItsRejoin(t *testing.T) {
	app := newFakeApp(t)
	app.setAnswer(func(ev Event, attempt int) int {
		if ev.Type == TypeRejoin && attempt <= 3 {
			return http.StatusServiceUnavailable // still re-syncing
		}
		return http.StatusNoContent
	})
	store := openStore(t, t.TempDir())
	d := startDeliverer(t, testConfig(app.srv.URL), store, &sinkRecorder{})
	d.SetDesired(map[int]Assignment{0: {Partition: 0, Epoch: 1, Role: RoleReplica}})
	eventually(t, "the replica acknowledged", synced(d))

	if err := d.Notify(Event{Type: TypeRejoin, Partitions: []int{0}}); err != nil {
		t.Fatal(err)
	}
	if !d.Rejoining() {
		t.Fatal("a queued node.rejoin is not reported")
	}
	d.SetDesired(map[int]Assignment{0: {Partition: 0, Epoch: 2, Role: RolePrimary}}) // handed back at once
	eventually(t, "rejoin and promotion acknowledged", synced(d))
	if d.Rejoining() {
		t.Fatal("an acknowledged node.rejoin is still reported")
	}

	var order []string
	for _, ev := range app.log() {
		order = append(order, ev.Type)
	}
	// Three refused attempts of the rejoin, the fourth acknowledged, then
	// the promotion.
	want := []string{TypeAssign, TypeRejoin, TypeRejoin, TypeRejoin, TypeRejoin, TypePromote}
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Fatalf("the app got %v, want %v: the promotion must wait for the acknowledged rejoin", order, want)
	}
}

func TestNewDelivererRefusesAnIncompleteConfig(t *testing.T) {
	store := openStore(t, t.TempDir())
	good := testConfig("http://127.0.0.1:1/events")
	for name, mutate := range map[string]func(*Config){
		"no node":   func(c *Config) { c.NodeID = "" },
		"no url":    func(c *Config) { c.URL = "" },
		"not http":  func(c *Config) { c.URL = "ftp://127.0.0.1/x" },
		"no secret": func(c *Config) { c.Secret = nil },
	} {
		cfg := good
		mutate(&cfg)
		if _, err := NewDeliverer(cfg, store, &sinkRecorder{}, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestAFullAssignmentOfManyPartitionsIsDeliveredOnceEach(t *testing.T) {
	const n = 1500
	app := newFakeApp(t)
	store := openStore(t, t.TempDir())
	cfg := testConfig(app.srv.URL)
	d := startDeliverer(t, cfg, store, &sinkRecorder{})
	desired := make(map[int]Assignment, n)
	for p := range n {
		desired[p] = Assignment{Partition: p, Epoch: uint64(1 + p%5), Role: []string{RolePrimary, RoleReplica}[p%2]}
	}
	d.SetDesired(desired)
	eventually(t, "the whole assignment acknowledged", synced(d))

	if got := len(app.log()); got != n {
		t.Fatalf("%d deliveries for %d partitions", got, n)
	}
	for p, a := range desired {
		if app.attemptsOf(EventID("n1", p, a.Epoch, TypeAssign)) != 1 {
			t.Fatalf("partition %d not delivered exactly once", p)
		}
	}
	if store.Len() != n {
		t.Fatalf("the store holds %d partitions, want %d", store.Len(), n)
	}
	app.mu.Lock()
	maxTotal := app.maxTotal
	app.mu.Unlock()
	if maxTotal > cfg.MaxConcurrency {
		t.Fatalf("%d requests in flight, MaxConcurrency is %d", maxTotal, cfg.MaxConcurrency)
	}

	// In agreement, the Deliverer keeps no state per partition: the next
	// round of work is only what changes.
	d.mu.Lock()
	kept, queued := len(d.parts), len(d.ready)-d.readyHead
	d.mu.Unlock()
	if kept != 0 || queued != 0 {
		t.Fatalf("%d partition states and %d queued after agreement, want none", kept, queued)
	}
	d.SetDesired(desired) // unchanged
	d.mu.Lock()
	kept, queued = len(d.parts), len(d.ready)-d.readyHead
	d.mu.Unlock()
	if kept != 0 || queued != 0 {
		t.Fatalf("an unchanged state queued %d partitions", queued)
	}

	changed := make(map[int]Assignment, n)
	for p, a := range desired {
		changed[p] = a
	}
	changed[701] = Assignment{Partition: 701, Epoch: 9, Role: RolePrimary}
	d.SetDesired(changed)
	d.mu.Lock()
	kept, pending := len(d.parts), len(d.pending)
	d.mu.Unlock()
	if kept > 1 || pending != 1 {
		t.Fatalf("one changed partition left %d states and %d pending", kept, pending)
	}
	eventually(t, "the change acknowledged", synced(d))
	if got := len(app.log()); got != n+1 || app.attemptsOf("n1-p701-e9-promote") != 1 {
		t.Fatalf("after one change: %d deliveries in all, %d of the promote", got, app.attemptsOf("n1-p701-e9-promote"))
	}
}

// The app may call /complete while the agent is still writing down its 202:
// the copy must not stay pending (and be announced again after a restart).
func TestACopyCompletedWhileIts202IsBeingRecordedEndsDone(t *testing.T) {
	app := newFakeApp(t)
	app.setAnswer(func(Event, int) int { return http.StatusAccepted })
	store := openStore(t, t.TempDir())
	sink := &sinkRecorder{}
	d := startDeliverer(t, testConfig(app.srv.URL), store, sink)

	store.writeMu.Lock() // the disk stalls
	stalled := true
	defer func() {
		if stalled {
			store.writeMu.Unlock()
		}
	}()
	d.SetDesired(map[int]Assignment{6: {Partition: 6, Epoch: 3, Role: RoleReplica, Source: &Source{NodeID: "n2", AppAddr: "x:1"}, MigrationID: "m6"}})
	eventually(t, "the 202 being recorded", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		st := d.parts[6]
		return st != nil && st.recording && len(d.toRecord) == 0
	})
	if err := d.MigrationCompleted("m6"); err != nil {
		t.Fatal(err)
	}
	store.writeMu.Unlock()
	stalled = false

	eventually(t, "in agreement", synced(d))
	eventually(t, "the copy no longer pending", func() bool { return d.Stats().CopiesPending == 0 })
	if a, ok := store.Get(6); !ok || a.Copying || a.MigrationID != "m6" || a.Epoch != 3 {
		t.Fatalf("store has %+v (present %v), want the copy done", a, ok)
	}
	if done, _ := sink.snapshot(); fmt.Sprint(done) != "[p6/m6]" {
		t.Fatalf("sink got %v, want the copy reported once", done)
	}
}

func TestAnAcknowledgementThatCannotBeRecordedIsDeliveredAgain(t *testing.T) {
	app := newFakeApp(t)
	store := openStore(t, t.TempDir())
	for range 2 { // the second write leaves the append handle open
		if err := store.Set(0, Acked{Role: RoleReplica, Epoch: 1}); err != nil {
			t.Fatal(err)
		}
	}
	d := startDeliverer(t, testConfig(app.srv.URL), store, &sinkRecorder{})
	store.writeMu.Lock()
	store.f.Close() // the next write fails, as on a disk error
	store.writeMu.Unlock()

	d.SetDesired(map[int]Assignment{0: {Partition: 0, Epoch: 2, Role: RolePrimary}})
	eventually(t, "in agreement", synced(d))
	if n := app.attemptsOf("n1-p0-e2-promote"); n != 2 {
		t.Fatalf("%d deliveries of the promote, want 2 (the first was not recorded)", n)
	}
	if a, _ := store.Get(0); a != (Acked{Role: RolePrimary, Epoch: 2}) {
		t.Fatalf("store has %+v", a)
	}
}

func TestEveryPartitionEventCarriesItsResourceReleaseIncluded(t *testing.T) {
	app := newFakeApp(t)
	store := openStore(t, t.TempDir())
	d := startDeliverer(t, testConfig(app.srv.URL), store, &sinkRecorder{})
	d.SetDesired(map[int]Assignment{40: {Partition: 40, Resource: "orders", Epoch: 1, Role: RolePrimary}})
	eventually(t, "the assign is acknowledged", synced(d))
	// The resource is deleted: the partition is no longer desired, and its
	// release still names the resource.
	d.SetDesired(map[int]Assignment{})
	eventually(t, "the release is acknowledged", synced(d))
	var types []string
	for _, ev := range app.log() {
		types = append(types, ev.Type)
		if ev.Resource != "orders" {
			t.Errorf("%s of partition %d carries resource %q, want orders", ev.Type, ev.Partition, ev.Resource)
		}
	}
	if fmt.Sprint(types) != fmt.Sprint([]string{TypeAssign, TypeRelease}) {
		t.Fatalf("events %v, want an assign then a release", types)
	}
}
