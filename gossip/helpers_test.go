package gossip

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// testLogger is silent unless GOSSIP_TEST_LOG is set, so that memberlist's
// chatter can be read when a test fails.
func testLogger(name string) hclog.Logger {
	if os.Getenv("GOSSIP_TEST_LOG") == "" {
		return hclog.NewNullLogger()
	}
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Debug, Output: os.Stderr})
}

// testConfig is a loopback node with a free port and the local profile.
func testConfig(id string) *Config {
	c := DefaultConfig()
	c.NodeID = id
	c.BindAddr = "127.0.0.1"
	c.BindPort = 0
	c.Profile = ProfileLocal
	c.DeadNodeReclaimTime = 500 * time.Millisecond
	c.Meta = Meta{RaftID: id, RaftAddr: "127.0.0.1:1" + id, Zone: "zone-" + id, Version: "test", Weight: 1}
	c.Logger = testLogger(id)
	return c
}

// member is a running Gossip plus everything its Events channel delivered.
type member struct {
	*Gossip
	mu     sync.Mutex
	seen   []Event
	closed chan struct{}
}

func start(t *testing.T, cfg *Config) *member {
	t.Helper()
	g, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", cfg.NodeID, err)
	}
	m := &member{Gossip: g, closed: make(chan struct{})}
	go func() {
		defer close(m.closed)
		for ev := range g.Events() {
			m.mu.Lock()
			m.seen = append(m.seen, ev)
			m.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		if err := g.Shutdown(); err != nil {
			t.Errorf("Shutdown(%s): %v", cfg.NodeID, err)
		}
		<-m.closed
	})
	return m
}

// eventsAbout returns the types of the events seen about node id, in order.
func (m *member) eventsAbout(id string) []EventType {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []EventType
	for _, ev := range m.seen {
		if ev.Node.ID == id {
			out = append(out, ev.Type)
		}
	}
	return out
}

func (m *member) lastEvent(id string, t EventType) (Event, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := len(m.seen) - 1; i >= 0; i-- {
		if ev := m.seen[i]; ev.Node.ID == id && ev.Type == t {
			return ev, true
		}
	}
	return Event{}, false
}

func joinTo(t *testing.T, m *member, seeds ...*member) {
	t.Helper()
	addrs := make([]string, 0, len(seeds))
	for _, s := range seeds {
		addrs = append(addrs, s.Addr())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := m.Join(ctx, addrs); err != nil {
		t.Fatalf("%s: Join(%v): %v", m.nodeID, addrs, err)
	}
}

// cluster starts n nodes "n1".."nN" and joins them all through n1, then
// waits until every node sees every node alive.
func cluster(t *testing.T, n int, tweak func(*Config)) []*member {
	t.Helper()
	var ms []*member
	for i := 1; i <= n; i++ {
		cfg := testConfig(fmt.Sprintf("n%d", i))
		if tweak != nil {
			tweak(cfg)
		}
		ms = append(ms, start(t, cfg))
	}
	for _, m := range ms[1:] {
		joinTo(t, m, ms[0])
	}
	for _, m := range ms {
		eventually(t, 10*time.Second, func() error {
			alive := 0
			for _, node := range m.Members() {
				if node.State == StateAlive {
					alive++
				}
			}
			if alive != n {
				return fmt.Errorf("%s sees %d alive members, want %d: %+v", m.nodeID, alive, n, m.Members())
			}
			return nil
		})
	}
	return ms
}

// eventually polls cond until it returns nil or the deadline passes.
func eventually(t *testing.T, within time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %v", within, err)
		}
		time.Sleep(20 * time.Millisecond) // poll interval, not synchronisation
	}
}

func indexOf(ts []EventType, t EventType) int { return slices.Index(ts, t) }
