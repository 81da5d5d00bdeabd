package agent

import (
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/steward-dev/steward/failover"
)

// holdersOfResource counts the copies of resource's partitions per node,
// as the agent's table shows them.
func holdersOfResource(t *testing.T, a *Agent, resource string) (map[string]int, error) {
	var pt PartitionsView
	if code, err := get(t, a, "/v1/partitions?resource="+resource, &pt); err != nil || code != http.StatusOK {
		return nil, fmt.Errorf("GET /v1/partitions?resource=%s: %d %v", resource, code, err)
	}
	out := map[string]int{}
	for _, p := range pt.Partitions {
		if p.Primary != "" {
			out[p.Primary]++
		}
		for _, r := range p.Replicas {
			out[r]++
		}
	}
	return out, nil
}

func TestAResourceWithANodeSelectorIsPlacedOnlyOnTaggedAgents(t *testing.T) {
	dir := t.TempDir()
	var agents []*Agent
	for i, id := range []string{"p1", "p2", "p3"} {
		cfg := testConfig(t, id, filepath.Join(dir, id))
		cfg.BootstrapExpect = 3
		cfg.ReplicationFactor = 1
		cfg.Partitions = 4
		if id != "p3" {
			cfg.Tags = "disk=ssd,rack=r" + id[1:]
		}
		if i > 0 {
			cfg.Join = []string{agents[0].GossipAddr()}
		}
		agents = append(agents, startAgent(t, cfg))
	}
	a := agents[0]
	url := "http://" + a.HTTPAddr()
	jsonBody := map[string]string{"Content-Type": "application/json"}

	waitFor(t, 30*time.Second, "the three agents registered with the tags of p1 and p2", func() error {
		var ms struct{ Members []MemberView }
		if code, err := get(t, a, "/v1/members", &ms); err != nil || code != http.StatusOK {
			return fmt.Errorf("members: %d %v", code, err)
		}
		tags := map[string]string{}
		for _, m := range ms.Members {
			tags[m.ID] = failover.FormatTags(m.Tags)
		}
		if len(ms.Members) != 3 || tags["p1"] != "disk=ssd,rack=r1" || tags["p2"] != "disk=ssd,rack=r2" || tags["p3"] != "" {
			return fmt.Errorf("members' tags %v", tags)
		}
		return nil
	})

	if code, msg := request(t, "POST", url+"/v1/resources", jsonBody, `{"name":"hot","partitions":6,"replication_factor":3,"nodes":"disk=ssd"}`); code != http.StatusCreated {
		t.Fatalf("create hot: %d %s", code, msg)
	}
	// Two nodes match, RF 3: two copies each, on p1 and p2 only, and the
	// view says all six are under-replicated.
	waitFor(t, 20*time.Second, "hot on p1 and p2 only, two copies each", func() error {
		h, err := holdersOfResource(t, a, "hot")
		if err != nil {
			return err
		}
		if h["p1"] != 6 || h["p2"] != 6 || h["p3"] != 0 {
			return fmt.Errorf("hot's copies per node %v", h)
		}
		if r := resourcesOf(t, a)["hot"]; r.UnderReplicated != 6 || r.Nodes != "disk=ssd" || r.Zones != failover.ZonesSpread {
			return fmt.Errorf("view %+v", r)
		}
		return nil
	})

	// Bad placements are refused with a reason and change nothing.
	for _, c := range []struct{ method, path, body string }{
		{"PATCH", "/v1/resources/hot", `{"zones":"everywhere"}`},
		{"PATCH", "/v1/resources/hot", `{"nodes":"disk"}`},
		{"PATCH", "/v1/resources/hot", `{"nodes":"a=1,a=2"}`},
		{"PATCH", "/v1/resources/hot", `{"zones":"none","nodes":"bad key=1"}`},
		{"POST", "/v1/resources", `{"name":"x","partitions":1,"replication_factor":1,"zones":"some"}`},
		{"POST", "/v1/resources", `{"name":"x","partitions":1,"replication_factor":1,"nodes":"=1"}`},
	} {
		if code, msg := request(t, c.method, url+c.path, jsonBody, c.body); code != http.StatusBadRequest || msg == "" {
			t.Errorf("%s %s %s: %d %q, want 400 with a reason", c.method, c.path, c.body, code, msg)
		}
	}
	if rs := resourcesOf(t, a); len(rs) != 2 || rs["hot"].Nodes != "disk=ssd" || rs["hot"].Zones != failover.ZonesSpread {
		t.Fatalf("refused requests changed the resources: %+v", rs)
	}

	// The selector narrowed to rack r1, and zones ignored: hot leaves p2,
	// add before remove, and stays one copy each on p1.
	if code, msg := request(t, "PATCH", url+"/v1/resources/hot", jsonBody, `{"nodes":"rack=r1,disk=ssd","zones":"none"}`); code != http.StatusOK {
		t.Fatalf("set hot's placement: %d %s", code, msg)
	}
	waitFor(t, 20*time.Second, "hot on p1 only", func() error {
		h, err := holdersOfResource(t, a, "hot")
		if err != nil {
			return err
		}
		if h["p1"] != 6 || h["p2"] != 0 || h["p3"] != 0 {
			return fmt.Errorf("hot's copies per node %v", h)
		}
		return nil
	})
	if r := resourcesOf(t, a)["hot"]; r.Nodes != "disk=ssd,rack=r1" || r.Zones != failover.ZonesNone {
		t.Fatalf("view after the change %+v", r)
	}
}
