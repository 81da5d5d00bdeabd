package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/steward-dev/steward/localcluster"
)

// Resources and splits on a real cluster of agents and kvapps.

// resourceCopies checks that every active partition of each resource in
// rf has exactly rf[resource] copies, nothing in flight, and every app
// has acknowledged everything.
func resourceCopies(nodes []*appNode, rf map[string]int) error {
	pt, err := nodes[0].Partitions()
	if err != nil {
		return err
	}
	seen := map[string]int{}
	for _, p := range pt.Partitions {
		want, ok := rf[p.Resource]
		if !ok {
			return fmt.Errorf("partition %d of unexpected resource %q", p.ID, p.Resource)
		}
		seen[p.Resource]++
		if p.Primary == "" || 1+len(p.Replicas) != want || len(p.Migrations) != 0 {
			return fmt.Errorf("partition %d of %s: primary %q replicas %v migrations %d, want %d copies", p.ID, p.Resource, p.Primary, p.Replicas, len(p.Migrations), want)
		}
	}
	for r := range rf {
		if seen[r] == 0 {
			return fmt.Errorf("no partition of %s", r)
		}
	}
	return localcluster.AllDelivered(agents(plainNodes(nodes)))
}

// TestTwoResourcesRFChangesAndASplitUnderWrites: a second resource with
// its own partition count and replication factor next to the default one;
// its RF lowered and raised at run time; a partition of the default
// resource split by hand while clients write, every acknowledged write
// read back; both resources restored after a SIGKILL.
func TestTwoResourcesRFChangesAndASplitUnderWrites(t *testing.T) {
	c := newCluster(t)
	nodes := formAppCluster(t, c, 4, "-partitions", "8", "-replication-factor", "3")
	first := nodes[0]

	if err := first.PostJSON("/v1/resources", "", map[string]any{"name": "orders", "partitions": 4, "replication_factor": 2}, nil); err != nil {
		t.Fatal(err)
	}
	rf := map[string]int{"default": 3, "orders": 2}
	eventually(t, 60*time.Second, "both resources placed at their RF", func() error { return resourceCopies(nodes, rf) })

	if err := first.SendJSON(http.MethodPatch, "/v1/resources/orders", "", map[string]int{"replication_factor": 3}, nil); err != nil {
		t.Fatal(err)
	}
	rf["orders"] = 3
	eventually(t, 60*time.Second, "orders raised to RF 3", func() error { return resourceCopies(nodes, rf) })
	if err := first.SendJSON(http.MethodPatch, "/v1/resources/orders", "", map[string]int{"replication_factor": 2}, nil); err != nil {
		t.Fatal(err)
	}
	rf["orders"] = 2
	eventually(t, 60*time.Second, "orders lowered back to RF 2", func() error { return resourceCopies(nodes, rf) })

	// Writers run through the split.
	w := &writer{acked: map[string]string{}}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(ctx, func() []*appNode { return nodes }, "split"+strconv.Itoa(i), 1<<30)
		}()
	}
	eventually(t, 30*time.Second, "writes acknowledged before the split", func() error {
		if n := len(w.snapshot()); n < 50 {
			return fmt.Errorf("%d acknowledged", n)
		}
		return nil
	})
	var split struct {
		Children []struct {
			Partition int `json:"partition"`
		} `json:"children"`
	}
	if err := first.PostJSON("/v1/partitions/3/split", "", map[string]string{"resource": "default"}, &split); err != nil {
		t.Fatal(err)
	}
	if len(split.Children) != 2 {
		t.Fatalf("split answered children %+v", split.Children)
	}
	eventually(t, 60*time.Second, "the children replace partition 3, at RF 3", func() error {
		pt, err := first.Partitions()
		if err != nil {
			return err
		}
		ids := map[int]bool{}
		for _, p := range pt.Partitions {
			ids[p.ID] = true
		}
		if ids[3] || !ids[split.Children[0].Partition] || !ids[split.Children[1].Partition] {
			return fmt.Errorf("active partitions %v", ids)
		}
		return resourceCopies(nodes, rf)
	})
	before := len(w.snapshot())
	eventually(t, 30*time.Second, "writes acknowledged after the split", func() error {
		if n := len(w.snapshot()); n < before+50 {
			return fmt.Errorf("%d acknowledged since the split", n-before)
		}
		return nil
	})
	stop()
	wg.Wait()
	acked := w.snapshot()
	checkAllReadable(t, nodes, acked)

	// A machine lost: both resources are restored at their RF.
	victim := nodes[3]
	victim.killNode()
	live := appWithout(nodes, victim)
	eventually(t, 90*time.Second, "both resources restored after the SIGKILL", func() error { return resourceCopies(live, rf) })
	checkAllReadable(t, live[:1], acked)
	checkSignatures(t, nodes)
}

// TestAPartitionGrownPastItsTargetSizeSplitsByItselfUnderWrites: the apps
// report their partitions' sizes; once the default resource has a target
// size, the partitions that grow past it split without an operator, while
// clients write, and every acknowledged write is read back.
func TestAPartitionGrownPastItsTargetSizeSplitsByItselfUnderWrites(t *testing.T) {
	c := newCluster(t)
	nodes := formLoadCluster(t, c, 3, "-partitions", "4", "-replication-factor", "3")
	waitSettled(t, nodes, 3)
	if err := nodes[0].SendJSON(http.MethodPatch, "/v1/resources/default", "", map[string]int64{"target_size_bytes": 96 << 10}, nil); err != nil {
		t.Fatal(err)
	}

	// Values of 1 KiB: a few hundred keys take the four partitions past
	// their thresholds (77 to 115 KiB).
	var mu sync.Mutex
	acked := map[string]string{}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 15 * time.Second}
			for i := 0; ctx.Err() == nil; i++ {
				key := fmt.Sprintf("grow%d-%d", w, i)
				value := fmt.Sprintf("%s-%01020d", key, i)
				if putKey(client, nodes[i%len(nodes)].app.Addr(), key, value) == nil {
					mu.Lock()
					acked[key] = value
					mu.Unlock()
				}
			}
		}()
	}
	eventually(t, 60*time.Second, "a partition split by itself", func() error {
		pt, err := nodes[0].Partitions()
		if err != nil {
			return err
		}
		for _, p := range pt.Partitions {
			if p.ID >= 4 {
				return nil // a child of a split
			}
		}
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		return fmt.Errorf("%d partitions, %d keys written", len(pt.Partitions), n)
	})
	stop()
	wg.Wait()
	eventually(t, 60*time.Second, "the children replicated and every event delivered", func() error {
		return resourceCopies(nodes, map[string]int{"default": 3})
	})
	mu.Lock()
	defer mu.Unlock()
	checkAllReadable(t, nodes[:1], acked)
}

// TestAPartitionWhoseEveryCopyDiedGetsANewEmptyPrimary: with one copy per
// partition, SIGKILL of a node leaves its partitions with no copy at all.
// Once the failed node is replaced, each gets a new, empty primary on a
// survivor (the planner's "all copies lost" repair): its app is told to
// hold the partition with nothing to copy from, and serves writes again.
func TestAPartitionWhoseEveryCopyDiedGetsANewEmptyPrimary(t *testing.T) {
	c := newCluster(t)
	var nodes []*appNode
	for i := 1; i <= 3; i++ {
		nodes = append(nodes, addAppNode(t, c, fmt.Sprintf("node%d", i), "-partitions", "6", "-replication-factor", "1", "-replace-delay", "0s"))
	}
	startAppNodes(t, nodes)
	waitSettled(t, nodes, 1)
	victim := nodes[2]
	pt, err := nodes[0].Partitions()
	if err != nil {
		t.Fatal(err)
	}
	lost := 0
	for _, p := range pt.Partitions {
		if p.Primary == victim.ID {
			lost++
		}
	}
	if lost == 0 {
		t.Fatalf("%s holds no partition: %+v", victim.ID, pt.Partitions)
	}
	victim.killNode()
	survivors := nodes[:2]
	eventually(t, 60*time.Second, "every partition held again by a survivor, every webhook acknowledged", func() error {
		pt, err := survivors[0].Partitions()
		if err != nil {
			return err
		}
		for _, p := range pt.Partitions {
			if p.Primary == "" || p.Primary == victim.ID || len(p.Migrations) != 0 {
				return fmt.Errorf("partition %d: primary %q migrations %d", p.ID, p.Primary, len(p.Migrations))
			}
		}
		return localcluster.AllDelivered(agents(plainNodes(survivors)))
	})
	client := &http.Client{Timeout: 10 * time.Second}
	for i := 0; i < 30; i++ {
		key := "after-loss-" + strconv.Itoa(i)
		if err := putKey(client, survivors[i%2].app.Addr(), key, key); err != nil {
			t.Fatalf("write after the new primaries: %v", err)
		}
	}
}
