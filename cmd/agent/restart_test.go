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
)

// restartAPI is an agent API that refuses a restart (another member is
// away), runs a rolling restart to its end, and shows it in its status.
func restartAPI(t *testing.T) string {
	t.Helper()
	rolling := agent.RollingView{Generation: 1, State: "running", Order: []string{"n2", "n1"}, Summary: "rolling restart 1 running: 0 of 2 done, restarting n2"}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.Method + " " + r.URL.Path {
		case "POST /v1/restart":
			w.WriteHeader(http.StatusConflict)
			json.NewEncoder(w).Encode(agent.APIError{Error: "restart refused: n3 already restarting"})
		case "POST /v1/rolling-restart":
			if r.URL.Query().Get("max_unavailable") != "2" {
				t.Errorf("max_unavailable %q, want 2", r.URL.Query().Get("max_unavailable"))
			}
			w.WriteHeader(http.StatusAccepted)
			json.NewEncoder(w).Encode(rolling)
		case "GET /v1/rolling-restart":
			done := rolling
			done.State, done.Summary = "done", "rolling restart 1 done: 2 of 2 done"
			json.NewEncoder(w).Encode(done)
		case "GET /v1/status":
			json.NewEncoder(w).Encode(agent.Status{NodeID: "n1", RollingRestart: &rolling})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// agent restart says why the agent refused; agent rolling-restart passes
// -max-unavailable on and follows the run to its end; agent status shows
// the run in one line.
func TestRestartCommands(t *testing.T) {
	addr := restartAPI(t)
	var out bytes.Buffer
	err := cmdRestart([]string{"-http-addr", addr}, &out, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "n3 already restarting") {
		t.Fatalf("agent restart refused: err = %v, want the agent's reason", err)
	}
	out.Reset()
	if err := cmdRollingRestart([]string{"-http-addr", addr, "-max-unavailable", "2"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "restarting n2") || !strings.Contains(out.String(), "2 of 2 done") {
		t.Fatalf("agent rolling-restart output:\n%s", out.String())
	}
	out.Reset()
	if err := cmdStatus([]string{"-http-addr", addr}, &out, io.Discard); err != nil || !strings.Contains(out.String(), "rolling_restart") || !strings.Contains(out.String(), "0 of 2 done") {
		t.Fatalf("agent status does not show the rolling restart (%v):\n%s", err, out.String())
	}
	if err := cmdRollingRestart([]string{"-http-addr", addr, "-max-unavailable", "0"}, &out, io.Discard); err == nil || !strings.Contains(err.Error(), "-max-unavailable") {
		t.Fatalf("-max-unavailable 0: err = %v, want a usage error naming the flag", err)
	}
}
