package agent

import (
	"bufio"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"
)

// jsonType names the JSON type of a decoded value.
func jsonType(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "bool"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return "null"
}

// Three agents log JSON lines at debug level while they form a cluster and
// one of them dies and is marked failed: across all their lines, raft's
// and memberlist's included, each field has one JSON type (a typed log
// pipeline can index them), no field is an object, and "node" is always
// the logging agent's node ID.
func TestEveryLogFieldHasOneTypeThroughAFailure(t *testing.T) {
	dir := t.TempDir()
	logs := &syncBuffer{}
	logger := hclog.New(&hclog.LoggerOptions{Level: hclog.Debug, JSONFormat: true, Output: logs})
	var agents []*Agent
	for _, id := range []string{"l1", "l2", "l3"} {
		cfg := testConfig(t, id, filepath.Join(dir, id))
		cfg.BootstrapExpect = 3
		if len(agents) > 0 {
			cfg.Join = []string{agents[0].GossipAddr()}
		}
		a, err := New(cfg, logger)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = a.Shutdown() })
		agents = append(agents, a)
	}
	// Registered, not only seen in gossip: l3 stopped before the cluster
	// bootstrapped would never be marked failed.
	waitFor(t, 30*time.Second, "three registered members seen by l1", func() error {
		var ms struct{ Members []MemberView }
		if _, err := get(t, agents[0], "/v1/members", &ms); err != nil {
			return err
		}
		if n := len(ms.Members); n != 3 {
			return fmt.Errorf("%d members", n)
		}
		for _, m := range ms.Members {
			if !m.Registered {
				return fmt.Errorf("%s not registered yet", m.ID)
			}
		}
		return nil
	})
	if err := agents[2].Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "l3 marked failed", func() error {
		var ms struct{ Members []MemberView }
		if _, err := get(t, agents[0], "/v1/members", &ms); err != nil {
			return err
		}
		for _, m := range ms.Members {
			if m.ID == "l3" && m.Status == "failed" {
				return nil
			}
		}
		return fmt.Errorf("members %+v", ms.Members)
	})

	// The survivors' memberlist may still be probing the dead l3 (its waits
	// grow while probes fail): stop them and let their probes end before
	// the package's leak check runs.
	for _, a := range agents[:2] {
		if err := a.Shutdown(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, "the agents' goroutines to end", func() error {
		return goleak.Find(
			goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
			goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		)
	})

	types := map[string]map[string]string{} // field -> type -> an example line
	lines := 0
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("not a JSON line: %s", sc.Text())
		}
		lines++
		if node, ok := line["node"].(string); !ok || !slices.Contains([]string{"l1", "l2", "l3"}, node) {
			t.Fatalf("node is %#v, want the logging agent's ID: %s", line["node"], sc.Text())
		}
		for k, v := range line {
			typ := jsonType(v)
			if typ == "null" {
				continue
			}
			if typ == "object" {
				t.Fatalf("field %q is an object: %s", k, sc.Text())
			}
			if types[k] == nil {
				types[k] = map[string]string{}
			}
			if _, seen := types[k][typ]; !seen {
				types[k][typ] = sc.Text()
			}
		}
	}
	if lines < 50 {
		t.Fatalf("only %d log lines: the test saw too little to check", lines)
	}
	for k, byType := range types {
		if len(byType) > 1 {
			var b strings.Builder
			for typ, example := range byType {
				fmt.Fprintf(&b, "\n  %s: %s", typ, example)
			}
			t.Errorf("field %q has %d types:%s", k, len(byType), b.String())
		}
	}
}
