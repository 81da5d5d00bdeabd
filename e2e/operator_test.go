package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/steward-dev/steward/hooks"
	"github.com/steward-dev/steward/localcluster"
)

// The operator's hands on the wheel: agent replace, agent move (pins) and
// the desired size with its provisioner.

// holdersOf are the holders of partition p, primary first.
func holdersOf(p localcluster.Partition) []string {
	if p.Primary == "" {
		return p.Replicas
	}
	return append([]string{p.Primary}, p.Replicas...)
}

// checkNeverBelowRF fails the test if a partition of table has fewer than
// rf holders.
func checkNeverBelowRF(t *testing.T, table localcluster.PartitionTable, rf int, when string) {
	t.Helper()
	for _, p := range table.Partitions {
		if len(holdersOf(p)) < rf {
			t.Fatalf("%s: partition %d has holders %v, below the replication factor %d", when, p.ID, holdersOf(p), rf)
		}
	}
}

func TestReplaceMovesEveryCopyToTheNewNodeThenTheOldOneLeaves(t *testing.T) {
	c := newCluster(t)
	nodes := formAppCluster(t, c, 3, "-partitions", "16", "-replication-factor", "3")
	w := &writer{acked: map[string]string{}}
	w.run(context.Background(), func() []*appNode { return nodes }, "before", 100)

	fresh := addAppNode(t, c, "node4", "-partitions", "16", "-replication-factor", "3")
	fresh.startApp(t)
	fresh.start("-join", nodes[0].GossipAddr())
	eventually(t, 30*time.Second, "node4 registered and alive", func() error {
		members, err := nodes[0].MembersByID()
		if err != nil {
			return err
		}
		// Gossip shows an agent alive before the leader has registered it
		// in the state; only a registered member can be a replacement.
		if m := members["node4"]; !m.Registered || m.Status != "alive" {
			return fmt.Errorf("node4 is %+v", m)
		}
		return nil
	})

	// Refused, changing nothing: the old node replacing itself, an
	// unknown new node.
	for _, by := range []string{"node2", "nobody"} {
		if err := nodes[0].PostJSON("/v1/members/node2/replace", "", map[string]string{"by": by}, nil); err == nil {
			t.Fatalf("replace node2 by %s accepted", by)
		}
	}
	if err := nodes[0].PostJSON("/v1/members/node2/replace", "", map[string]string{"by": "node4"}, nil); err != nil {
		t.Fatal(err)
	}

	// Writes go on through the nodes that stay while the copies move.
	survivors := []*appNode{nodes[0], nodes[2], fresh}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(ctx, func() []*appNode { return survivors }, "during", 200)
	}()
	eventually(t, 60*time.Second, "every partition on node4, none on node2, node2 left", func() error {
		table, err := nodes[0].Partitions()
		if err != nil {
			return err
		}
		checkNeverBelowRF(t, table, 3, "during the replacement")
		for _, p := range table.Partitions {
			if h := holdersOf(p); !slices.Contains(h, "node4") || slices.Contains(h, "node2") {
				return fmt.Errorf("partition %d is held by %v", p.ID, h)
			}
		}
		st, err := nodes[0].MemberStatus("node2")
		if err != nil {
			return err
		}
		if st != "left" {
			return fmt.Errorf("node2 is %s", st)
		}
		return nil
	})
	cancel()
	<-done
	if err, ok := nodes[1].WaitExit(30 * time.Second); !ok || err != nil {
		t.Fatalf("node2's agent did not exit cleanly after its replacement (exited %v: %v)", ok, err)
	}
	waitSettled(t, survivors, 3)
	acked := w.snapshot()
	t.Logf("%d of %d writes acknowledged", len(acked), w.tried)
	checkAllReadable(t, survivors, acked)
}

func TestAMovePinsAPartitionsPrimaryUntilUnpinned(t *testing.T) {
	c := newCluster(t)
	nodes := formCluster(t, c, 3, "-partitions", "8", "-replication-factor", "2")
	table, err := nodes[0].Partitions()
	if err != nil {
		t.Fatal(err)
	}
	// A node that does not hold partition 5: the move has to copy it there
	// (add before remove) and then make it primary.
	var target string
	for _, n := range nodes {
		if !slices.Contains(holdersOf(table.Partitions[5]), n.ID) {
			target = n.ID
		}
	}
	if err := nodes[1].PostJSON("/v1/partitions/99/move", "", map[string]any{"node": target}, nil); err == nil {
		t.Fatal("a move of partition 99 of 8 accepted")
	}
	if err := nodes[1].PostJSON("/v1/partitions/5/move", "", map[string]any{"node": target, "primary": true}, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "partition 5 led by the pinned "+target, func() error {
		table, err := nodes[0].Partitions()
		if err != nil {
			return err
		}
		checkNeverBelowRF(t, table, 2, "during the move")
		p := table.Partitions[5]
		if p.Primary != target || len(holdersOf(p)) != 2 {
			return fmt.Errorf("partition 5: primary %s, holders %v", p.Primary, holdersOf(p))
		}
		if len(p.Pins) != 1 || p.Pins[0] != (localcluster.Pin{Node: target, Primary: true}) {
			return fmt.Errorf("partition 5 pins %+v", p.Pins)
		}
		return nil
	})
	// The decision says why: the leader's event log names the pin.
	var events struct {
		Events []struct {
			Actions []struct {
				Partition int      `json:"partition"`
				Reasons   []string `json:"reasons"`
			} `json:"actions"`
		} `json:"events"`
	}
	leader := leaderOf(t, nodes)
	if err := leader.GetJSON("/v1/events", &events); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range events.Events {
		for _, a := range e.Actions {
			if a.Partition == 5 && slices.ContainsFunc(a.Reasons, func(r string) bool { return r == "pinned primary (agent move -primary)" }) {
				found = true
			}
		}
	}
	if !found {
		t.Fatalf("no decision about partition 5 gives the pin as its reason: %+v", events.Events)
	}

	if err := nodes[2].PostJSON("/v1/partitions/5/move", "", map[string]any{"unpin": true}, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "partition 5 unpinned everywhere", func() error {
		for _, n := range nodes {
			table, err := n.Partitions()
			if err != nil {
				return err
			}
			if pins := table.Partitions[5].Pins; len(pins) != 0 {
				return fmt.Errorf("%s still shows pins %+v", n.ID, pins)
			}
		}
		return nil
	})
}

func TestTheLeaderAsksTheProvisionerForAHostUntilItJoins(t *testing.T) {
	const secretText = "whsec_MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="
	secret, err := hooks.ParseSecret(secretText)
	if err != nil {
		t.Fatal(err)
	}
	// The fake provisioner: verifies each request's signature and passes
	// it to the test, which starts the agents it asks for.
	var mu sync.Mutex
	var requests []map[string]any
	asked := make(chan map[string]any, 16)
	provisioner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := hooks.Verify(secret, r.Header, body, time.Now(), 0); err != nil {
			t.Errorf("provisioner request with a bad signature: %v", err)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var req map[string]any
		if err := json.Unmarshal(body, &req); err != nil {
			t.Errorf("provisioner request %q: %v", body, err)
		}
		mu.Lock()
		requests = append(requests, req)
		mu.Unlock()
		select {
		case asked <- req:
		default:
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	defer provisioner.Close()

	flags := []string{"-partitions", "8", "-replication-factor", "2", "-desired-nodes", "4",
		"-provision-url", provisioner.URL, "-provision-grace", "1s", "-webhook-secret", secretText}
	c := newCluster(t)
	nodes := formCluster(t, c, 3, flags...)

	var req map[string]any
	select {
	case req = <-asked:
	case <-time.After(30 * time.Second):
		t.Fatal("the leader did not ask the provisioner for the missing host")
	}
	if req["type"] != "cluster.provision" || req["desired"] != 4.0 || req["alive"] != 3.0 || req["missing"] != 1.0 {
		t.Fatalf("provisioner request %+v: want type cluster.provision, desired 4, alive 3, missing 1", req)
	}
	// The provisioner starts one host, whatever the number of requests.
	fresh := c.add("node4", flags...)
	fresh.start("-join", nodes[0].GossipAddr())
	all := append(nodes, fresh)
	eventually(t, 30*time.Second, "cluster.size: 4 alive of 4 desired on every agent", func() error {
		for _, n := range all {
			st, err := n.Status()
			if err != nil {
				return err
			}
			if size := st.Cluster.Size; size.Desired != 4 || size.Alive != 4 || size.Missing != 0 {
				return fmt.Errorf("%s: cluster.size %+v", n.ID, size)
			}
		}
		return nil
	})
	// Once the host is in, the leader stops asking: its count of requests
	// for the shortage is reset (the schedule's unit test shows that no
	// request follows).
	leader := leaderOf(t, all)
	eventually(t, 10*time.Second, "the leader's request count reset", func() error {
		st, err := leader.Status()
		if err != nil {
			return err
		}
		if st.Cluster.ProvisionRequests != 0 {
			return fmt.Errorf("leader %s still counts %d requests", leader.ID, st.Cluster.ProvisionRequests)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	for _, r := range requests {
		if r["missing"] != 1.0 {
			t.Fatalf("a request asked for %v hosts: %+v", r["missing"], r)
		}
	}
}
