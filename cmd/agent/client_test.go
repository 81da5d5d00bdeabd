package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/steward-dev/steward/agent"
	"github.com/steward-dev/steward/failover"
)

// The client sub-commands against a real agent of one node: they show
// what the API says, and a refused call is an error carrying the agent's
// reason.
func TestClientCommandsTalkToAnAgent(t *testing.T) {
	a := startSoloAgent(t, nil)
	addr := []string{"-http-addr", a.HTTPAddr()}
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := runClient(args, &out)
		return out.String(), err
	}

	if out, err := run(append([]string{"maintenance", "on"}, addr...)...); err != nil || !strings.Contains(out, "frozen") {
		t.Fatalf("agent maintenance on: %v %q", err, out)
	}
	out, err := run(append([]string{"status"}, addr...)...)
	if err != nil || !strings.Contains(out, "node_id") || !hasLine(out, "maintenance", "true") || !hasLine(out, "partitions", "4") {
		t.Fatalf("agent status: %v\n%s", err, out)
	}
	if out, err := run(append([]string{"members"}, addr...)...); err != nil || !strings.Contains(out, "solo") || !strings.Contains(out, "alive") {
		t.Fatalf("agent members: %v\n%s", err, out)
	}
	if out, err := run(append([]string{"partitions"}, addr...)...); err != nil || !strings.Contains(out, "4 partitions, replication factor 3") {
		t.Fatalf("agent partitions: %v\n%s", err, out)
	}
	if out, err := run(append([]string{"status", "-json"}, addr...)...); err != nil || json.Unmarshal([]byte(out), new(agent.Status)) != nil {
		t.Fatalf("agent status -json is not the API's JSON: %v %q", err, out)
	}
	// The only node holding data may not leave: the agent's reason comes
	// back, and nothing happens.
	if _, err := run(append([]string{"leave"}, addr...)...); err == nil || !strings.Contains(err.Error(), "last node holding data") {
		t.Fatalf("agent leave of the last node: %v, want the agent's refusal", err)
	}
	if a.LeaveProgress().Phase != agent.LeaveNone {
		t.Fatalf("a refused leave started: %+v", a.LeaveProgress())
	}
}

// runClient runs a client sub-command and returns its error rather than
// an exit status.
func runClient(args []string, stdout io.Writer) error {
	switch args[0] {
	case "maintenance":
		return cmdMaintenance(args[1:], stdout, io.Discard)
	case "status":
		return cmdStatus(args[1:], stdout, io.Discard)
	case "members":
		return cmdMembers(args[1:], stdout, io.Discard)
	case "partitions":
		return cmdPartitions(args[1:], stdout, io.Discard)
	case "leave":
		return cmdLeave(args[1:], stdout, io.Discard)
	}
	panic("not a client command: " + args[0])
}

// hasLine reports whether out has a line "key <spaces> value".
func hasLine(out, key, value string) bool {
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == key && f[1] == value {
			return true
		}
	}
	return false
}

// Partitions whose last copy was lost are shown as such by agent status
// and agent partitions.
func TestLostDataIsShownByStatusAndPartitions(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/status":
			json.NewEncoder(w).Encode(agent.Status{NodeID: "n1", DataLost: []int{2}})
		case "/v1/partitions":
			json.NewEncoder(w).Encode(agent.PartitionsView{
				Settings: failover.Settings{Partitions: 3, ReplicationFactor: 1},
				Partitions: []failover.Partition{
					{ID: 0, Primary: "n1"}, {ID: 1, Primary: "n1"}, {ID: 2, DataLost: true},
				},
			})
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	var out bytes.Buffer
	if err := cmdStatus([]string{"-http-addr", addr}, &out, io.Discard); err != nil || !strings.Contains(out.String(), "data_lost") || !strings.Contains(out.String(), "[2]") {
		t.Fatalf("agent status does not say the data is lost (%v):\n%s", err, out.String())
	}
	out.Reset()
	if err := cmdPartitions([]string{"-http-addr", addr}, &out, io.Discard); err != nil || strings.Count(out.String(), "DATA LOST") != 1 {
		t.Fatalf("agent partitions does not mark the lost partition once (%v):\n%s", err, out.String())
	}
}
