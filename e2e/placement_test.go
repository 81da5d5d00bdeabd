package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// resourceHolders counts the copies of resource's partitions per node, and
// reports an error while any of them is in flight.
func resourceHolders(n *node, resource string) (map[string]int, error) {
	pt, err := n.Partitions()
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, p := range pt.Partitions {
		if p.Resource != resource {
			continue
		}
		if len(p.Migrations) > 0 {
			return nil, fmt.Errorf("partition %d of %s still moving", p.ID, resource)
		}
		for _, h := range append([]string{p.Primary}, p.Replicas...) {
			out[h]++
		}
	}
	return out, nil
}

// TestAResourcePinnedByASelectorStaysOnItsTaggedNodes: three agents, two
// started with -tags disk=ssd; a resource with the selector disk=ssd and
// RF 3 lives on those two only (two copies of each partition, reported
// under-replicated, none on the untagged agent); the selector cleared, its
// copies spread to the third agent too.
func TestAResourcePinnedByASelectorStaysOnItsTaggedNodes(t *testing.T) {
	c := newCluster(t)
	var nodes []*node
	for i := 1; i <= 3; i++ {
		extra := []string{"-partitions", "6", "-replication-factor", "1"}
		if i < 3 {
			extra = append(extra, "-tags", "disk=ssd")
		}
		nodes = append(nodes, c.add(fmt.Sprintf("node%d", i), extra...))
	}
	for _, nd := range nodes {
		nd.start("-bootstrap-expect", "3", "-join", nodes[0].GossipAddr())
	}
	waitSameTable(t, nodes, 60*time.Second)
	first := nodes[0]

	eventually(t, 30*time.Second, "node1 and node2 recorded with their tags", func() error {
		var members struct {
			Members []struct {
				ID   string            `json:"id"`
				Tags map[string]string `json:"tags"`
			} `json:"members"`
		}
		if err := first.GetJSON("/v1/members", &members); err != nil {
			return err
		}
		tagged := 0
		for _, m := range members.Members {
			if m.Tags["disk"] == "ssd" {
				tagged++
			}
		}
		if tagged != 2 {
			return fmt.Errorf("%d members tagged disk=ssd", tagged)
		}
		return nil
	})
	if err := first.PostJSON("/v1/resources", "", map[string]any{"name": "hot", "partitions": 4, "replication_factor": 3, "nodes": "disk=ssd"}, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "hot on node1 and node2 only", func() error {
		h, err := resourceHolders(first, "hot")
		if err != nil {
			return err
		}
		if h["node1"] != 4 || h["node2"] != 4 || h["node3"] != 0 {
			return fmt.Errorf("hot's copies per node: %v", h)
		}
		return nil
	})
	var view struct {
		Resources []struct {
			Name            string `json:"name"`
			UnderReplicated int    `json:"under_replicated"`
			Nodes           string `json:"nodes"`
		} `json:"resources"`
	}
	if err := first.GetJSON("/v1/resources", &view); err != nil {
		t.Fatal(err)
	}
	for _, r := range view.Resources {
		if r.Name == "hot" && (r.UnderReplicated != 4 || r.Nodes != "disk=ssd") {
			t.Fatalf("hot in /v1/resources: %+v, want 4 under-replicated partitions and its selector", r)
		}
	}

	if err := first.SendJSON(http.MethodPatch, "/v1/resources/hot", "", map[string]string{"nodes": ""}, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "hot's third copies on node3", func() error {
		h, err := resourceHolders(first, "hot")
		if err != nil {
			return err
		}
		if h["node1"] != 4 || h["node2"] != 4 || h["node3"] != 4 {
			return fmt.Errorf("hot's copies per node: %v", h)
		}
		return nil
	})
}
