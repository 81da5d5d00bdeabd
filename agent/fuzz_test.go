package agent

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzAPIBodies throws arbitrary bodies at every endpoint that reads one:
// the agent answers 2xx or a JSON error, never panics, and stays up.
func FuzzAPIBodies(f *testing.F) {
	cfg := testConfig(&testing.T{}, "fuzz", f.TempDir())
	cfg.BootstrapExpect = 1
	cfg.Partitions = 4
	a, err := New(cfg, nil)
	if err != nil {
		f.Fatal(err)
	}
	if err := a.Start(); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = a.Shutdown() })
	handler := a.routes()
	paths := []string{"/v1/maintenance", "/v1/keyring", "/v1/migrations/m1/complete", "/v1/migrations/m1/fail", "/v1/leave?force=false",
		"/v1/partitions/1/move", "/v1/members/fuzz/replace"}
	f.Add(uint8(0), `{"enabled":false}`)
	f.Add(uint8(1), `{"op":"list","key":"x"}`)
	f.Add(uint8(3), `{"reason":"disk full"}`)
	f.Add(uint8(2), `}{`)
	f.Add(uint8(5), `{"node":"fuzz","primary":true}`)
	f.Add(uint8(5), `{"unpin":true}`)
	f.Add(uint8(6), `{"by":"fuzz"}`)
	f.Fuzz(func(t *testing.T, which uint8, body string) {
		path := paths[int(which)%len(paths)]
		if strings.HasPrefix(path, "/v1/leave") {
			// A leave would end the agent under test: only check that a
			// malformed query is handled, with the safety check refusing.
			path = "/v1/leave?force=" + queryWord(body)
		}
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		if rec.Code/100 == 2 {
			return
		}
		var e APIError
		b, _ := io.ReadAll(rec.Body)
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			t.Fatalf("POST %s answered %d without a JSON error: %q", path, rec.Code, b)
		}
	})
}

// queryWord keeps a fuzzed string usable in a query without ever being "true".
func queryWord(s string) string {
	if s == "true" {
		return "no"
	}
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' {
			return r
		}
		return -1
	}, s)
}
