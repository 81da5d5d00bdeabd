package e2e

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/steward-dev/steward/client"
)

// Routers that follow the agents' watch stream (package client), with real
// agents.

// formWatchedCluster forms n agents, each with its own -app-addr, and
// returns them with their app addresses by node ID.
func formWatchedCluster(t testing.TB, c *cluster, n int, extra ...string) ([]*node, map[string]string) {
	t.Helper()
	var nodes []*node
	apps := map[string]string{}
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("node%d", i)
		apps[id] = net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
		nodes = append(nodes, c.add(id, append([]string{"-app-addr", apps[id]}, extra...)...))
	}
	for _, nd := range nodes {
		nd.start("-bootstrap-expect", strconv.Itoa(n), "-join", nodes[0].GossipAddr())
	}
	return nodes, apps
}

// runRouter starts a router over the agents' APIs, in the given order,
// owned by the test.
func runRouter(t testing.TB, nodes []*node) *client.Router {
	t.Helper()
	cfg := client.DefaultConfig()
	for _, n := range nodes {
		cfg.Addresses = append(cfg.Addresses, n.APIAddr())
	}
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := client.NewRouter(c, client.DefaultRouterConfig())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return r
}

// waitRoute waits, on the router's change signal, until key's route
// satisfies ok.
func waitRoute(t testing.TB, r *client.Router, key string, timeout time.Duration, what string, ok func(client.Route) bool) client.Route {
	t.Helper()
	deadline := time.After(timeout)
	for {
		changed := r.Changed()
		rt, err := r.Route("", key)
		if err == nil && ok(rt) {
			return rt
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("%s: key %q routes to %+v (%v) after %s", what, key, rt, err, timeout)
		}
	}
}

// keyLedBy finds a key whose partition node leads now.
func keyLedBy(t testing.TB, r *client.Router, node string) (string, client.Route) {
	t.Helper()
	for i := 0; i < 10000; i++ {
		key := "key-" + strconv.Itoa(i)
		if rt, err := r.Route("", key); err == nil && rt.Primary == node {
			return key, rt
		}
	}
	t.Fatalf("no key of the first 10000 is led by %s", node)
	return "", client.Route{}
}

// A router follows the watch stream of the agent that is about to die;
// after the SIGKILL it moves to another agent and learns the new primary
// of the key's partition (and its app address) from the stream, without
// polling.
func TestARouterFollowingTheWatchLearnsTheNewPrimaryAfterASIGKILL(t *testing.T) {
	c := newCluster(t)
	nodes, apps := formWatchedCluster(t, c, 3, "-partitions", "16")
	waitSameTable(t, nodes, 60*time.Second)
	leader := leaderOf(t, nodes)
	victim := without(nodes, leader)[0]
	router := runRouter(t, append([]*node{victim}, without(nodes, victim)...))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := router.WaitReady(ctx); err != nil {
		t.Fatalf("the router got no table: %v", err)
	}
	key, before := keyLedBy(t, router, victim.ID)
	if before.AppAddr != apps[victim.ID] {
		t.Fatalf("route of %q before the kill: %+v, want the app address %s", key, before, apps[victim.ID])
	}

	victim.Kill()
	after := waitRoute(t, router, key, 30*time.Second, "the new primary", func(rt client.Route) bool {
		return rt.Primary != "" && rt.Primary != victim.ID
	})
	if after.AppAddr != apps[after.Primary] || after.Epoch <= before.Epoch || after.Partition != before.Partition || after.Stale {
		t.Fatalf("route of %q after the kill: %+v; want partition %d on %s's app (%s) at an epoch above %d, not stale",
			key, after, before.Partition, after.Primary, apps[after.Primary], before.Epoch)
	}
}
