package client_test

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/steward-dev/steward/agent"
	"github.com/steward-dev/steward/client"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// http.DefaultClient's idle keep-alive connections close on their
		// own schedule.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

// runAgent runs a one-node cluster in this process and waits until it
// serves its table; stop shuts it down and removes its data.
func runAgent(id, appAddr string) (a *agent.Agent, stop func(), err error) {
	dir, err := os.MkdirTemp("", "steward-client-")
	if err != nil {
		return nil, nil, err
	}
	cfg := agent.DefaultConfig()
	cfg.NodeID = id
	cfg.DataDir = dir
	cfg.GossipPort = 0
	cfg.RaftPort = 0
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.BootstrapExpect = 1
	cfg.Partitions = 16
	cfg.Profile = "local"
	cfg.Insecure = true
	cfg.AppAddr = appAddr
	stop = func() { os.RemoveAll(dir) }
	if a, err = agent.New(cfg, nil); err != nil {
		stop()
		return nil, nil, err
	}
	stop = func() {
		_ = a.Shutdown()
		os.RemoveAll(dir)
	}
	if err := a.Start(); err != nil {
		stop()
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.WaitReady(ctx); err != nil {
		stop()
		return nil, nil, err
	}
	return a, stop, nil
}

func startAgent(t *testing.T, id, appAddr string) *agent.Agent {
	t.Helper()
	a, stop, err := runAgent(id, appAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return a
}

// closedAddr is a loopback address nothing listens on any more.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func newClient(t *testing.T, addrs ...string) *client.Client {
	t.Helper()
	cfg := client.DefaultConfig()
	cfg.Addresses = addrs
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The typed calls read the agent's views; a blocking call returns when the
// state changes, with a higher index; an agent that cannot be reached is
// skipped for the next address.
func TestTheClientReadsBlocksAndSkipsAnAgentItCannotReach(t *testing.T) {
	a := startAgent(t, "solo", "127.0.0.1:9999")
	c := newClient(t, closedAddr(t), a.HTTPAddr())
	ctx := context.Background()

	st, err := c.Status(ctx)
	if err != nil || st.NodeID != "solo" || !st.Ready {
		t.Fatalf("Status: %+v %v", st, err)
	}
	table, meta, err := c.Partitions(ctx, client.QueryOptions{})
	if err != nil || len(table.Partitions) != 16 || meta.Index == 0 || !strings.Contains(meta.Agent, a.HTTPAddr()) {
		t.Fatalf("Partitions: %d partitions, meta %+v, %v", len(table.Partitions), meta, err)
	}
	resources, _, err := c.Resources(ctx, client.QueryOptions{})
	if err != nil || len(resources) != 1 || resources[0].Name != "default" || resources[0].ActivePartitions != 16 || len(table.Resources) != 1 {
		t.Fatalf("Resources: %+v %v; the table's: %+v", resources, err, table.Resources)
	}
	members, _, err := c.Members(ctx, client.QueryOptions{})
	if err != nil || len(members) != 1 || members[0].ID != "solo" || members[0].AppAddr != "127.0.0.1:9999" {
		t.Fatalf("Members: %+v %v", members, err)
	}

	quiet := time.Now()
	_, same, err := c.Members(ctx, client.QueryOptions{WaitIndex: meta.Index, Wait: 200 * time.Millisecond})
	if err != nil || same.Index != meta.Index || time.Since(quiet) < 200*time.Millisecond {
		t.Fatalf("blocking Members with nothing changing: index %d after %s (%v), want %d after the wait", same.Index, time.Since(quiet), err, meta.Index)
	}

	type answer struct {
		meta client.Meta
		err  error
	}
	answered := make(chan answer, 1)
	go func() {
		_, m, err := c.Partitions(ctx, client.QueryOptions{WaitIndex: meta.Index, Wait: time.Minute})
		answered <- answer{m, err}
	}()
	// The change may come before or after the query starts waiting: with
	// the index, it is answered either way.
	if err := c.SetMaintenance(ctx, true); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-answered:
		if got.err != nil || got.meta.Index <= meta.Index {
			t.Fatalf("blocking Partitions after a change: %+v, want an index above %d", got, meta.Index)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the blocking call did not return after the state changed")
	}
}

func TestAnAgentsRefusalIsATypedError(t *testing.T) {
	a := startAgent(t, "solo", "")
	c := newClient(t, a.HTTPAddr())
	_, _, err := c.Partitions(context.Background(), client.QueryOptions{WaitIndex: 1, Wait: 10 * time.Minute})
	var e *client.Error
	if !errors.As(err, &e) || e.StatusCode != 400 || !strings.Contains(e.Message, "at most 5m") {
		t.Fatalf("a wait above the maximum: %v, want the agent's 400 saying so", err)
	}
	if _, err := client.New(client.Config{Addresses: []string{"ftp://x"}}); err == nil {
		t.Fatalf("an ftp address was accepted")
	}
	if _, err := client.New(client.Config{}); err == nil {
		t.Fatalf("a client without addresses was accepted")
	}
}

// Watch hands over every topic's full view first, until the caller stops.
func TestWatchDeliversTheViewsFirst(t *testing.T) {
	a := startAgent(t, "solo", "")
	c := newClient(t, a.HTTPAddr())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var topics []string
	stop := errors.New("seen enough")
	err := c.Watch(ctx, client.WatchOptions{}, func(ev client.Event) error {
		topics = append(topics, ev.Topic)
		switch {
		case ev.Topic == client.TopicPartitions && (ev.Table == nil || len(ev.Table.Partitions) != 16 || ev.Index == 0):
			t.Errorf("partitions event without the full table: %+v", ev)
		case ev.Topic == client.TopicMembers && (len(ev.Members) != 1 || ev.Members[0].ID != "solo"):
			t.Errorf("members event: %+v", ev.Members)
		case ev.Topic == client.TopicResources && (len(ev.Resources) != 1 || ev.Resources[0].Name != "default"):
			t.Errorf("resources event: %+v", ev.Resources)
		}
		if len(topics) == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || strings.Join(topics, ",") != "partitions,members,resources" {
		t.Fatalf("Watch: %v after %v, want the partitions, members and resources views", err, topics)
	}
}
