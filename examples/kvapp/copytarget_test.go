package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/steward-dev/steward/hooks"
)

// Copy targets while the tables of the nodes disagree. A node copying a
// partition registers with its source, which sends it every write made
// after its snapshot. The tables the writes are routed by lag behind one
// another (each node's agent applies the log on its own), and the
// registration must cover every write its snapshot missed whatever table
// a write read.

// startCopyFrom makes target copy partition 0 from source at epoch, as
// migration id, and waits until the copy is acknowledged to the agent.
func (c *fakeCluster) startCopyFrom(target, source *testNode, epoch uint64, id string) {
	c.t.Helper()
	done, _ := c.acks()
	ev := hooks.Event{Type: hooks.TypeAssign, Partition: 0, Epoch: epoch, Role: hooks.RoleReplica,
		Source: &hooks.Source{NodeID: source.id, AppAddr: source.srv.cfg.Addr}, MigrationID: id}
	if code := c.deliver(target, ev); code != http.StatusAccepted {
		c.t.Fatalf("assign with a copy to %s: %d", target.id, code)
	}
	eventually(c.t, "the copy", func() bool { now, _ := c.acks(); return len(now) == len(done)+1 })
}

// Two writes of one primary in flight at once read two tables: the later
// write's table lists the migration, the earlier one's does not yet. The
// write with the newer table must not end the registration that the
// write with the older table relies on (in the chaos test, the new
// primary promoted from the copy then served reads without that write).
func TestAWriteThatReadAnOlderTableStillReachesACopyTarget(t *testing.T) {
	c := newFakeCluster(t, 1)
	n1, n3 := c.addNode("n1"), c.addNode("n3")
	c.setAll(1, "n1")
	c.assignFromTable()

	c.setAll(2, "n1")
	if code := c.deliver(n1, hooks.Event{Type: hooks.TypeAssign, Partition: 0, Epoch: 2, Role: hooks.RolePrimary}); code != http.StatusNoContent {
		t.Fatalf("assign to the primary: %d", code)
	}
	c.startCopyFrom(n3, n1, 2, "m-1")

	c.setPartition(partitionView{ID: 0, Epoch: 2, Primary: "n1", Migrations: []migrationView{{ID: "m-1", Target: "n3", Source: "n1"}}})
	n1.srv.agent.invalidate()
	c.mustPut(n1, "listed", "1")
	if v, _ := stored(n3, 0, "listed"); v != "1" {
		t.Fatalf("the copy target missed a write whose table lists it: %q", v)
	}

	// The table of a write that began before n1's agent had the migration.
	c.setAll(2, "n1")
	n1.srv.agent.invalidate()
	c.mustPut(n1, "older", "2")
	if v, ok := stored(n3, 0, "older"); !ok || v != "2" {
		t.Fatalf("a write that read a table without the migration did not reach the copy target: %q %v", v, ok)
	}
}

// A replica back from a failure re-syncs from the primary, whose agent
// has not applied the return yet and still shows it failed. Writes made
// after the re-sync's snapshot must reach it all the same: the planner
// may make it primary as soon as its app has caught up.
func TestACopyBackFromAFailureGetsWritesWhileThePrimarysTableShowsItFailed(t *testing.T) {
	c := newFakeCluster(t, 1)
	n1, n2 := c.addNode("n1"), c.addNode("n2")
	c.setAll(1, "n1", "n2")
	c.assignFromTable()
	n1.srv.store.dropCopyTarget(0, "n2") // registered by its first copy
	c.setMemberStatus("n2", "failed")
	n1.srv.agent.invalidate()
	c.mustPut(n1, "missed", "1")
	if _, ok := stored(n2, 0, "missed"); ok {
		t.Fatal("a failed member got the write; the test proves nothing")
	}

	// n2's own agent has taken it back and tells its app; n1's agent has
	// not applied the return and still shows n2 failed.
	c.freeze("n1")
	c.setMemberStatus("n2", "alive")
	if code := c.deliver(n2, hooks.Event{ID: "rejoin-n2", Type: hooks.TypeRejoin, Role: hooks.RoleNone, Partitions: []int{0}}); code != http.StatusNoContent {
		t.Fatalf("rejoin: %d", code)
	}
	if v, _ := stored(n2, 0, "missed"); v != "1" {
		t.Fatalf("the rejoin did not re-sync n2: missed = %q", v)
	}
	c.mustPut(n1, "after", "2")
	if v, ok := stored(n2, 0, "after"); !ok || v != "2" {
		t.Fatalf("a write after n2's re-sync snapshot is not on n2, whose return the primary's table does not show yet: %q %v", v, ok)
	}
}

// A copy taken from a replica: the replica's table lists the migration,
// the primary's does not yet, so the primary sends its write to the
// replica only. The replica must pass it on to the copy target registered
// with it.
func TestAReplicaPassesAWriteOnToItsCopyTargetThePrimaryDoesNotKnowYet(t *testing.T) {
	c := newFakeCluster(t, 1)
	n1, n2, n3 := c.addNode("n1"), c.addNode("n2"), c.addNode("n3")
	c.setAll(1, "n1", "n2")
	c.assignFromTable()
	c.mustPut(n1, "before", "1")

	c.setPartition(partitionView{ID: 0, Epoch: 2, Primary: "n1", Replicas: []string{"n2"}, Migrations: []migrationView{{ID: "m-1", Target: "n3", Source: "n2"}}})
	c.setBehind("n1", partitionView{ID: 0, Epoch: 2, Primary: "n1", Replicas: []string{"n2"}})
	for _, n := range []*testNode{n1, n2} {
		role := hooks.RoleReplica
		if n == n1 {
			role = hooks.RolePrimary
		}
		if code := c.deliver(n, hooks.Event{Type: hooks.TypeAssign, Partition: 0, Epoch: 2, Role: role}); code != http.StatusNoContent {
			t.Fatalf("assign at epoch 2 to %s: %d", n.id, code)
		}
	}
	c.startCopyFrom(n3, n2, 2, "m-1")
	if v, _ := stored(n3, 0, "before"); v != "1" {
		t.Fatalf("the copy lacks the earlier write: %q", v)
	}

	c.mustPut(n1, "after", "2")
	if v, ok := stored(n3, 0, "after"); !ok || v != "2" {
		t.Fatalf("the replica did not pass the write on to the copy target registered with it: %q %v", v, ok)
	}
}

// An app told to hold a partition it has no copy of, without a source,
// takes it from the other holders (the safety net of hold). Its snapshot
// registers it with the holder at once, so a write made after the
// snapshot is sent to it while the copy is still on its way: the app must
// take that write, not answer that it holds nothing, or the holder drops
// it and it misses the write for good.
func TestAWriteDuringARecoveryFromTheHoldersReachesTheRecoveringApp(t *testing.T) {
	c := newFakeCluster(t, 1)
	n1 := c.addNode("n1")
	c.addNode("n2")
	c.setAll(1, "n1", "n2")
	c.assignFromTable()
	c.mustPut(n1, "before", "1")

	// n3 reaches n1 through a proxy that, once n1 has answered the
	// snapshot (and registered n3), makes a write through n1 before it
	// passes the snapshot on.
	written := make(chan string, 1)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := http.Get(n1.ts.URL + r.URL.RequestURI())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		if resp.StatusCode == http.StatusOK && strings.HasPrefix(r.URL.Path, "/internal/partitions/") {
			code, body, err := c.tryPut(n1, "during", "2")
			switch {
			case err != nil:
				written <- err.Error()
			case code != http.StatusNoContent:
				written <- fmt.Sprintf("%d %s", code, body)
			default:
				written <- ""
			}
		}
		w.WriteHeader(resp.StatusCode)
		w.Write(body)
	}))
	defer proxy.Close()
	c.setAppAddr("n1", proxy.Listener.Addr().String())

	n3 := c.addNode("n3") // plays n2's restarted app under a new name
	c.setAll(1, "n1", "n2", "n3")
	if code := c.deliver(n3, hooks.Event{Type: hooks.TypeAssign, Partition: 0, Epoch: 1, Role: hooks.RoleReplica}); code != http.StatusNoContent {
		t.Fatalf("assign: %d", code)
	}
	select {
	case res := <-written:
		if res != "" {
			t.Fatalf("the write during the recovery: %s", res)
		}
	default:
		t.Fatal("the proxy made no write; the test proves nothing")
	}
	if v, _ := stored(n3, 0, "before"); v != "1" {
		t.Fatalf("the recovery lacks the earlier write: %q", v)
	}
	if v, ok := stored(n3, 0, "during"); !ok || v != "2" {
		t.Fatalf("a write acknowledged after the recovery's snapshot is not on the recovering app: %q %v", v, ok)
	}
}

// A node that copied a partition stays registered with its source. Once
// the source's table, at least as new as the one the node copied under,
// shows it failed, the source's writes must not be sent to it: behind a
// cut a send hangs for -peer-timeout, and every write of every partition
// the node copied would wait that long before a fresh table let it go.
func TestAWriteIsNotSentToACopyTargetFailedSinceItRegistered(t *testing.T) {
	c := newFakeCluster(t, 1)
	n1 := c.addNode("n1")
	c.setAll(1, "n1")
	c.assignFromTable()

	// n3 copies behind a cut to come: its address takes connections and
	// never answers.
	hole := newBlackHole(t)
	c.addMember("n3", hole.addr())
	c.registerCopyTarget(n1, "n3", hole.addr())
	c.setMemberStatus("n3", "failed")
	n1.srv.agent.invalidate()

	c.mustPut(n1, "after", "1")
	if n := hole.accepted(); n != 0 {
		t.Fatalf("the write was sent to a copy target failed since it registered (%d connections)", n)
	}
	if registered(n1, 0, "n3") {
		t.Fatal("n1 still has n3 registered, failed since it registered")
	}
}

// registerCopyTarget asks source for partition 0's snapshot as node would
// at the current index, registering it with addr.
func (c *fakeCluster) registerCopyTarget(source *testNode, node, addr string) {
	c.t.Helper()
	c.mu.Lock()
	index := c.index
	c.mu.Unlock()
	q := url.Values{"node": {node}, "addr": {addr}, "index": {strconv.FormatUint(index, 10)}}
	req, err := http.NewRequest(http.MethodGet, source.ts.URL+"/internal/partitions/0?"+q.Encode(), nil)
	if err != nil {
		c.t.Fatal(err)
	}
	if code, body := c.do(req); code != http.StatusOK {
		c.t.Fatalf("snapshot for %s: %d %s", node, code, body)
	}
}

// registered reports whether n has node registered as a copy target of
// the partition.
func registered(n *testNode, partition int, node string) bool {
	n.srv.store.mu.Lock()
	defer n.srv.store.mu.Unlock()
	p := n.srv.store.parts[partition]
	_, ok := p.copyTo[node]
	return p != nil && ok
}

// blackHole is an address behind a cut: it accepts connections and never
// answers, and counts them.
type blackHole struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func newBlackHole(t *testing.T) *blackHole {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &blackHole{ln: ln}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			h.mu.Lock()
			h.conns = append(h.conns, conn)
			h.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		h.wg.Wait()
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, c := range h.conns {
			c.Close()
		}
	})
	return h
}

func (h *blackHole) addr() string { return h.ln.Addr().String() }

func (h *blackHole) accepted() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}
