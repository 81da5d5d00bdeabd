package localcluster

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"

	"github.com/steward-dev/steward/hooks"
)

// Ack is one webhook the app answered: a 2xx status is an acknowledgement;
// anything else (502 for no answer) a refusal that the agent retries with
// backoff.
type Ack struct {
	At        time.Time
	Type      string
	Partition int
	Epoch     uint64
	Status    int
}

// SigningProxy sits between an agent and its app, on 127.0.0.1 (reachable
// from every placement): it verifies the signature of every webhook, counts
// the good and bad ones by type, forwards the good ones to the app (or
// answers 500 while Failing is set) and records when the app acknowledged
// each event.
type SigningProxy struct {
	srv      *httptest.Server
	target   string
	secret   []byte
	upstream *http.Client

	// Failing makes the proxy answer 500 without forwarding (the app
	// "refuses" every event) while set.
	Failing atomic.Bool
	// Bad counts webhooks with a bad signature (answered 401), Good those
	// with a good one, Refused those answered 500 while Failing.
	Bad, Good, Refused atomic.Int64

	mu    sync.Mutex
	types map[string]int // verified events by type
	acks  []Ack
	// copyOrders are the migrations the app was told to copy (assigns with
	// a source), by migration ID: a redelivery counts once.
	copyOrders map[string]bool
}

// NewSigningProxy starts a proxy to the webhook endpoint at target that
// checks signatures with secret (whsec_...). Close stops it.
func NewSigningProxy(secret, target string, upstreamTimeout time.Duration) (*SigningProxy, error) {
	key, err := hooks.ParseSecret(secret)
	if err != nil {
		return nil, err
	}
	p := &SigningProxy{target: target, secret: key, upstream: &http.Client{Timeout: upstreamTimeout}, types: map[string]int{}, copyOrders: map[string]bool{}}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	return p, nil
}

// URL is where the agent sends its webhooks (its -webhook-url).
func (p *SigningProxy) URL() string { return p.srv.URL + "/steward/events" }

// Close stops the proxy.
func (p *SigningProxy) Close() { p.srv.Close() }

func (p *SigningProxy) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if err := hooks.Verify(p.secret, r.Header, body, time.Now(), time.Minute); err != nil {
		p.Bad.Add(1)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	p.Good.Add(1)
	var ev hooks.Event
	decoded := json.Unmarshal(body, &ev) == nil
	if decoded {
		p.mu.Lock()
		p.types[ev.Type]++
		if ev.Source != nil {
			p.copyOrders[fmt.Sprintf("%d/%s", ev.Partition, ev.MigrationID)] = true
		}
		p.mu.Unlock()
	}
	if p.Failing.Load() {
		p.Refused.Add(1)
		http.Error(w, "injected failure", http.StatusInternalServerError)
		return
	}
	req, _ := http.NewRequestWithContext(r.Context(), r.Method, p.target, bytes.NewReader(body))
	req.Header = r.Header.Clone()
	resp, err := p.upstream.Do(req)
	status := http.StatusBadGateway
	var out []byte
	if err == nil {
		out, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		status = resp.StatusCode
	}
	if decoded {
		p.mu.Lock()
		p.acks = append(p.acks, Ack{At: time.Now(), Type: ev.Type, Partition: ev.Partition, Epoch: ev.Epoch, Status: status})
		p.mu.Unlock()
	}
	if err != nil {
		http.Error(w, err.Error(), status)
		return
	}
	// The app's headers go back as they came: an acknowledgement may be in
	// one (Steward-Split for partition.split).
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(status)
	w.Write(out)
}

// Seen returns how many verified events of type typ went through.
func (p *SigningProxy) Seen(typ string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.types[typ]
}

// CopyOrders returns how many copies the app was told to make (assigns
// with a source, each migration once).
func (p *SigningProxy) CopyOrders() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.copyOrders)
}

// FirstAck returns the time of the first acknowledged event of typ for
// partition at an epoch above minEpoch, after since.
func (p *SigningProxy) FirstAck(typ string, partition int, minEpoch uint64, since time.Time) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range p.acks {
		if a.Status/100 == 2 && a.Type == typ && a.Partition == partition && a.Epoch > minEpoch && a.At.After(since) {
			return a.At, true
		}
	}
	return time.Time{}, false
}

// Refusals counts the answers other than 2xx from the app to events of typ
// after since (Failing's refusals are not the app's and not counted).
func (p *SigningProxy) Refusals(typ string, since time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, a := range p.acks {
		if a.Status/100 != 2 && a.Type == typ && a.At.After(since) {
			n++
		}
	}
	return n
}
