package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// The clients of a chaos run: each reads and writes random keys through
// random nodes' kvapps (which forward to the key's primary) and records
// every operation in the history. Every write puts a value no other write
// puts ("c3-17": client 3's 17th write), so that a read says which write
// it saw.

// clientTimeout bounds one operation: above kvapp's retry budget (10 s), so
// that the app gives up first and says why.
const clientTimeout = 15 * time.Second

// kvClient is one client; it runs in its own goroutine.
type kvClient struct {
	id     int
	rng    *rand.Rand
	keys   []string
	nodes  []*appNode
	h      *history
	http   *http.Client
	writes int
}

func newKVClient(id int, seed uint64, keys []string, nodes []*appNode, h *history) *kvClient {
	return &kvClient{
		id: id, rng: rand.New(rand.NewPCG(seed, uint64(id))), keys: keys, nodes: nodes, h: h,
		http: &http.Client{Timeout: clientTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: 2, IdleConnTimeout: 5 * time.Second}},
	}
}

// run issues operations until ctx ends; the operation in flight then
// finishes (within clientTimeout) and is recorded.
func (c *kvClient) run(ctx context.Context) {
	defer c.http.CloseIdleConnections()
	for ctx.Err() == nil {
		key := c.keys[c.rng.IntN(len(c.keys))]
		n := c.nodes[c.rng.IntN(len(c.nodes))]
		var op historyOp
		if c.rng.IntN(2) == 0 {
			op = c.read(n, key)
		} else {
			op = c.write(n, key)
		}
		// A pause between operations (150 ms on average, about 80
		// operations a second from twelve clients), so that the clients
		// leave the agents the CPU their failure detection needs on a
		// small machine; and at least 100 ms after a failure, so that a
		// node that is down is not hammered.
		pause := time.Duration(50+c.rng.IntN(200)) * time.Millisecond
		if op.Outcome != outcomeOK {
			pause = max(pause, 100*time.Millisecond)
		}
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
	}
}

func (c *kvClient) write(n *appNode, key string) historyOp {
	c.writes++
	value := fmt.Sprintf("c%d-%d", c.id, c.writes)
	op := historyOp{Client: c.id, Node: n.ID, Key: key, Kind: opWrite, Value: value, Call: c.h.now()}
	req, _ := http.NewRequest(http.MethodPut, "http://"+n.app.Addr()+"/kv/"+url.PathEscape(key), strings.NewReader(value))
	status, body, err := c.do(req)
	op.Return = c.h.now()
	op.Outcome, op.Error = outcomeOf(status, err, http.StatusNoContent)
	if err == nil && op.Outcome != outcomeOK {
		op.Error += ": " + strings.TrimSpace(string(body))
	}
	c.h.record(op)
	return op
}

func (c *kvClient) read(n *appNode, key string) historyOp {
	op := historyOp{Client: c.id, Node: n.ID, Key: key, Kind: opRead, Call: c.h.now()}
	req, _ := http.NewRequest(http.MethodGet, "http://"+n.app.Addr()+"/kv/"+url.PathEscape(key), nil)
	status, body, err := c.do(req)
	op.Return = c.h.now()
	switch {
	case err == nil && status == http.StatusOK:
		op.Outcome, op.Value = outcomeOK, string(body)
	case err == nil && status == http.StatusNotFound:
		op.Outcome = outcomeOK // the key is absent: Value ""
	default:
		op.Outcome, op.Error = outcomeOf(status, err, http.StatusOK)
		if err == nil {
			op.Error += ": " + strings.TrimSpace(string(body))
		}
	}
	c.h.record(op)
	return op
}

// do runs req and returns the status and the body.
func (c *kvClient) do(req *http.Request) (int, []byte, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, body, nil
}

// outcomeOf is ok for the status that means success, unknown otherwise.
func outcomeOf(status int, err error, success int) (opOutcome, string) {
	switch {
	case err != nil:
		return outcomeUnknown, err.Error()
	case status == success:
		return outcomeOK, ""
	}
	return outcomeUnknown, http.StatusText(status)
}

// runClients starts count clients and returns a function that stops them
// and waits until each has recorded its last operation.
func runClients(count int, seed uint64, keys []string, nodes []*appNode, h *history) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := 0; i < count; i++ {
		c := newKVClient(i, seed, keys, nodes, h)
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.run(ctx)
		}()
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

// readEverything reads every key through every node, once, as clients
// firstID and up (one per node, all at once): after the cluster
// converged, a write that was acknowledged and then lost shows up here if
// no client read the key again.
func readEverything(firstID int, keys []string, nodes []*appNode, h *history) {
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newKVClient(firstID+i, 0, keys, nodes, h)
			defer c.http.CloseIdleConnections()
			for _, k := range keys {
				c.read(n, k)
			}
		}()
	}
	wg.Wait()
}

// keyNames returns count keys, k00 to k<count-1>.
func keyNames(count int) []string {
	out := make([]string, count)
	for i := range out {
		out[i] = fmt.Sprintf("k%02d", i)
	}
	return out
}

// describeCounts is a one-line summary of a history's operations.
func describeCounts(h *history) string {
	c := h.counts()
	var b bytes.Buffer
	fmt.Fprintf(&b, "%d writes acknowledged, %d unknown; %d reads answered, %d failed",
		c[opWrite][outcomeOK], c[opWrite][outcomeUnknown], c[opRead][outcomeOK], c[opRead][outcomeUnknown])
	return b.String()
}
