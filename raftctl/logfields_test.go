package raftctl

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// lockedBuffer collects log output written from raft's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Three raft nodes log as the agent does (JSON, each line carrying the
// agent's "node"): every field of every line is a string, a number or a
// bool, fields that name a server are strings, and the agent's "node" is
// never replaced by raft's own (raft's *Raft under "node", "leader",
// "follower", its Server structs under "peer").
func TestRaftsLogFieldsAreScalarsAndKeepTheAgentsNode(t *testing.T) {
	logs := map[string]*lockedBuffer{}
	nodes := make([]*Node, 3)
	for i, id := range []string{"n1", "n2", "n3"} {
		cfg := testConfig(id, t.TempDir())
		logs[id] = &lockedBuffer{}
		cfg.Logger = hclog.New(&hclog.LoggerOptions{Level: hclog.Info, JSONFormat: true, Output: logs[id]}).With("node", id).Named("raft")
		nodes[i] = startNode(t, cfg)
	}
	for _, n := range nodes {
		if err := n.Bootstrap(serversOf(nodes...)); err != nil {
			t.Fatal(err)
		}
	}
	waitLeader(t, nodes...)

	sawServerField := false
	for id, buf := range logs {
		sc := bufio.NewScanner(strings.NewReader(buf.String()))
		for sc.Scan() {
			var line map[string]any
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				t.Fatalf("%s: not a JSON line: %s", id, sc.Text())
			}
			if line["node"] != id {
				t.Fatalf("%s: the line's node is %v, want the agent's %q: %s", id, line["node"], id, sc.Text())
			}
			for k, v := range line {
				switch v.(type) {
				case string, float64, bool:
				default:
					t.Fatalf("%s: field %q is %T, not a scalar: %s", id, k, v, sc.Text())
				}
				name := strings.TrimPrefix(k, "raft-")
				if serverFields[name] {
					if _, ok := v.(string); !ok {
						t.Fatalf("%s: server field %q is %T, want a string: %s", id, k, v, sc.Text())
					}
					if k != "node" {
						sawServerField = true
					}
				}
			}
		}
	}
	if !sawServerField {
		t.Fatal("no line named a server (peer, leader, follower...): the test saw nothing to check")
	}
}

// scalar keeps numbers as numbers outside server fields and turns
// structs into strings.
func TestScalarKeepsNumbersAndFlattensStructs(t *testing.T) {
	type server struct{ ID, Address string }
	for _, c := range []struct {
		key  string
		in   any
		want any
	}{
		{"term", uint64(7), uint64(7)},
		{"from", uint64(7), "7"},
		{"peer", server{"n2", "127.0.0.1:1"}, "{n2 127.0.0.1:1}"},
		{"config", []string{"a"}, "[a]"},
		{"ok", true, true},
	} {
		if got := scalar(c.key, c.in); got != c.want {
			t.Errorf("scalar(%q, %#v) = %#v, want %#v", c.key, c.in, got, c.want)
		}
	}
}
