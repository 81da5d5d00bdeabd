package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// IndexHeader carries the state index of an answer of a watchable view
// (the agent's X-Steward-Index).
const IndexHeader = "X-Steward-Index"

// maxAnswerBytes bounds what the client reads of one answer.
const maxAnswerBytes = 64 << 20

// Config says which agents to talk to and how.
type Config struct {
	// Addresses are agents' HTTP API addresses, host:port or a URL
	// (http://, https://). The client talks to one at a time and moves on
	// to the next when it cannot reach it; one is enough.
	Addresses []string
	// Token is the agent's API token (-api-token), sent as a bearer token;
	// empty when the agents need none.
	Token string
	// HTTPClient makes the requests (TLS settings go here). Its Timeout
	// must be zero or longer than the waits of blocking queries; the
	// client bounds each plain request with RequestTimeout instead.
	HTTPClient *http.Client
	// RequestTimeout bounds a request that does not block (a blocking one
	// gets its wait on top).
	RequestTimeout time.Duration
}

// DefaultConfig talks to the agent on this host, at the agent's default
// -http-addr.
func DefaultConfig() Config {
	return Config{
		Addresses:      []string{"127.0.0.1:7948"},
		HTTPClient:     http.DefaultClient,
		RequestTimeout: 10 * time.Second,
	}
}

// Client calls the agents' HTTP API. It is safe for concurrent use.
type Client struct {
	cfg   Config
	bases []string

	mu sync.Mutex
	// current is the index in bases of the agent that answered last.
	current int
}

// New checks cfg and returns a client.
func New(cfg Config) (*Client, error) {
	if len(cfg.Addresses) == 0 {
		return nil, errors.New("client: no agent address given")
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultConfig().RequestTimeout
	}
	c := &Client{cfg: cfg}
	for _, a := range cfg.Addresses {
		base, err := baseURL(a)
		if err != nil {
			return nil, err
		}
		c.bases = append(c.bases, base)
	}
	return c, nil
}

// baseURL turns host:port or a URL into a base URL without a trailing
// slash.
func baseURL(addr string) (string, error) {
	raw := strings.TrimSpace(addr)
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("client: agent address %q: want host:port or an http(s) URL", addr)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// Error is an agent's refusal: its status code and message.
type Error struct {
	// StatusCode is the HTTP status of the answer.
	StatusCode int
	// Message is the agent's {"error": ...}, or the status text.
	Message string
	// Agent is the base URL of the agent that answered.
	Agent string
}

func (e *Error) Error() string {
	return fmt.Sprintf("agent %s answered %d %s: %s", e.Agent, e.StatusCode, http.StatusText(e.StatusCode), e.Message)
}

// IsUnavailable reports whether err is an agent's 503: it cannot answer
// now (not caught up, out of contact with the leader, no quorum, leaving),
// and another agent may.
func IsUnavailable(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.StatusCode == http.StatusServiceUnavailable
}

// Meta describes an answer.
type Meta struct {
	// Index is the answer's state index (X-Steward-Index); 0 for answers
	// that carry none.
	Index uint64
	// Agent is the base URL of the agent that answered.
	Agent string
}

// QueryOptions make a read a blocking query.
type QueryOptions struct {
	// WaitIndex, when not 0, makes the agent hold the answer until its
	// state index is above it (or Wait passes): give the Meta.Index of the
	// previous answer.
	WaitIndex uint64
	// Wait bounds the hold (the agent's default and maximum is 5m).
	Wait time.Duration
	// Stale asks for the table even from an agent out of contact with
	// the leader (the answer then says Stale); without it such an agent
	// answers 503.
	Stale bool
}

func (q QueryOptions) values() url.Values {
	v := url.Values{}
	if q.WaitIndex > 0 {
		v.Set("index", strconv.FormatUint(q.WaitIndex, 10))
		if q.Wait > 0 {
			v.Set("wait", q.Wait.String())
		}
	}
	if q.Stale {
		v.Set("stale", "true")
	}
	return v
}

// Do sends one request and decodes a 2xx JSON answer into out (when not
// nil); raw is the answer's body. A GET tries the agents in turn,
// starting with the one that answered last, while they cannot be reached;
// an agent's answer, even an error, ends the tries (a 503 too: which agent
// to ask instead is the caller's decision). Anything else goes to that
// one agent only, since a request that failed in flight may have been
// carried out. body is sent as JSON when not nil. Do is what the typed calls use; it is exported for the calls that
// have no typed form.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) (raw []byte, meta Meta, err error) {
	return c.do(ctx, method, path, body, out, c.cfg.RequestTimeout)
}

func (c *Client) do(ctx context.Context, method, path string, body, out any, timeout time.Duration) ([]byte, Meta, error) {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return nil, Meta{}, fmt.Errorf("client: encode %s %s: %w", method, path, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var errs []error
	first, tries := c.agentIndex(), len(c.bases)
	if method != http.MethodGet {
		tries = 1
	}
	for i := range tries {
		at := (first + i) % len(c.bases)
		raw, meta, err := c.doAt(ctx, c.bases[at], method, path, payload, out)
		var refusal *Error
		if err == nil || errors.As(err, &refusal) || ctx.Err() != nil {
			if err == nil || refusal != nil {
				c.setAgentIndex(at)
			}
			return raw, meta, err
		}
		errs = append(errs, err)
	}
	return nil, Meta{}, fmt.Errorf("client: no agent could be reached: %w", errors.Join(errs...))
}

func (c *Client) agentIndex() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.current
}

func (c *Client) setAgentIndex(i int) {
	c.mu.Lock()
	c.current = i
	c.mu.Unlock()
}

// newRequest builds a request to base with the token and, for a body, the
// JSON content type the agent's mutating endpoints require.
func (c *Client) newRequest(ctx context.Context, base, method, path string, payload []byte) (*http.Request, error) {
	var reader io.Reader
	if payload != nil {
		reader = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, reader)
	if err != nil {
		return nil, fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	}
	return req, nil
}

func (c *Client) doAt(ctx context.Context, base, method, path string, payload []byte, out any) ([]byte, Meta, error) {
	req, err := c.newRequest(ctx, base, method, path, payload)
	if err != nil {
		return nil, Meta{}, err
	}
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, Meta{}, fmt.Errorf("client: %s: %w", base, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return nil, Meta{}, fmt.Errorf("client: %s %s%s: reading the answer: %w", method, base, path, err)
	}
	meta := Meta{Agent: base, Index: parseIndex(resp.Header.Get(IndexHeader))}
	if resp.StatusCode/100 != 2 {
		return raw, meta, refusal(base, resp.StatusCode, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return raw, meta, fmt.Errorf("client: %s %s%s: decoding the answer: %w", method, base, path, err)
		}
	}
	return raw, meta, nil
}

// refusal turns an error answer into an *Error.
func refusal(base string, code int, raw []byte) *Error {
	var body struct {
		Error string `json:"error"`
	}
	msg := http.StatusText(code)
	if json.Unmarshal(raw, &body) == nil && body.Error != "" {
		msg = body.Error
	}
	return &Error{StatusCode: code, Message: msg, Agent: base}
}

func parseIndex(h string) uint64 {
	n, _ := strconv.ParseUint(h, 10, 64)
	return n
}

// query is a GET of a watchable view, blocking when q says so.
func (c *Client) query(ctx context.Context, path string, q QueryOptions, out any) (Meta, error) {
	if v := q.values().Encode(); v != "" {
		path += "?" + v
	}
	timeout := c.cfg.RequestTimeout
	if q.WaitIndex > 0 {
		wait := q.Wait
		if wait <= 0 {
			wait = 5 * time.Minute
		}
		// The agent adds up to wait/16 of jitter.
		timeout += wait + wait/16
	}
	_, meta, err := c.do(ctx, http.MethodGet, path, nil, out, timeout)
	return meta, err
}

// Status is GET /v1/status of the agent the client talks to.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	_, _, err := c.Do(ctx, http.MethodGet, "/v1/status", nil, &st)
	return st, err
}

// Members is GET /v1/members, blocking when q has a WaitIndex.
func (c *Client) Members(ctx context.Context, q QueryOptions) ([]Member, Meta, error) {
	var body struct {
		Members []Member `json:"members"`
	}
	meta, err := c.query(ctx, "/v1/members", q, &body)
	return body.Members, meta, err
}

// Partitions is GET /v1/partitions, blocking when q has a WaitIndex.
func (c *Client) Partitions(ctx context.Context, q QueryOptions) (Table, Meta, error) {
	var t Table
	meta, err := c.query(ctx, "/v1/partitions", q, &t)
	return t, meta, err
}

// Resources is GET /v1/resources, blocking when q has a WaitIndex.
func (c *Client) Resources(ctx context.Context, q QueryOptions) ([]ResourceInfo, Meta, error) {
	var body struct {
		Resources []ResourceInfo `json:"resources"`
	}
	meta, err := c.query(ctx, "/v1/resources", q, &body)
	return body.Resources, meta, err
}

// Leave asks the agent the client talks to to leave the cluster gracefully
// (POST /v1/leave); force leaves even when copies would be lost. The agent
// answers at once; LeaveProgress follows the leave.
func (c *Client) Leave(ctx context.Context, force bool) (LeaveProgress, error) {
	path := "/v1/leave"
	if force {
		path += "?force=true"
	}
	var p LeaveProgress
	_, _, err := c.Do(ctx, http.MethodPost, path, map[string]bool{}, &p)
	return p, err
}

// LeaveProgress is GET /v1/leave: how far this agent's leave has got.
func (c *Client) LeaveProgress(ctx context.Context) (LeaveProgress, error) {
	var p LeaveProgress
	_, _, err := c.Do(ctx, http.MethodGet, "/v1/leave", nil, &p)
	return p, err
}

// SetMaintenance switches the cluster-wide maintenance freeze of
// automatic removals (POST /v1/maintenance).
func (c *Client) SetMaintenance(ctx context.Context, enabled bool) error {
	_, _, err := c.Do(ctx, http.MethodPost, "/v1/maintenance", map[string]bool{"enabled": enabled}, nil)
	return err
}
