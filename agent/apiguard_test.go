package agent

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A web page on the agent's host can reach 127.0.0.1 too. Each request
// below is one a page can make (a simple cross-site POST, a fetch from
// another origin, a request after DNS rebinding): each is refused with a
// reason, and the freeze it asked for never happens. The CLI's request,
// with its JSON content type and no Origin, still works.
func TestBrowserShapedRequestsCannotChangeAnything(t *testing.T) {
	cfg := testConfig(t, "solo", t.TempDir())
	cfg.BootstrapExpect = 1
	a := startAgent(t, cfg)
	waitFor(t, 20*time.Second, "the agent to be ready", func() error {
		if ok, why := a.readiness(); !ok {
			return errString(why)
		}
		return nil
	})
	addr := a.HTTPAddr()
	_, port, _ := strings.Cut(addr, ":")

	for _, c := range []struct {
		name    string
		path    string
		headers map[string]string
		want    int
		says    string
	}{
		{"a form-style cross-site POST (text/plain)", "/v1/maintenance", map[string]string{"Content-Type": "text/plain"}, http.StatusUnsupportedMediaType, "application/json"},
		{"no content type at all", "/v1/leave", nil, http.StatusUnsupportedMediaType, "application/json"},
		{"a fetch from another site", "/v1/maintenance", map[string]string{"Content-Type": "application/json", "Origin": "https://evil.example"}, http.StatusForbidden, "cross-origin"},
		{"a sandboxed page (Origin null)", "/v1/maintenance", map[string]string{"Content-Type": "application/json", "Origin": "null"}, http.StatusForbidden, "cross-origin"},
		{"DNS rebinding: the attacker's name as Host", "/v1/maintenance", map[string]string{"Content-Type": "application/json", "Host": "rebind.evil.example:" + port}, http.StatusForbidden, "DNS rebinding"},
		{"DNS rebinding on the keyring listing", "/v1/keyring", map[string]string{"Host": "rebind.evil.example:" + port}, http.StatusForbidden, "DNS rebinding"},
	} {
		t.Run(c.name, func(t *testing.T) {
			method := http.MethodPost
			if c.path == "/v1/keyring" {
				method = http.MethodGet
			}
			code, msg := request(t, method, "http://"+addr+c.path, c.headers, `{"enabled":true}`)
			if code != c.want || !strings.Contains(msg, c.says) {
				t.Fatalf("%d %q, want %d saying %q", code, msg, c.want, c.says)
			}
		})
	}
	if st := a.Status(); st.Maintenance || a.LeaveProgress().Phase != LeaveNone {
		t.Fatalf("a refused request changed something: maintenance %v, leave %v", st.Maintenance, a.LeaveProgress().Phase)
	}

	// What legitimate callers send still works: the agent's own page's
	// origin, localhost, an IP, and the CLI.
	for _, headers := range []map[string]string{
		{"Content-Type": "application/json; charset=utf-8", "Origin": "http://" + addr},
		{"Content-Type": "application/json", "Host": "localhost:" + port},
		{"Content-Type": "application/json", "Host": "[::1]:" + port},
	} {
		if code, msg := request(t, http.MethodPost, "http://"+addr+"/v1/maintenance", headers, `{"enabled":false}`); code != http.StatusOK {
			t.Fatalf("a legitimate request with %v: %d %q", headers, code, msg)
		}
	}
	// The CLI's request: JSON, no Origin, the address as Host.
	if code, msg := request(t, http.MethodPost, "http://"+addr+"/v1/maintenance", map[string]string{"Content-Type": "application/json"}, `{"enabled":true}`); code != http.StatusOK {
		t.Fatalf("the CLI's request: %d %q", code, msg)
	}
	waitFor(t, 5*time.Second, "maintenance on", func() error {
		if !a.Status().Maintenance {
			return errString("still off")
		}
		return nil
	})
	// Read-only endpoints answer whatever the Host: Prometheus scrapes by
	// name.
	if code, _ := request(t, http.MethodGet, "http://"+addr+"/v1/status", map[string]string{"Host": "node1.example:" + port}, ""); code != http.StatusOK {
		t.Fatalf("GET /v1/status by host name: %d", code)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

// request sends one request and returns the status and the error message
// of the answer, if any.
func request(t *testing.T, method, url string, headers map[string]string, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e APIError
	json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e.Error
}
