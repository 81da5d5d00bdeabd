package agent

import (
	"crypto/subtle"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// The API binds loopback and needs no token by default, so on one host the
// browser is the attacker to keep out: any web page the host's user opens
// can send requests to 127.0.0.1. Three checks make the mutating calls
// (and the keyring listing) unreachable from a page, without touching
// non-browser clients (the CLI, the app, curl):
//
//   - Content-Type must be application/json. A page can send a cross-site
//     POST without asking the server first only as text/plain, a form or
//     multipart; application/json makes the browser ask (a CORS preflight),
//     and the agent never says yes.
//   - An Origin header, which browsers add to such requests, must be the
//     agent's own origin (the /ui page is served from it).
//   - The Host header must be an IP address, localhost, the host of
//     -http-addr or this machine's host name. DNS rebinding points a name
//     the attacker owns at 127.0.0.1, so that the browser thinks the agent
//     is the attacker's own site: the request then carries the attacker's
//     name as its Host, which is refused.
//
// Read-only endpoints stay open: /metrics is scraped by host name, and
// they change nothing.

// guardMutation wraps an endpoint that changes something (or, for the
// keyring listing, shows secrets' fingerprints): the local-browser checks
// first, then the API token when one is set, then, for anything but a GET,
// the JSON content type. Every such endpoint goes through it.
func (a *Agent) guardMutation(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !a.hostAllowed(r.Host) {
			writeError(w, http.StatusForbidden, "Host "+quote(r.Host)+" is not this agent's address: use an IP address, localhost or the host of -http-addr (other names are refused against DNS rebinding)")
			return
		}
		if origin := r.Header.Get("Origin"); origin != "" && !sameOrigin(origin, r.Host) {
			writeError(w, http.StatusForbidden, "cross-origin request from "+quote(origin)+" refused: the agent's API does not take calls from other sites' pages")
			return
		}
		if !a.tokenValid(r) {
			writeError(w, http.StatusUnauthorized, "missing or wrong API token (Authorization: Bearer <token>)")
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
				writeError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json (got "+quote(r.Header.Get("Content-Type"))+")")
				return
			}
		}
		next(w, r)
	}
}

// tokenValid reports whether r carries the API token, when one is set. The
// comparison takes constant time.
func (a *Agent) tokenValid(r *http.Request) bool {
	if a.apiToken == "" {
		return true
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(a.apiToken)) == 1
}

// hostAllowed reports whether a Host header names this agent: an IP
// address, localhost, the host part of -http-addr, or this machine's host
// name (and its first label).
func (a *Agent) hostAllowed(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "" {
		return false
	}
	if net.ParseIP(host) != nil || host == "localhost" {
		return true
	}
	for _, name := range a.ownHostNames() {
		if host == name {
			return true
		}
	}
	return false
}

// ownHostNames are the names this agent answers to besides IPs and
// localhost.
func (a *Agent) ownHostNames() []string {
	var names []string
	if h, _, err := net.SplitHostPort(a.cfg.HTTPAddr); err == nil && h != "" {
		names = append(names, strings.ToLower(h))
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		h = strings.ToLower(h)
		short, _, _ := strings.Cut(h, ".")
		names = append(names, h, short)
	}
	return names
}

// sameOrigin reports whether an Origin header is the origin of the page
// that host serves: http(s)://host, port included.
func sameOrigin(origin, host string) bool {
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return false // including "null", a sandboxed or file page
	}
	return strings.EqualFold(u.Host, host)
}

// quote shows a header value in an error, bounded.
func quote(s string) string {
	if len(s) > 100 {
		s = s[:100] + "..."
	}
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
}
