package agent

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// An app that embeds the agent: New writes and binds nothing, the Handler
// answers 503 until Start, Shutdown may be called twice, and a leave of a
// one-node cluster is refused (its partitions would lose their last copy)
// without stopping the agent.
func TestAnEmbeddedAgentsLifeCycle(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	cfg := testConfig(t, "embedded", dir)
	cfg.BootstrapExpect = 1
	a, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("New touched the data dir: %v", err)
	}
	rec := httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/status", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "not started") {
		t.Fatalf("GET /v1/status before Start: %d %s", rec.Code, rec.Body)
	}

	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := a.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	rec = httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/status", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"node_id": "embedded"`) {
		t.Fatalf("GET /v1/status through Handler after Start: %d %s", rec.Code, rec.Body)
	}

	if err := a.Leave(ctx, false); !errors.Is(err, ErrLeaveRefused) {
		t.Fatalf("leave of the only node holding data: %v, want ErrLeaveRefused", err)
	}
	if st := a.Status(); !st.Ready || st.Members != 1 {
		t.Fatalf("a refused leave changed the agent: %+v", st)
	}

	if err := a.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := a.Shutdown(); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
}

// -api-token-file: the agent reads the token from the file, and mutating
// calls need it.
func TestTheAPITokenCanComeFromAFile(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("tok3n\nrest\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, "solo", t.TempDir())
	cfg.BootstrapExpect = 1
	cfg.APITokenFile = tokenFile
	a := startAgent(t, cfg)
	url := "http://" + a.HTTPAddr() + "/v1/maintenance"
	json := map[string]string{"Content-Type": "application/json"}
	if code, _ := request(t, http.MethodPost, url, json, `{"enabled":true}`); code != http.StatusUnauthorized {
		t.Fatalf("without the token: %d, want 401", code)
	}
	withToken := map[string]string{"Content-Type": "application/json", "Authorization": "Bearer tok3n"}
	waitFor(t, 20*time.Second, "maintenance switched with the file's token", func() error {
		if code, msg := request(t, http.MethodPost, url, withToken, `{"enabled":true}`); code != http.StatusOK {
			return errString(msg)
		}
		return nil
	})

	cfg.APITokenFile = filepath.Join(t.TempDir(), "missing")
	var ce *ConfigError
	if _, err := New(cfg, nil); !errors.As(err, &ce) || !strings.Contains(err.Error(), "-api-token-file") {
		t.Fatalf("New with a missing token file: %v, want a ConfigError naming -api-token-file", err)
	}
}
