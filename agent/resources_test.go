package agent

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/steward-dev/steward/failover"
)

func resourcesOf(t *testing.T, a *Agent) map[string]ResourceView {
	t.Helper()
	var v ResourcesView
	if code, err := get(t, a, "/v1/resources", &v); err != nil || code != http.StatusOK {
		t.Fatalf("GET /v1/resources: %d %v", code, err)
	}
	out := map[string]ResourceView{}
	for _, r := range v.Resources {
		out[r.Name] = r
	}
	return out
}

// startReady starts the agent of cfg and waits until it serves.
func startReady(t *testing.T, cfg Config) *Agent {
	t.Helper()
	a := startAgent(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return a
}

func TestAnOperatorCreatesChangesAndDeletesAResourceOverTheAPI(t *testing.T) {
	cfg := testConfig(t, "solo", t.TempDir())
	cfg.BootstrapExpect = 1
	cfg.ReplicationFactor = 1
	cfg.APIToken = "s3cret"
	a := startReady(t, cfg)
	url := "http://" + a.HTTPAddr()
	auth := map[string]string{"Content-Type": "application/json", "Authorization": "Bearer s3cret"}

	if rs := resourcesOf(t, a); len(rs) != 1 || rs["default"].ActivePartitions != 32 || rs["default"].ReplicationFactor != 1 {
		t.Fatalf("a new cluster's resources: %+v, want the default one from the flags", rs)
	}
	if code, msg := request(t, "POST", url+"/v1/resources", auth, `{"name":"orders","partitions":8,"replication_factor":1}`); code != http.StatusCreated {
		t.Fatalf("create orders: %d %s", code, msg)
	}
	if rs := resourcesOf(t, a); rs["orders"].ActivePartitions != 8 || rs["orders"].UnderReplicated != 0 {
		t.Fatalf("after create: %+v", rs["orders"])
	}
	var table PartitionsView
	if code, err := get(t, a, "/v1/partitions?resource=orders", &table); err != nil || code != 200 || len(table.Partitions) != 8 {
		t.Fatalf("GET /v1/partitions?resource=orders: %d %v, %d partitions", code, err, len(table.Partitions))
	}
	if p, ok := failover.PartitionForKey(table.Partitions, "orders", "some-key"); !ok || p.ID < 32 || p.Primary != "solo" {
		t.Fatalf("routing a key of orders: %+v %v", p, ok)
	}

	// Bad input is refused with a reason and changes nothing.
	for _, c := range []struct {
		method, path, body string
		headers            map[string]string
		want               int
	}{
		{"POST", "/v1/resources", `{"name":"x","partitions":1,"replication_factor":1}`, map[string]string{"Content-Type": "application/json"}, http.StatusUnauthorized},
		{"POST", "/v1/resources", `{"name":"orders","partitions":2,"replication_factor":1}`, auth, http.StatusConflict},
		{"POST", "/v1/resources", `{"name":"no spaces","partitions":2,"replication_factor":1}`, auth, http.StatusBadRequest},
		{"POST", "/v1/resources", `{"name":"x","partitions":0,"replication_factor":1}`, auth, http.StatusBadRequest},
		{"POST", "/v1/resources", `{"name":"x","partitions":2,"replication_factor":1,"extra":1}`, auth, http.StatusBadRequest},
		{"PATCH", "/v1/resources/orders", `{"replication_factor":9}`, auth, http.StatusBadRequest},
		{"PATCH", "/v1/resources/orders", `{"target_size_bytes":-1}`, auth, http.StatusBadRequest},
		{"PATCH", "/v1/resources/orders", `{}`, auth, http.StatusBadRequest},
		{"PATCH", "/v1/resources/nope", `{"replication_factor":1}`, auth, http.StatusNotFound},
		{"DELETE", "/v1/resources/default", `{}`, auth, http.StatusBadRequest},
		{"DELETE", "/v1/resources/nope", `{}`, auth, http.StatusNotFound},
		{"GET", "/v1/partitions?resource=nope", ``, nil, http.StatusNotFound},
	} {
		if code, msg := request(t, c.method, url+c.path, c.headers, c.body); code != c.want || msg == "" {
			t.Errorf("%s %s %s: %d %q, want %d with a reason", c.method, c.path, c.body, code, msg, c.want)
		}
	}
	if rs := resourcesOf(t, a); len(rs) != 2 || rs["orders"].ReplicationFactor != 1 {
		t.Fatalf("refused requests changed the resources: %+v", rs)
	}

	// RF up on a one-node cluster: the setting changes, and the copies
	// wait for nodes to hold them (under-replicated, as the view says).
	if code, msg := request(t, "PATCH", url+"/v1/resources/orders", auth, `{"replication_factor":2}`); code != http.StatusOK {
		t.Fatalf("set RF: %d %s", code, msg)
	}
	if r := resourcesOf(t, a)["orders"]; r.ReplicationFactor != 2 || r.UnderReplicated != 8 {
		t.Fatalf("after RF 2 on one node: %+v", r)
	}
	if code, msg := request(t, "PATCH", url+"/v1/resources/default", auth, `{"target_size_bytes":4096}`); code != http.StatusOK {
		t.Fatalf("set the default resource's target size: %d %s", code, msg)
	}
	if r := resourcesOf(t, a)["default"]; r.TargetSize != 4096 || r.ReplicationFactor != 1 {
		t.Fatalf("after the target size change: %+v", r)
	}

	if code, msg := request(t, "DELETE", url+"/v1/resources/orders", auth, `{}`); code != http.StatusOK {
		t.Fatalf("delete: %d %s", code, msg)
	}
	if rs := resourcesOf(t, a); len(rs) != 1 {
		t.Fatalf("after delete: %+v", rs)
	}
	if code, err := get(t, a, "/v1/partitions", &table); err != nil || code != 200 || len(table.Partitions) != 32 {
		t.Fatalf("after delete the table serves %d partitions (%d %v), want the default's 32", len(table.Partitions), code, err)
	}
}

func TestARestartWithBootstrapFlagsThatContradictTheStoredOnesIsRefused(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, "solo", dir)
	cfg.BootstrapExpect = 1
	cfg.ReplicationFactor = 1
	a := startReady(t, cfg)
	if err := a.Shutdown(); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		partitions, rf int
		want           string
	}{
		{64, 1, "-partitions 64 contradicts the cluster's stored settings: its default resource was created with 32 partitions"},
		{32, 3, "-replication-factor 3 contradicts the cluster's stored settings: its default resource was created with replication factor 1"},
	} {
		bad := cfg
		bad.Partitions, bad.ReplicationFactor = c.partitions, c.rf
		b, err := New(bad, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = b.Start()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("restart with -partitions %d -replication-factor %d: %v, want %q", c.partitions, c.rf, err, c.want)
		}
	}
	// The same flags as at bootstrap start it as before, and so does an
	// agent given neither (it takes the cluster's: an agent that joined a
	// cluster of 32 partitions restarts without -partitions).
	for _, flags := range []struct{ partitions, rf int }{{cfg.Partitions, cfg.ReplicationFactor}, {0, 0}} {
		same := cfg
		same.Partitions, same.ReplicationFactor = flags.partitions, flags.rf
		again := startReady(t, same)
		if st := again.Status(); st.Partitions != 32 {
			t.Fatalf("after the restart: %+v", st)
		}
		if err := again.Shutdown(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAManualSplitWithoutAnAppFinishesAtOnce(t *testing.T) {
	cfg := testConfig(t, "solo", t.TempDir())
	cfg.BootstrapExpect = 1
	cfg.ReplicationFactor = 1
	a := startReady(t, cfg)
	url := "http://" + a.HTTPAddr()
	hdr := map[string]string{"Content-Type": "application/json"}
	for _, c := range []struct {
		path, body string
		want       int
	}{
		{"/v1/partitions/5/split", `{"resource":"nope"}`, http.StatusNotFound},
		{"/v1/partitions/99/split", `{"resource":"default"}`, http.StatusNotFound},
		{"/v1/partitions/x/split", `{"resource":"default"}`, http.StatusBadRequest},
		{"/v1/partitions/5/split", `{}`, http.StatusBadRequest},
	} {
		if code, msg := request(t, "POST", url+c.path, hdr, c.body); code != c.want || msg == "" {
			t.Errorf("POST %s %s: %d %q, want %d with a reason", c.path, c.body, code, msg, c.want)
		}
	}
	if code, msg := request(t, "POST", url+"/v1/partitions/5/split", hdr, `{"resource":"default"}`); code != http.StatusAccepted {
		t.Fatalf("split: %d %s", code, msg)
	}
	waitFor(t, 10*time.Second, "the split finished", func() error {
		var table PartitionsView
		if _, err := get(t, a, "/v1/partitions", &table); err != nil {
			return err
		}
		ids := map[int]failover.Partition{}
		for _, p := range table.Partitions {
			ids[p.ID] = p
		}
		if _, parent := ids[5]; parent || len(table.Partitions) != 33 {
			return fmt.Errorf("%d active partitions, parent listed: %v", len(table.Partitions), parent)
		}
		if ids[32].Primary != "solo" || ids[33].Primary != "solo" || ids[32].KeyEnd != ids[33].KeyStart {
			return fmt.Errorf("children %+v %+v", ids[32], ids[33])
		}
		return nil
	})
}
