package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// errNoTable: the agent has not answered with a partition table yet.
var errNoTable = errors.New("kvapp: no partition table from the agent yet")

// migrationView is one migration of GET /v1/partitions.
type migrationView struct {
	ID     string `json:"id"`
	Target string `json:"target"`
	Source string `json:"source"`
}

// partitionView is one partition of GET /v1/partitions.
type partitionView struct {
	ID         int             `json:"id"`
	Epoch      uint64          `json:"epoch"`
	Primary    string          `json:"primary"`
	Replicas   []string        `json:"replicas"`
	Migrations []migrationView `json:"migrations"`
}

// copies are the nodes other than self a write must reach: the primary,
// the replicas and every migration target in flight.
func (p partitionView) copies(self string) []string {
	var out []string
	seen := map[string]bool{self: true, "": true}
	add := func(n string) {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	add(p.Primary)
	for _, r := range p.Replicas {
		add(r)
	}
	for _, m := range p.Migrations {
		add(m.Target)
	}
	return out
}

// isHolder reports whether node is p's primary or one of its replicas.
func (p partitionView) isHolder(node string) bool {
	return node != "" && (p.Primary == node || contains(p.Replicas, node))
}

// holds reports whether node is a holder or a migration target of p.
func (p partitionView) holds(node string) bool {
	for _, n := range p.copies("") {
		if n == node {
			return true
		}
	}
	return false
}

// memberView is one member of GET /v1/members.
type memberView struct {
	ID      string `json:"id"`
	Status  string `json:"status"`
	AppAddr string `json:"app_addr"`
}

// gone reports whether the member has left the cluster for good as far as
// copies are concerned.
func (m memberView) gone() bool { return m.Status == "failed" || m.Status == "left" }

// clusterView is one consistent read of the agent's table and members.
type clusterView struct {
	partitions int
	parts      map[int]partitionView
	members    map[string]memberView
	fetched    time.Time
}

func (v *clusterView) partition(id int) partitionView { return v.parts[id] }

// appAddr is the data address of node's app, or "".
func (v *clusterView) appAddr(node string) string { return v.members[node].AppAddr }

// agentClient reads the agent's view of the cluster and caches it. The
// cache is refreshed when it is older than maxAge, after every webhook
// (invalidate), and on demand when a peer refuses a request.
type agentClient struct {
	url    string
	client *http.Client
	maxAge time.Duration

	// refreshMu serialises refreshes so that a burst of misses costs one
	// round trip to the agent.
	refreshMu sync.Mutex
	mu        sync.Mutex
	view      *clusterView
	stale     bool
	nodeID    string
}

// setNodeID records this node's ID (learnt from a webhook or the agent).
func (a *agentClient) setNodeID(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.nodeID == "" {
		a.nodeID = id
	}
}

func (a *agentClient) self() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.nodeID
}

// invalidate makes the next get fetch a fresh view.
func (a *agentClient) invalidate() {
	a.mu.Lock()
	a.stale = true
	a.mu.Unlock()
}

// get returns the cached view, fetching a new one when forced, stale or
// older than maxAge.
func (a *agentClient) get(ctx context.Context, force bool) (*clusterView, error) {
	start := time.Now()
	a.mu.Lock()
	v, stale := a.view, a.stale
	a.mu.Unlock()
	if v != nil && !force && !stale && time.Since(v.fetched) < a.maxAge {
		return v, nil
	}
	a.refreshMu.Lock()
	defer a.refreshMu.Unlock()
	a.mu.Lock()
	v = a.view
	a.mu.Unlock()
	if v != nil && !v.fetched.Before(start) {
		return v, nil // someone refreshed while we waited
	}
	fresh, err := a.fetch(ctx)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.view = fresh
	a.stale = false
	a.mu.Unlock()
	return fresh, nil
}

func (a *agentClient) fetch(ctx context.Context) (*clusterView, error) {
	fetched := time.Now()
	if a.self() == "" {
		var st struct {
			NodeID string `json:"node_id"`
		}
		if err := a.getJSON(ctx, "/v1/status", &st); err != nil {
			return nil, err
		}
		if st.NodeID != "" {
			a.setNodeID(st.NodeID)
		}
	}
	var table struct {
		Settings struct {
			Partitions int `json:"partitions"`
		} `json:"settings"`
		Partitions []partitionView `json:"partitions"`
	}
	if err := a.getJSON(ctx, "/v1/partitions", &table); err != nil {
		return nil, err
	}
	if table.Settings.Partitions < 1 {
		return nil, errNoTable
	}
	var ms struct {
		Members []memberView `json:"members"`
	}
	if err := a.getJSON(ctx, "/v1/members", &ms); err != nil {
		return nil, err
	}
	v := &clusterView{partitions: table.Settings.Partitions, parts: map[int]partitionView{},
		members: map[string]memberView{}, fetched: fetched}
	for _, p := range table.Partitions {
		v.parts[p.ID] = p
	}
	for _, m := range ms.Members {
		v.members[m.ID] = m
	}
	return v, nil
}

func (a *agentClient) getJSON(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(a.url, "/")+path, nil)
	if err != nil {
		return err
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return fmt.Errorf("kvapp: agent %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("kvapp: agent %s answered %s: %s", path, resp.Status, strings.TrimSpace(string(msg)))
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("kvapp: agent %s: decode: %w", path, err)
	}
	return nil
}
