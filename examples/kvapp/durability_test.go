package main

import (
	"fmt"
	"net/http"
	"os/exec"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/steward-dev/steward/hooks"
)

// entryOf reads a key's latest version straight from n's memory.
func entryOf(n *testNode, partition int, key string) (entry, bool) {
	n.srv.store.mu.Lock()
	defer n.srv.store.mu.Unlock()
	p := n.srv.store.parts[partition]
	if p == nil {
		return entry{}, false
	}
	e, ok := p.data[key]
	return e, ok
}

func TestAnAppRestartedOnItsDataDirHasItsDataAndReportsIt(t *testing.T) {
	c := newFakeCluster(t, 2)
	n1, n2 := c.addNode("n1"), c.addNode("n2")
	c.setAll(3, "n1", "n2")
	c.assignFromTable()
	keys := map[string]string{}
	for i := 0; i < 10; i++ {
		k := fmt.Sprintf("k%d", i)
		keys[k] = "v" + k
		if code, body := c.put(n2, k, keys[k]); code != http.StatusNoContent {
			t.Fatalf("PUT %s: %d %s", k, code, body)
		}
	}
	if got := c.reports("n1"); !reflect.DeepEqual(got, [][]int{{}}) {
		t.Fatalf("first start reported %v, want one empty report", got)
	}

	n1 = c.restart(n1, n1.dataDir)
	n2 = c.restart(n2, n2.dataDir)
	for _, id := range []string{"n1", "n2"} {
		if got := c.reports(id); len(got) != 2 || !reflect.DeepEqual(got[1], []int{0, 1}) {
			t.Fatalf("%s reported %v after the restart, want [0 1] second", id, got)
		}
	}
	// No webhook is delivered again: the roles and epochs came back from
	// disk, and the restarted primary serves once its copy has its data.
	for _, st := range n1.srv.store.status() {
		if st.Role != hooks.RolePrimary || st.Epoch != 3 || st.WriteEpoch != 3 || !st.Complete {
			t.Fatalf("n1 after the restart: %+v", st)
		}
	}
	for k, v := range keys {
		if code, got := c.get(n2, k); code != http.StatusOK || got != v {
			t.Fatalf("GET %s after both restarts: %d %q, want %q", k, code, got, v)
		}
		if got, _ := stored(n2, partitionOf(k, 2), k); got != v {
			t.Fatalf("the restarted replica holds %q for %s", got, k)
		}
	}
	// Writes go on, with versions above every one handed out before.
	before, _ := entryOf(n1, partitionOf("k0", 2), "k0")
	if code, _ := c.put(n1, "k0", "again"); code != http.StatusNoContent {
		t.Fatal("write after the restart")
	}
	after, _ := entryOf(n2, partitionOf("k0", 2), "k0")
	if string(after.value) != "again" || !after.ver.newerThan(before.ver) {
		t.Fatalf("write after the restart: %q at %+v, the one before was at %+v", after.value, after.ver, before.ver)
	}
}

func TestAnAppWhoseDataDirWasWipedReportsNothingAndRefusesWrites(t *testing.T) {
	c := newFakeCluster(t, 1)
	n1, n2 := c.addNode("n1"), c.addNode("n2")
	c.setAll(1, "n1", "n2")
	c.assignFromTable()
	c.put(n1, "k", "v")
	n2 = c.restart(n2, t.TempDir())
	if got := c.reports("n2"); len(got) != 2 || len(got[1]) != 0 {
		t.Fatalf("reports %v, want an empty one after the wipe", got)
	}
	if len(n2.srv.store.status()) != 0 {
		t.Fatalf("a wiped app holds %+v", n2.srv.store.status())
	}
	// It was not told to hold the partition again: a write sent to it as a
	// replica is refused, so the primary does not count it as a copy.
	if code, _ := c.replicate(n2, replicateMsg{Partition: 0, Epoch: 1, Entries: []dumpEntry{{Key: "k2", Value: []byte("x"), Version: version{1, 9}}}, From: "n1"}); code != http.StatusNotFound {
		t.Fatalf("replicate to a wiped app: %d, want 404", code)
	}
	if _, ok := stored(n2, 0, "k2"); ok {
		t.Fatal("the refused write was applied")
	}
}

func TestWebhooksWaitForTheHoldingsReport(t *testing.T) {
	c := newFakeCluster(t, 1)
	c.mu.Lock()
	c.refuseHoldings = true
	c.mu.Unlock()
	n := c.startNodeNoWait("n1", t.TempDir())
	c.setAll(1, "n1")
	ev := hooks.Event{Type: hooks.TypeAssign, Partition: 0, Epoch: 1, Role: hooks.RolePrimary}
	if code := c.deliver(n, ev); code != http.StatusServiceUnavailable {
		t.Fatalf("webhook before the report: %d, want 503", code)
	}
	if code, _ := c.do(mustRequest(t, http.MethodGet, n.ts.URL+"/healthz")); code != http.StatusServiceUnavailable {
		t.Fatalf("healthz before the report: %d, want 503", code)
	}
	if len(n.srv.store.status()) != 0 {
		t.Fatal("a refused webhook changed the state")
	}
	c.mu.Lock()
	c.refuseHoldings = false
	c.mu.Unlock()
	eventually(t, "the report", n.srv.reported.Load)
	if code := c.deliver(n, ev); code != http.StatusNoContent {
		t.Fatalf("webhook after the report: %d", code)
	}
	if code, _ := c.do(mustRequest(t, http.MethodGet, n.ts.URL+"/healthz")); code != http.StatusOK {
		t.Fatalf("healthz after the report: %d", code)
	}
}

// TestAWriteIsInvisibleUntilEveryCopyHasIt: with a replica unreachable, a
// write waits on the primary. Reads through the primary meanwhile see the
// value before it; once the replica is back and has it, the write is
// acknowledged and reads see it.
func TestAWriteIsInvisibleUntilEveryCopyHasIt(t *testing.T) {
	c := newFakeCluster(t, 1)
	n1, n2 := c.addNode("n1"), c.addNode("n2")
	c.setAll(1, "n1", "n2")
	c.assignFromTable()
	if code, _ := c.put(n1, "k", "old"); code != http.StatusNoContent {
		t.Fatal("first write")
	}
	n2.ts.Close() // unreachable; its agent has not declared it failed
	var wg sync.WaitGroup
	var code int
	wg.Add(1)
	go func() {
		defer wg.Done()
		code, _ = c.put(n1, "k", "new")
	}()
	eventually(t, "the primary to hold the new write", func() bool { v, _ := stored(n1, 0, "k"); return v == "new" })
	for i := 0; i < 20; i++ {
		if code, got := c.get(n1, "k"); code != http.StatusOK || got != "old" {
			t.Fatalf("a read while the write is pending: %d %q, want old", code, got)
		}
	}
	c.restart(n2, n2.dataDir)
	wg.Wait()
	if code != http.StatusNoContent {
		t.Fatalf("the write once the replica is back: %d", code)
	}
	if code, got := c.get(n1, "k"); code != http.StatusOK || got != "new" {
		t.Fatalf("a read after the acknowledgement: %d %q, want new", code, got)
	}
}

// TestConcurrentWritesOfOneKeyEndTheSameOnEveryCopy: writes of one key in
// flight together are ordered by version; once all are acknowledged, the
// primary shows the one every replica keeps.
func TestConcurrentWritesOfOneKeyEndTheSameOnEveryCopy(t *testing.T) {
	c := newFakeCluster(t, 1)
	n1, n2, n3 := c.addNode("n1"), c.addNode("n2"), c.addNode("n3")
	c.setAll(1, "n1", "n2", "n3")
	c.assignFromTable()
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			via := []*testNode{n1, n2, n3}[i%3]
			if code, body := c.put(via, "k", fmt.Sprintf("v%d", i)); code != http.StatusNoContent {
				t.Errorf("PUT v%d: %d %s", i, code, body)
			}
		}()
	}
	wg.Wait()
	_, read := c.get(n3, "k")
	e1, _ := entryOf(n1, 0, "k")
	for _, n := range []*testNode{n2, n3} {
		if e, _ := entryOf(n, 0, "k"); e.ver != e1.ver || string(e.value) != read {
			t.Fatalf("%s keeps %q at %+v; the primary has %+v and reads %q", n.id, e.value, e.ver, e1.ver, read)
		}
	}
	if e1.ver.Seq < 16 {
		t.Fatalf("the last write has sequence %d after 16 writes", e1.ver.Seq)
	}
}

// TestANewPrimaryGivesItsCopiesWhatItHoldsBeforeServingIt: a replica holds
// a write its primary never confirmed. Promoted, it serves that value only
// once the other replica has it too.
func TestANewPrimaryGivesItsCopiesWhatItHoldsBeforeServingIt(t *testing.T) {
	c := newFakeCluster(t, 1)
	n1, n2, n3 := c.addNode("n1"), c.addNode("n2"), c.addNode("n3")
	c.setAll(1, "n1", "n2", "n3")
	c.assignFromTable()
	if code, _ := c.replicate(n2, replicateMsg{Partition: 0, Epoch: 1, Entries: []dumpEntry{{Key: "ghost", Value: []byte("seen"), Version: version{1, 40}}}, From: "n1"}); code != http.StatusNoContent {
		t.Fatal("replicate to n2")
	}
	if _, ok := stored(n3, 0, "ghost"); ok {
		t.Fatal("n3 has the write: the test proves nothing")
	}
	n1.ts.Close()
	c.setMemberStatus("n1", "failed")
	c.setAll(2, "n2", "n3")
	if code := c.deliver(n2, hooks.Event{Type: hooks.TypePromote, Partition: 0, Epoch: 2, Role: hooks.RolePrimary}); code != http.StatusNoContent {
		t.Fatalf("promote: %d", code)
	}
	if code, got := c.get(n2, "ghost"); code != http.StatusOK || got != "seen" {
		t.Fatalf("GET through the new primary: %d %q", code, got)
	}
	if v, _ := stored(n3, 0, "ghost"); v != "seen" {
		t.Fatalf("the new primary served a value its replica lacks (%q)", v)
	}
}

func mustRequest(t *testing.T, method, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestTheAppPullsInNoControlPlane: an app importing hooks must not build
// raft, gossip or the agent's logger into itself.
func TestTheAppPullsInNoControlPlane(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, banned := range []string{"github.com/hashicorp/raft", "github.com/hashicorp/memberlist", "github.com/hashicorp/go-hclog", "github.com/prometheus/"} {
		for _, dep := range strings.Fields(string(out)) {
			if strings.HasPrefix(dep, banned) {
				t.Errorf("kvapp depends on %s", dep)
			}
		}
	}
}
