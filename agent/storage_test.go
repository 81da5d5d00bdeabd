package agent

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/steward-dev/steward/raftctl"
)

// A disk that refuses raft's writes makes the agent say so, not serve a
// table that may be stale as current; once the disk takes writes again the
// agent is ready by itself. (Before, a full disk left the agent ready with
// a table thousands of entries behind.)
func TestAnAgentWhoseDiskRefusesWritesIsNotReadyUntilItTakesThemAgain(t *testing.T) {
	var full atomic.Bool
	cfg := testConfig(t, "solo", t.TempDir())
	cfg.BootstrapExpect = 1
	a, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.raftConfigHook = func(rc *raftctl.Config) {
		rc.StoreFault = func() error {
			if full.Load() {
				return fmt.Errorf("write raft.db: %w", syscall.ENOSPC)
			}
			return nil
		}
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Shutdown() })
	waitFor(t, 20*time.Second, "the agent to be ready", func() error {
		if ok, why := a.readiness(); !ok {
			return errString(why)
		}
		return nil
	})

	full.Store(true)
	// A write the disk cannot take: the API says why it failed, the agent
	// is not ready, and the table is not served as current.
	code, msg := request(t, http.MethodPost, "http://"+a.HTTPAddr()+"/v1/maintenance", map[string]string{"Content-Type": "application/json"}, `{"enabled":true}`)
	if code/100 == 2 {
		t.Fatalf("a write to a full disk succeeded: %d", code)
	}
	waitFor(t, 10*time.Second, "the agent to report the disk", func() error {
		st := a.Status()
		if st.Ready || !strings.Contains(st.NotReady, "raft.db") || !strings.Contains(st.NotReady, "no space left") {
			return fmt.Errorf("ready %v, not_ready %q", st.Ready, st.NotReady)
		}
		return nil
	})
	if code, _ := request(t, http.MethodGet, "http://"+a.HTTPAddr()+"/v1/partitions", nil, ""); code != http.StatusServiceUnavailable {
		t.Fatalf("GET /v1/partitions while the disk refuses writes: %d, want 503 (write answered %d %q)", code, code, msg)
	}

	full.Store(false)
	waitFor(t, 20*time.Second, "the agent to be ready again", func() error {
		if ok, why := a.readiness(); !ok {
			return errString(why)
		}
		return nil
	})
	// The leader stepped down when it could not store its log, and is
	// elected again: writes go through once it is.
	waitFor(t, 20*time.Second, "a write after the disk recovered", func() error {
		if code, msg := request(t, http.MethodPost, "http://"+a.HTTPAddr()+"/v1/maintenance", map[string]string{"Content-Type": "application/json"}, `{"enabled":true}`); code != http.StatusOK {
			return fmt.Errorf("%d %q", code, msg)
		}
		return nil
	})
	if !a.Status().Maintenance {
		t.Fatalf("the write after recovery did not apply")
	}
}
