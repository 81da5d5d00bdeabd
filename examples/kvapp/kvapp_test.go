package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/steward-dev/steward/hooks"
	"github.com/steward-dev/steward/localcluster"
)

func TestPartitionOfIsTheEvenRangeHoldingFNV1a(t *testing.T) {
	// FNV-1a 32-bit: "" is the offset basis 0x811c9dc5, "a" is 0xe40c292c,
	// "foobar" is 0xbf9cf968 (published test vectors); partition i of n
	// owns [i·2^32/n, (i+1)·2^32/n).
	cases := []struct {
		key  string
		n    int
		want int
	}{
		{"", 1 << 16, 0x811c9dc5 >> 16},
		{"a", 16, 0xe40c292c >> 28},
		{"a", 7, 6},        // 0xe40c292c·7/2^32 = 6.24
		{"foobar", 64, 47}, // 0xbf9cf968·64/2^32 = 47.9
		{"foobar", 1, 0},
	}
	for _, c := range cases {
		if got := partitionOf(c.key, c.n); got != c.want {
			t.Errorf("partitionOf(%q, %d) = %d, want %d", c.key, c.n, got, c.want)
		}
	}
	seen := map[int]bool{}
	for i := 0; i < 1000; i++ {
		p := partitionOf("key-"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+string(rune(i)), 8)
		if p < 0 || p >= 8 {
			t.Fatalf("partition %d out of range", p)
		}
		seen[p] = true
	}
	if len(seen) != 8 {
		t.Errorf("1000 keys landed in only %d of 8 partitions", len(seen))
	}
}

func TestWriteOnPrimaryIsOnEveryReplicaWhenAcknowledged(t *testing.T) {
	c := newFakeCluster(t, 4)
	n1, n2, n3 := c.addNode("n1"), c.addNode("n2"), c.addNode("n3")
	c.setAll(1, "n1", "n2", "n3")
	c.assignFromTable()

	for i := 0; i < 20; i++ {
		key := keyIn(i%4, 4, "k")
		key = key + "-" + string(rune('a'+i))
		if code, body := c.put(n1, key, "v"+key); code != http.StatusNoContent {
			t.Fatalf("PUT %s: %d %s", key, code, body)
		}
		p := partitionOf(key, 4)
		// Acknowledged means already on every copy: no waiting here.
		for _, n := range []*testNode{n1, n2, n3} {
			if v, ok := stored(n, p, key); !ok || v != "v"+key {
				t.Fatalf("%s holds %q (%v) for %s right after the 204", n.id, v, ok, key)
			}
		}
	}
	if code, body := c.get(n1, "k-missing"); code != http.StatusNotFound {
		t.Errorf("GET of an absent key: %d %s, want 404", code, body)
	}
}

func TestReplicaRefusesAWriteFromAnOlderEpoch(t *testing.T) {
	c := newFakeCluster(t, 1)
	c.addNode("n1")
	n := c.addNode("n2")
	c.setAll(5, "n1", "n2")
	c.assignFromTable()

	code, e := c.replicate(n, replicateMsg{Partition: 0, Epoch: 4, Entries: []dumpEntry{{Key: "k", Value: []byte("stale"), Version: version{4, 1}}}, From: "old"})
	if code != http.StatusConflict || e.Epoch != 5 {
		t.Fatalf("replicate at epoch 4 over 5: %d %+v, want 409 with epoch 5", code, e)
	}
	if _, ok := stored(n, 0, "k"); ok {
		t.Fatal("the fenced write was applied")
	}

	code, _ = c.replicate(n, replicateMsg{Partition: 0, Epoch: 5, Entries: []dumpEntry{{Key: "k", Value: []byte("fresh"), Version: version{5, 1}}}, From: "n1"})
	if code != http.StatusNoContent {
		t.Fatalf("replicate at the current epoch: %d", code)
	}
	// An older version of the key arriving late does not win.
	code, _ = c.replicate(n, replicateMsg{Partition: 0, Epoch: 5, Entries: []dumpEntry{{Key: "k", Value: []byte("older"), Version: version{5, 0}}}, From: "n1"})
	if v, _ := stored(n, 0, "k"); code != http.StatusNoContent || v != "fresh" {
		t.Fatalf("after a late older version: %d, value %q, want 204 and fresh", code, v)
	}
	// A newer epoch raises the fence for everybody older.
	c.replicate(n, replicateMsg{Partition: 0, Epoch: 7, Entries: []dumpEntry{{Key: "k2", Value: []byte("x"), Version: version{7, 1}}}, From: "n9"})
	if code, e := c.replicate(n, replicateMsg{Partition: 0, Epoch: 5, Entries: []dumpEntry{{Key: "k", Value: []byte("y"), Version: version{5, 2}}}, From: "n1"}); code != http.StatusConflict || e.Epoch != 7 {
		t.Fatalf("replicate at 5 after 7: %d %+v", code, e)
	}
}

func TestAssignWithSourceCopiesInTheBackgroundThenAcknowledges(t *testing.T) {
	c := newFakeCluster(t, 2)
	target := c.addNode("n3")

	// A fake source with two keys, which records who registered.
	var mu sync.Mutex
	var query string
	source := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/internal/partitions/1" {
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		query = r.URL.RawQuery
		mu.Unlock()
		writeJSON(w, http.StatusOK, partitionDump{Partition: 1, Epoch: 3, Entries: []dumpEntry{
			{Key: "a", Value: []byte("1"), Version: version{3, 1}},
			{Key: "b", Value: []byte("2"), Version: version{3, 2}},
		}})
	}))
	defer source.Close()
	srcAddr := strings.TrimPrefix(source.URL, "http://")
	c.mu.Lock()
	c.members["n1"] = memberView{ID: "n1", Status: "alive", AppAddr: srcAddr}
	c.mu.Unlock()
	c.setPartition(partitionView{ID: 1, Epoch: 4, Primary: "n1", Migrations: []migrationView{{ID: "m-7", Target: "n3", Source: "n1"}}})

	ev := hooks.Event{Type: hooks.TypeAssign, Partition: 1, Epoch: 4, Role: hooks.RoleReplica,
		Source: &hooks.Source{NodeID: "n1", AppAddr: srcAddr}, MigrationID: "m-7"}
	if code := c.deliver(target, ev); code != http.StatusAccepted {
		t.Fatalf("assign with source: %d, want 202", code)
	}
	eventually(t, "the migration to be acknowledged", func() bool {
		done, _ := c.acks()
		return len(done) == 1
	})
	done, failed := c.acks()
	if done[0] != "n3/m-7" || len(failed) != 0 {
		t.Fatalf("acks: completed %v failed %v", done, failed)
	}
	for k, want := range map[string]string{"a": "1", "b": "2"} {
		if v, ok := stored(target, 1, k); !ok || v != want {
			t.Errorf("after the copy %s = %q (%v), want %q", k, v, ok, want)
		}
	}
	mu.Lock()
	if !strings.Contains(query, "node=n3") || !strings.Contains(query, "addr=") {
		t.Errorf("the copy did not register its target with the source: query %q", query)
	}
	mu.Unlock()
	// The same assign delivered again (the agent retrying) is answered as done.
	if code := c.deliver(target, ev); code != http.StatusNoContent {
		t.Errorf("redelivered assign after the copy: %d, want 204", code)
	}
	if done, _ := c.acks(); len(done) != 1 {
		t.Errorf("the copy was acknowledged %d times", len(done))
	}
}

func TestCopyThatCannotReachItsSourceIsReportedFailed(t *testing.T) {
	c := newFakeCluster(t, 1)
	target := c.addNode("n3")
	// A free port below the ephemeral range, never handed out again in
	// this process: nothing listens there, and no connection takes it.
	port, err := localcluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dead := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	target.srv.cfg.CopyAttempts = 2
	ev := hooks.Event{Type: hooks.TypeAssign, Partition: 0, Epoch: 2, Role: hooks.RoleReplica,
		Source: &hooks.Source{NodeID: "n1", AppAddr: dead}, MigrationID: "m-1"}
	if code := c.deliver(target, ev); code != http.StatusAccepted {
		t.Fatalf("assign: %d", code)
	}
	eventually(t, "the migration to be reported failed", func() bool {
		_, failed := c.acks()
		return len(failed) == 1 && failed[0] == "n3/m-1"
	})
	if done, _ := c.acks(); len(done) != 0 {
		t.Fatalf("a failed copy was acknowledged: %v", done)
	}
}

func TestCopyTargetGetsWritesMadeAfterItsSnapshotBeforeTheTableListsIt(t *testing.T) {
	c := newFakeCluster(t, 1)
	n1, n3 := c.addNode("n1"), c.addNode("n3")
	c.setAll(1, "n1")
	c.assignFromTable()
	if code, _ := c.put(n1, "before", "1"); code != http.StatusNoContent {
		t.Fatal("put before the copy")
	}

	// n3's agent has the migration, n1's table does not show it (n1's
	// agent may be behind; here it shows the new epoch but no migration,
	// so only n3's registration with n1 can bring it later writes). n1's
	// agent has told its app the new epoch: its lease names epoch 2.
	c.setAll(2, "n1")
	if code := c.deliver(n1, hooks.Event{Type: hooks.TypeAssign, Partition: 0, Epoch: 2, Role: hooks.RolePrimary}); code != http.StatusNoContent {
		t.Fatalf("assign to the primary: %d", code)
	}
	c.startCopyFrom(n3, n1, 2, "m-1")
	if v, _ := stored(n3, 0, "before"); v != "1" {
		t.Fatalf("the copy lacks the earlier write: %q", v)
	}
	if code, _ := c.put(n1, "after", "2"); code != http.StatusNoContent {
		t.Fatal("put after the copy")
	}
	if v, ok := stored(n3, 0, "after"); !ok || v != "2" {
		t.Fatalf("the copy target missed a write acknowledged after its snapshot: %q %v", v, ok)
	}
}

func TestReleaseDropsThePartition(t *testing.T) {
	c := newFakeCluster(t, 1)
	n1, n2 := c.addNode("n1"), c.addNode("n2")
	c.setAll(1, "n1", "n2")
	c.assignFromTable()
	if code, _ := c.put(n1, "k", "v"); code != http.StatusNoContent {
		t.Fatal("put")
	}
	if keyCount(n2, 0) != 1 {
		t.Fatal("replica lacks the write")
	}
	c.setAll(2, "n1")
	if code := c.deliver(n2, hooks.Event{Type: hooks.TypeRelease, Partition: 0, Epoch: 2, Role: hooks.RoleNone}); code != http.StatusNoContent {
		t.Fatalf("release: %d", code)
	}
	if keyCount(n2, 0) != 0 {
		t.Fatal("release kept the data")
	}
	// A late write from a primary of before the release is refused.
	if code, _ := c.replicate(n2, replicateMsg{Partition: 0, Epoch: 1, Entries: []dumpEntry{{Key: "late", Value: []byte("x"), Version: version{1, 9}}}, From: "n1"}); code != http.StatusConflict {
		t.Fatalf("late replicate after release: %d, want 409", code)
	}
	// An assign older than the release is acknowledged and ignored.
	if code := c.deliver(n2, hooks.Event{Type: hooks.TypeAssign, Partition: 0, Epoch: 1, Role: hooks.RoleReplica}); code != http.StatusNoContent {
		t.Fatalf("stale assign: %d", code)
	}
	n2.srv.store.mu.Lock()
	role := n2.srv.store.parts[0].role
	n2.srv.store.mu.Unlock()
	if role != hooks.RoleNone {
		t.Fatalf("a stale assign changed the role to %q", role)
	}
}

func TestAnyNodeForwardsToThePrimaryAndRidesOutAFailover(t *testing.T) {
	c := newFakeCluster(t, 4)
	n1, n2 := c.addNode("n1"), c.addNode("n2")
	c.setAll(1, "n1", "n2")
	c.assignFromTable()

	if code, body := c.put(n2, "through-n2", "hello"); code != http.StatusNoContent {
		t.Fatalf("PUT via a replica: %d %s", code, body)
	}
	p := partitionOf("through-n2", 4)
	if v, _ := stored(n1, p, "through-n2"); v != "hello" {
		t.Fatalf("the primary does not hold the forwarded write: %q", v)
	}
	if code, body := c.get(n2, "through-n2"); code != http.StatusOK || body != "hello" {
		t.Fatalf("GET via a replica: %d %q", code, body)
	}
	// A replica asked directly (as a forwarder would) refuses and names the primary.
	req, _ := http.NewRequest(http.MethodPut, n2.ts.URL+"/kv/through-n2", strings.NewReader("x"))
	req.Header.Set(forwardedHeader, "1")
	if code, body := c.do(req); code != http.StatusConflict || !strings.Contains(body, `"primary":"n1"`) {
		t.Fatalf("forwarded write to a replica: %d %s", code, body)
	}

	// n1 dies. Until n2 is promoted, partitions have no primary; a write
	// sent meanwhile waits and lands once the promotion is delivered.
	n1.ts.Close()
	// A write that breaks on a kept-alive connection to the dead primary
	// has an unknown outcome and is not retried; a fresh connection is
	// refused, which is known to have sent nothing.
	n2.srv.tr.CloseIdleConnections()
	c.setMemberStatus("n1", "failed")
	c.setAll(2, "")
	var wg sync.WaitGroup
	var code int
	var body string
	wg.Add(1)
	go func() {
		defer wg.Done()
		req, _ := http.NewRequest(http.MethodPut, n2.ts.URL+"/kv/during-failover", strings.NewReader("landed"))
		resp, err := c.client.Do(req)
		if err != nil {
			body = err.Error()
			return
		}
		defer resp.Body.Close()
		code = resp.StatusCode
	}()
	before := c.fetchCount()
	eventually(t, "the write to retry against the agent", func() bool { return c.fetchCount() >= before+2 })
	c.setAll(2, "n2")
	for id := 0; id < 4; id++ {
		if st := c.deliver(n2, hooks.Event{Type: hooks.TypePromote, Partition: id, Epoch: 2, Role: hooks.RolePrimary}); st != http.StatusNoContent {
			t.Fatalf("promote p%d: %d", id, st)
		}
	}
	wg.Wait()
	if code != http.StatusNoContent {
		t.Fatalf("write during the failover: %d %s", code, body)
	}
	for key, want := range map[string]string{"through-n2": "hello", "during-failover": "landed"} {
		if code, got := c.get(n2, key); code != http.StatusOK || got != want {
			t.Errorf("after the failover GET %s: %d %q, want %q", key, code, got, want)
		}
	}
}

func TestPrimaryAdoptsANewerEpochItsTableGivesIt(t *testing.T) {
	// A migration bumped the epoch: the target holds epoch 2, the primary
	// has not been told yet (its lease was granted at epoch 1, before the
	// migration). The target refuses the primary's epoch-1 write; the
	// primary sees itself primary at 2 in its table and resends.
	c := newFakeCluster(t, 1)
	n1, n3 := c.addNode("n1"), c.addNode("n3")
	c.setAll(1, "n1")
	c.assignFromTable()
	c.freezeLease("n1")
	c.setPartition(partitionView{ID: 0, Epoch: 2, Primary: "n1", Migrations: []migrationView{{ID: "m-1", Target: "n3", Source: "n1"}}})
	ev := hooks.Event{Type: hooks.TypeAssign, Partition: 0, Epoch: 2, Role: hooks.RoleReplica,
		Source: &hooks.Source{NodeID: "n1", AppAddr: n1.srv.cfg.Addr}, MigrationID: "m-1"}
	if code := c.deliver(n3, ev); code != http.StatusAccepted {
		t.Fatalf("assign: %d", code)
	}
	eventually(t, "the copy", func() bool { done, _ := c.acks(); return len(done) == 1 })
	n1.srv.agent.invalidate()
	if code, body := c.put(n1, "k", "v"); code != http.StatusNoContent {
		t.Fatalf("put: %d %s", code, body)
	}
	if v, _ := stored(n3, 0, "k"); v != "v" {
		t.Fatalf("target lacks the write: %q", v)
	}
	n1.srv.store.mu.Lock()
	we := n1.srv.store.parts[0].writeEpoch
	n1.srv.store.mu.Unlock()
	if we != 2 {
		t.Fatalf("primary writes at epoch %d, want 2", we)
	}
}

func TestWebhookWithABadSignatureIsRefusedAndChangesNothing(t *testing.T) {
	c := newFakeCluster(t, 1)
	n := c.addNode("n1")
	c.setAll(1, "n1")
	ev := hooks.Event{Type: hooks.TypeAssign, Partition: 0, Epoch: 1, Role: hooks.RolePrimary}
	if code := c.deliverSigned(n, ev, []byte("not-the-secret")); code != http.StatusUnauthorized {
		t.Fatalf("bad signature: %d, want 401", code)
	}
	// Tampered body: signed, then changed.
	body, _ := json.Marshal(hooks.Event{ID: "x", Type: hooks.TypeAssign, NodeID: "n1", Partition: 0, Epoch: 1, Role: hooks.RolePrimary})
	req, _ := http.NewRequest(http.MethodPost, n.ts.URL+"/steward/events", bytes.NewReader(bytes.Replace(body, []byte(`"epoch":1`), []byte(`"epoch":9`), 1)))
	hooks.SignHeaders(req.Header, testSecret, "x", timeNow(), body)
	if code, _ := c.do(req); code != http.StatusUnauthorized {
		t.Fatalf("tampered body: %d, want 401", code)
	}
	if st := n.srv.store.status(); len(st) != 0 {
		t.Fatalf("an unverified webhook changed the state: %+v", st)
	}
	n.srv.cfg.RetryBudget = 300 * time.Millisecond
	if code, body := c.put(n, "k", "v"); code != http.StatusServiceUnavailable {
		t.Fatalf("write for a partition never assigned: %d %s, want 503", code, body)
	}
}

func TestRejoinDropsWhatTheClusterNoLongerGives(t *testing.T) {
	c := newFakeCluster(t, 2)
	n := c.addNode("n1")
	c.setAll(1, "n1")
	c.assignFromTable()
	k0, k1 := keyIn(0, 2, "k"), keyIn(1, 2, "k")
	c.put(n, k0, "a")
	c.put(n, k1, "b")
	// While away, partition 1 went elsewhere.
	c.setPartition(partitionView{ID: 1, Epoch: 3, Primary: "n2"})
	if code := c.deliver(n, hooks.Event{ID: "rejoin-1", Type: hooks.TypeRejoin, Role: hooks.RoleNone, Partitions: []int{0}}); code != http.StatusNoContent {
		t.Fatalf("rejoin: %d", code)
	}
	if keyCount(n, 0) != 1 || keyCount(n, 1) != 0 {
		t.Fatalf("after rejoin: p0 %d keys, p1 %d keys; want 1 and 0", keyCount(n, 0), keyCount(n, 1))
	}
}

func TestAnAssignWithoutSourceOfAPartitionNotHeldTakesItFromTheOtherHolders(t *testing.T) {
	// The safety net behind the holdings report: an app told to hold a
	// partition it has no copy of, without a source (its agent's own data
	// dir was wiped, so the agent does not know what it had), must not
	// answer with an empty partition while another holder has the data.
	c := newFakeCluster(t, 1)
	n1, n2 := c.addNode("n1"), c.addNode("n2")
	c.setAll(1, "n1", "n2")
	c.assignFromTable()
	c.put(n1, "k", "v")
	n3 := c.addNode("n3") // plays n2's restarted app under a new name
	c.setAll(1, "n1", "n2", "n3")
	if code := c.deliver(n3, hooks.Event{Type: hooks.TypeAssign, Partition: 0, Epoch: 1, Role: hooks.RoleReplica}); code != http.StatusNoContent {
		t.Fatalf("assign: %d", code)
	}
	if v, _ := stored(n3, 0, "k"); v != "v" {
		t.Fatalf("restarted app holds %q, want v", v)
	}
	_ = n2
}

// validSecret is a well-formed webhook secret (24 bytes), so that the
// flag cases below fail for the reason they are about.
const validSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func TestFlagErrorsExitWith2(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"--addr", "127.0.0.1:0", "--agent", "http://127.0.0.1:1"},
		{"--addr", "127.0.0.1:0", "--agent", "http://127.0.0.1:1", "--webhook-secret", "whsec_!!"},
		{"--addr", "127.0.0.1:0", "--agent", "http://127.0.0.1:1", "--webhook-secret", "whsec_c2VjcmV0", "--data-dir", "d"},
		{"--addr", "nope", "--agent", "http://127.0.0.1:1", "--webhook-secret", validSecret},
		{"--addr", "127.0.0.1:0", "--agent", "127.0.0.1:1", "--webhook-secret", validSecret, "--data-dir", "d"},
		{"--addr", "127.0.0.1:0", "--agent", "http://127.0.0.1:1", "--webhook-secret", validSecret},
		{"--bogus"},
	} {
		var out bytes.Buffer
		if code := run(args, &out); code != 2 {
			t.Errorf("run(%q) = %d, want 2", args, code)
		}
		if out.Len() == 0 {
			t.Errorf("run(%q) said nothing", args)
		}
	}
}

// TestServeStopsCleanlyWhenCancelled: an app whose agent cannot be reached
// serves, answers its health check 503 (it has not reported its holdings),
// and stops cleanly.
func TestServeStopsCleanlyWhenCancelled(t *testing.T) {
	cfg, err := parseFlags([]string{"--addr", "127.0.0.1:0", "--agent", "http://127.0.0.1:1", "--webhook-secret", validSecret, "--data-dir", t.TempDir()}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, ln) }()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	eventually(t, "healthz", func() bool {
		resp, err := (&http.Client{Transport: tr}).Get("http://" + ln.Addr().String() + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
}

func TestWriteWaitsForAnUnreachableReplicaUntilItIsMarkedFailed(t *testing.T) {
	c := newFakeCluster(t, 1)
	n1, n2, n3 := c.addNode("n1"), c.addNode("n2"), c.addNode("n3")
	c.setAll(1, "n1", "n2", "n3")
	c.assignFromTable()
	n3.ts.Close() // n3 dies; its agent has not declared it failed yet

	var wg sync.WaitGroup
	var code int
	var body string
	wg.Add(1)
	go func() {
		defer wg.Done()
		req, _ := http.NewRequest(http.MethodPut, n1.ts.URL+"/kv/k", strings.NewReader("v"))
		resp, err := c.client.Do(req)
		if err != nil {
			body = err.Error()
			return
		}
		defer resp.Body.Close()
		code = resp.StatusCode
	}()
	before := c.fetchCount()
	eventually(t, "the primary to retry the unreachable replica", func() bool { return c.fetchCount() >= before+2 })
	// Failed, yet still listed as a replica (as the planner leaves it until
	// its replacement has copied): the write goes through without it.
	c.setMemberStatus("n3", "failed")
	wg.Wait()
	if code != http.StatusNoContent {
		t.Fatalf("write: %d %s", code, body)
	}
	if v, _ := stored(n2, 0, "k"); v != "v" {
		t.Fatalf("the live replica lacks the write: %q", v)
	}
}

func TestRejoinedReplicaCatchesUpOnWritesItMissed(t *testing.T) {
	c := newFakeCluster(t, 1)
	n1, n2 := c.addNode("n1"), c.addNode("n2")
	c.setAll(1, "n1", "n2")
	c.assignFromTable()
	c.put(n1, "old", "1")
	c.setMemberStatus("n2", "failed")
	n1.srv.agent.invalidate()
	// n2 registered with n1 when it took its first copy, and a registered
	// copy target gets every write until a send to it fails on a table
	// that says it is gone. Here n2's app still answers: end the
	// registration as that failed send would have.
	n1.srv.store.dropCopyTarget(0, "n2")
	if code, _ := c.put(n1, "missed", "2"); code != http.StatusNoContent {
		t.Fatal("put while n2 is failed")
	}
	if _, ok := stored(n2, 0, "missed"); ok {
		t.Fatal("a failed member got the write; the test proves nothing")
	}
	c.setMemberStatus("n2", "alive")
	if code := c.deliver(n2, hooks.Event{ID: "rejoin-n2", Type: hooks.TypeRejoin, Role: hooks.RoleNone, Partitions: []int{0}}); code != http.StatusNoContent {
		t.Fatalf("rejoin: %d", code)
	}
	for k, want := range map[string]string{"old": "1", "missed": "2"} {
		if v, _ := stored(n2, 0, k); v != want {
			t.Errorf("after the rejoin %s = %q, want %q", k, v, want)
		}
	}
}

// A planned restart hands n2's primary over; n2 misses a write while it is
// away; back, the planner gives the primary back at once, so that n2's
// fresh table already makes it primary when its app is told it rejoined.
// It must still catch up from the other holder before it serves: else it
// answers 404 for an acknowledged write.
func TestANodeThatIsPrimaryAgainWhenItRejoinsCatchesUpBeforeServing(t *testing.T) {
	c := newFakeCluster(t, 1)
	n1, n2 := c.addNode("n1"), c.addNode("n2")
	c.setAll(1, "n2", "n1")
	c.assignFromTable()
	c.put(n2, "old", "1")

	// n2 restarts: n1 is promoted, n2 demoted and away.
	c.setAll(2, "n1", "n2")
	c.setMemberStatus("n2", "restarting")
	for n, ev := range map[*testNode]hooks.Event{
		n1: {Type: hooks.TypePromote, Partition: 0, Epoch: 2, Role: hooks.RolePrimary},
		n2: {Type: hooks.TypeDemote, Partition: 0, Epoch: 2, Role: hooks.RoleReplica},
	} {
		if code := c.deliver(n, ev); code != http.StatusNoContent {
			t.Fatalf("%s to %s: %d", ev.Type, n.id, code)
		}
	}
	n1.srv.agent.invalidate()
	if code, body := c.put(n1, "missed", "2"); code != http.StatusNoContent {
		t.Fatalf("put while n2 is away: %d %s", code, body)
	}
	if _, ok := stored(n2, 0, "missed"); ok {
		t.Fatal("n2 got the write while away; the test proves nothing")
	}

	// Back, and primary again in the table before its app hears of it.
	c.setMemberStatus("n2", "alive")
	c.setAll(3, "n2", "n1")
	if code := c.deliver(n2, hooks.Event{ID: "rejoin-n2", Type: hooks.TypeRejoin, Role: hooks.RoleNone, Partitions: []int{0}}); code != http.StatusNoContent {
		t.Fatalf("rejoin: %d", code)
	}
	for n, ev := range map[*testNode]hooks.Event{
		n1: {Type: hooks.TypeDemote, Partition: 0, Epoch: 3, Role: hooks.RoleReplica},
		n2: {Type: hooks.TypePromote, Partition: 0, Epoch: 3, Role: hooks.RolePrimary},
	} {
		if code := c.deliver(n, ev); code != http.StatusNoContent {
			t.Fatalf("%s to %s: %d", ev.Type, n.id, code)
		}
	}
	n1.srv.agent.invalidate()
	for _, through := range []*testNode{n2, n1} {
		for k, want := range map[string]string{"old": "1", "missed": "2"} {
			if code, got := c.get(through, k); code != http.StatusOK || got != want {
				t.Errorf("read of %s through %s: %d %q, want 200 %q", k, through.id, code, got, want)
			}
		}
	}
}

// n2 is back from a restart and re-syncs from n1 while n1's table still
// shows it restarting (n1's agent has not applied the return yet). The
// re-sync registered n2 as a copy target on n1: a write n1 takes after the
// snapshot must reach n2 although the table says it is away, or n2 would
// lack an acknowledged write once it is primary again.
func TestAWriteAfterTheRejoinSnapshotReachesTheNodeBeforeTheTableSaysItIsBack(t *testing.T) {
	c := newFakeCluster(t, 1)
	n1, n2 := c.addNode("n1"), c.addNode("n2")
	c.setAll(1, "n1", "n2")
	c.assignFromTable()
	c.setMemberStatus("n2", "restarting")
	n1.srv.agent.invalidate()
	if code, body := c.put(n1, "missed", "1"); code != http.StatusNoContent {
		t.Fatalf("put while n2 is away: %d %s", code, body)
	}
	// n2's agent has applied its return, n1's not yet.
	c.freeze("n1")
	c.setMemberStatus("n2", "alive")
	if code := c.deliver(n2, hooks.Event{ID: "rejoin-n2", Type: hooks.TypeRejoin, Role: hooks.RoleNone, Partitions: []int{0}}); code != http.StatusNoContent {
		t.Fatalf("rejoin: %d", code)
	}
	if v, _ := stored(n2, 0, "missed"); v != "1" {
		t.Fatalf("the rejoin did not re-sync n2: missed = %q", v)
	}
	if code, body := c.put(n1, "after", "2"); code != http.StatusNoContent {
		t.Fatalf("put after the re-sync: %d %s", code, body)
	}
	if v, _ := stored(n2, 0, "after"); v != "2" {
		t.Fatalf("a write acknowledged after n2's re-sync snapshot is not on n2: after = %q", v)
	}
}
