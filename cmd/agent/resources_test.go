package main

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/steward-dev/steward/agent"
)

// agent resource create -zones -nodes, set-zones, set-nodes and list
// against a real agent of one node tagged disk=ssd: the placement shows in
// the list, and a bad value is a usage error or the agent's 400, changing
// nothing.
func TestResourcePlacementCommandsTalkToAnAgent(t *testing.T) {
	a := startSoloAgent(t, func(cfg *agent.Config) {
		cfg.ReplicationFactor = 1
		cfg.Tags = "disk=ssd"
	})
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := cmdResource(append(args, "-http-addr", a.HTTPAddr()), &out, io.Discard)
		return out.String(), err
	}
	if out, err := run("create", "hot", "-partitions", "2", "-replication-factor", "1", "-zones", "strict", "-nodes", "disk=ssd"); err != nil || !strings.Contains(out, "zones strict, nodes disk=ssd") {
		t.Fatalf("resource create: %v %q", err, out)
	}
	if out, err := run("set-nodes", "hot", "rack=r1, disk=ssd"); err != nil || !strings.Contains(out, "nodes disk=ssd,rack=r1") {
		t.Fatalf("resource set-nodes: %v %q", err, out)
	}
	if out, err := run("set-zones", "hot", "none"); err != nil || !strings.Contains(out, "zones none, nodes disk=ssd,rack=r1") {
		t.Fatalf("resource set-zones: %v %q", err, out)
	}

	var ue *usageError
	for _, args := range [][]string{
		{"set-zones", "hot", "everywhere"},
		{"set-zones", "hot", ""},
		{"set-nodes", "hot", "disk"},
		{"create", "x", "-partitions", "1", "-replication-factor", "1", "-zones", "some"},
		{"create", "x", "-partitions", "1", "-replication-factor", "1", "-nodes", "a=1,a=2"},
	} {
		if _, err := run(args...); !errors.As(err, &ue) {
			t.Errorf("resource %v: %v, want a usage error", args, err)
		}
	}
	if _, err := run("set-nodes", "nope", "a=b"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("set-nodes of an unknown resource: %v", err)
	}

	out, err := run("list")
	if err != nil {
		t.Fatal(err)
	}
	var hot, def string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "hot":
			hot = strings.Join(f[len(f)-2:], " ")
		case "default":
			def = strings.Join(f[len(f)-2:], " ")
		}
	}
	if hot != "none disk=ssd,rack=r1" || def != "spread all" {
		t.Fatalf("resource list shows hot %q and default %q:\n%s", hot, def, out)
	}

	// agent members shows the tags the selectors match, and the app column.
	var members string
	for deadline := time.Now().Add(10 * time.Second); ; {
		var buf bytes.Buffer
		if err := cmdMembers([]string{"-http-addr", a.HTTPAddr()}, &buf, io.Discard); err != nil {
			t.Fatal(err)
		}
		members = buf.String()
		if strings.Contains(members, "disk=ssd") || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // polling the agent's member list
	}
	if !strings.Contains(members, "TAGS") || !strings.Contains(members, "disk=ssd") || !strings.Contains(members, "healthy") {
		t.Fatalf("agent members does not show solo's tags and app health:\n%s", members)
	}
}
