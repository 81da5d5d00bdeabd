package main

import (
	"net/http"
	"strings"
	"testing"
)

// forwarded sends a client request as a forwarding node would: the node
// answers it itself, refusing with 409 rather than forwarding or retrying.
func (c *fakeCluster) forwarded(n *testNode, method, key, value string) (int, string) {
	c.t.Helper()
	req, err := http.NewRequest(method, n.ts.URL+"/kv/"+key, strings.NewReader(value))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set(forwardedHeader, "1")
	return c.do(req)
}

func TestAPrimaryWithoutALeaseServesNoReadAndTakesNoWrite(t *testing.T) {
	c := newFakeCluster(t, 1)
	n1, _ := c.addNode("n1"), c.addNode("n2")
	c.setAll(1, "n1", "n2")
	c.assignFromTable()
	if code, body := c.put(n1, "k", "before"); code != http.StatusNoContent {
		t.Fatalf("put with a lease: %d %s", code, body)
	}

	// The agent of n1 is cut off from its leader: it holds no lease, and
	// its app must stop serving as primary at once, though its table still
	// names it.
	c.setLease("n1", false)
	eventually(t, "n1 to notice the lease is gone", func() bool { return !n1.srv.lease.Serving(0, 1) })
	if code, body := c.forwarded(n1, http.MethodGet, "k", ""); code != http.StatusConflict || !strings.Contains(body, "no primary lease") {
		t.Fatalf("read without a lease: %d %s, want 409 naming the lease", code, body)
	}
	if code, body := c.forwarded(n1, http.MethodPut, "k", "after"); code != http.StatusConflict || !strings.Contains(body, "no primary lease") {
		t.Fatalf("write without a lease: %d %s, want 409 naming the lease", code, body)
	}
	if v, _ := stored(n1, 0, "k"); v != "before" {
		t.Fatalf("a refused write changed the data: %q", v)
	}

	// Contact is back: it serves again.
	c.setLease("n1", true)
	eventually(t, "n1 to hold its lease again", func() bool { return n1.srv.lease.Serving(0, 1) })
	if code, body := c.forwarded(n1, http.MethodGet, "k", ""); code != http.StatusOK || body != "before" {
		t.Fatalf("read with the lease back: %d %q", code, body)
	}
}

func TestAPrimaryServesOnlyOnceItHasTakenInTheEpochItsLeaseGrants(t *testing.T) {
	c := newFakeCluster(t, 1)
	n1 := c.addNode("n1")
	c.addNode("n2")
	c.setAll(1, "n1", "n2")
	c.assignFromTable()
	// The cluster moved the partition to n2 and back to n1 at epoch 3;
	// n1's app has not had the events yet: its lease names epoch 3, it
	// holds epoch 1, and it may have missed writes made meanwhile.
	c.setAll(3, "n1", "n2")
	eventually(t, "n1's lease at epoch 3", func() bool {
		err := n1.srv.lease.Check(0, 1)
		return err != nil && strings.Contains(err.Error(), "granted at epoch 3")
	})
	if code, body := c.forwarded(n1, http.MethodGet, "k", ""); code != http.StatusConflict {
		t.Fatalf("read before taking in epoch 3: %d %s, want 409", code, body)
	}
}
