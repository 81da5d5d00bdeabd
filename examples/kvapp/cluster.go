package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/steward-dev/steward/client"
	"github.com/steward-dev/steward/failover"
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
	// Resource and the key range [KeyStart, KeyEnd) the partition owns
	// (KeyEnd 0: a table without ranges, routed by partitionOf).
	Resource string `json:"resource"`
	KeyStart uint64 `json:"key_start"`
	KeyEnd   uint64 `json:"key_end"`
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

// gone reports whether the member is away as far as copies are concerned:
// failed, left, or away for a planned restart (writes do not wait for it;
// on its return it is told to rejoin and re-syncs, see onRejoin).
func (m memberView) gone() bool {
	return m.Status == "failed" || m.Status == "left" || m.Status == "restarting"
}

// clusterView is one consistent read of the agent's table and members.
type clusterView struct {
	partitions int
	parts      map[int]partitionView
	// ranged are the default resource's partitions by key range, when the
	// table carries ranges (see partitionFor).
	ranged  []partitionView
	members map[string]memberView
	fetched time.Time
	// index is the table's state index (X-Steward-Index): of two views,
	// the one with the higher index is the newer.
	index uint64
}

func (v *clusterView) partition(id int) partitionView { return v.parts[id] }

// partitionFor is the partition of the default resource that owns key:
// by the rows' key ranges (the same mapping as failover.PartitionForKey,
// which follows splits), or by partitionOf for a table without ranges.
func (v *clusterView) partitionFor(key string) int {
	if len(v.ranged) == 0 {
		return partitionOf(key, v.partitions)
	}
	h := failover.KeyHash(key)
	i := sort.Search(len(v.ranged), func(i int) bool { return v.ranged[i].KeyEnd > h })
	if i < len(v.ranged) && v.ranged[i].KeyStart <= h {
		return v.ranged[i].ID
	}
	return -1
}

// indexRanges lists the default resource's rows with key ranges, by range,
// for partitionFor.
func (v *clusterView) indexRanges() {
	for _, p := range v.parts {
		if p.KeyEnd > 0 && (p.Resource == "" || p.Resource == failover.DefaultResource) {
			v.ranged = append(v.ranged, p)
		}
	}
	sort.Slice(v.ranged, func(i, j int) bool { return v.ranged[i].KeyStart < v.ranged[j].KeyStart })
}

// appAddr is the data address of node's app, or "".
func (v *clusterView) appAddr(node string) string { return v.members[node].AppAddr }

// agentClient reads the agent's view of the cluster. Its router follows
// the agent's watch stream, so the table it serves is current without
// polling; a table fetched over GET is used instead after every webhook
// (invalidate), on demand when a peer refuses a request, and while the
// router follows nothing current (then it is refreshed when older than
// maxAge), unless the router's is newer.
type agentClient struct {
	url    string
	client *http.Client
	maxAge time.Duration
	// router follows the agent's watch stream (run by the server).
	router *client.Router
	// watched is the view built from the router's table at watched.index.
	watched *clusterView

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

// newAgentClient reads the agent at url; its router follows the agent's
// watch stream once runRouter runs.
func newAgentClient(url, token string, hc *http.Client, maxAge time.Duration) (*agentClient, error) {
	cfg := client.DefaultConfig()
	cfg.Addresses, cfg.Token, cfg.HTTPClient = []string{url}, token, hc
	c, err := client.New(cfg)
	if err != nil {
		return nil, err
	}
	return &agentClient{url: url, client: hc, maxAge: maxAge, router: client.NewRouter(c, client.DefaultRouterConfig())}, nil
}

// runRouter follows the agent's watch stream until ctx ends.
func (a *agentClient) runRouter(ctx context.Context) { _ = a.router.Run(ctx) }

// fromRouter is the view of the router's table when the router follows
// the agent (whose view is current) and its table is at least as new as
// the fetched one; nil otherwise.
func (a *agentClient) fromRouter() *clusterView {
	table, members, index, current := a.router.Snapshot()
	if table == nil || members == nil || !current || table.Settings.Partitions < 1 {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.view != nil && a.view.index > index {
		return nil
	}
	if a.watched != nil && a.watched.index == index {
		return a.watched
	}
	v := &clusterView{partitions: table.Settings.Partitions, parts: make(map[int]partitionView, len(table.Partitions)),
		members: make(map[string]memberView, len(members)), fetched: time.Now(), index: index}
	for _, p := range table.Partitions {
		pv := partitionView{ID: p.ID, Epoch: p.Epoch, Primary: p.Primary, Replicas: p.Replicas, Resource: p.ResourceName(), KeyStart: p.KeyStart, KeyEnd: p.KeyEnd}
		for _, m := range p.Migrations {
			pv.Migrations = append(pv.Migrations, migrationView{ID: m.ID, Target: m.Target, Source: m.Source})
		}
		v.parts[p.ID] = pv
	}
	for id, m := range members {
		v.members[id] = memberView{ID: m.ID, Status: m.Status, AppAddr: m.AppAddr}
	}
	v.indexRanges()
	a.watched = v
	return v
}

// get returns the router's view, or the fetched one, fetching a new one
// when forced, stale or (with no current router view) older than maxAge.
func (a *agentClient) get(ctx context.Context, force bool) (*clusterView, error) {
	start := time.Now()
	a.mu.Lock()
	v, stale := a.view, a.stale
	a.mu.Unlock()
	if !force && !stale {
		if w := a.fromRouter(); w != nil {
			return w, nil
		}
	}
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
		if _, err := a.getJSON(ctx, "/v1/status", &st); err != nil {
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
	index, err := a.getJSON(ctx, "/v1/partitions", &table)
	if err != nil {
		return nil, err
	}
	if table.Settings.Partitions < 1 {
		return nil, errNoTable
	}
	var ms struct {
		Members []memberView `json:"members"`
	}
	if _, err := a.getJSON(ctx, "/v1/members", &ms); err != nil {
		return nil, err
	}
	v := &clusterView{partitions: table.Settings.Partitions, parts: map[int]partitionView{},
		members: map[string]memberView{}, fetched: fetched, index: index}
	for _, p := range table.Partitions {
		v.parts[p.ID] = p
	}
	for _, m := range ms.Members {
		v.members[m.ID] = m
	}
	v.indexRanges()
	return v, nil
}

// getJSON reads path from the agent into out and returns the answer's
// state index (0 when it carries none).
func (a *agentClient) getJSON(ctx context.Context, path string, out any) (uint64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(a.url, "/")+path, nil)
	if err != nil {
		return 0, err
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("kvapp: agent %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return 0, fmt.Errorf("kvapp: agent %s answered %s: %s", path, resp.Status, strings.TrimSpace(string(msg)))
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return 0, fmt.Errorf("kvapp: agent %s: decode: %w", path, err)
	}
	index, _ := strconv.ParseUint(resp.Header.Get(client.IndexHeader), 10, 64)
	return index, nil
}
