package localcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// The types below are the agent API as a client reads it, decoded on their
// own (not with package agent's types), so that a change to the wire format
// breaks the end-to-end tests that read it.

// Status is GET /v1/status.
type Status struct {
	NodeID       string `json:"node_id"`
	LeaderID     string `json:"leader_id"`
	RaftState    string `json:"raft_state"`
	Term         uint64 `json:"term"`
	AppliedIndex uint64 `json:"applied_index"`
	Voter        bool   `json:"voter"`
	Ready        bool   `json:"ready"`
	NotReady     string `json:"not_ready"`
	Bootstrapped bool   `json:"bootstrapped"`
	// LeaseRelay is the raft ID of the voter that relayed the agent's last
	// lease grant ("": the leader answered directly).
	LeaseRelay string `json:"lease_relay"`
	// Undelivered counts the webhooks not yet acknowledged by the app.
	Undelivered int `json:"undelivered_events"`
	// Cluster.Size is desired (-desired-nodes) versus alive members.
	Cluster struct {
		Size struct {
			Desired int `json:"desired"`
			Alive   int `json:"alive"`
			Missing int `json:"missing"`
		} `json:"size"`
		ProvisionRequests int `json:"provision_requests"`
	} `json:"cluster"`
}

// Member is an entry of GET /v1/members.
type Member struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Voter  bool   `json:"voter"`
	// GossipState is memberlist's own view on the agent asked.
	GossipState string `json:"gossip_state"`
	// Registered is false for an agent gossip knows but the leader has not
	// yet written into the cluster state.
	Registered  bool   `json:"registered"`
	Incarnation uint64 `json:"incarnation"`
	// APIAddr is the address of its HTTP API.
	APIAddr   string `json:"api_addr"`
	Primaries int    `json:"primaries"`
	Copies    int    `json:"copies"`
	// AppHealthy is false while the member's app is unhealthy, or has not
	// caught up after a planned restart: it is given no primary.
	AppHealthy bool `json:"app_healthy"`
}

// Partition is one partition of GET /v1/partitions.
type Partition struct {
	ID         int      `json:"id"`
	Resource   string   `json:"resource"`
	Epoch      uint64   `json:"epoch"`
	Primary    string   `json:"primary"`
	Replicas   []string `json:"replicas"`
	Migrations []any    `json:"migrations,omitempty"`
	// Pins are the operator's placements (agent move).
	Pins []Pin `json:"pins,omitempty"`
}

// Pin is one operator placement of a partition.
type Pin struct {
	Node    string `json:"node"`
	Primary bool   `json:"primary"`
}

// PartitionTable is GET /v1/partitions.
type PartitionTable struct {
	Settings struct {
		Partitions        int `json:"partitions"`
		ReplicationFactor int `json:"replication_factor"`
	} `json:"settings"`
	Partitions []Partition `json:"partitions"`
}

// RaftServer is a server of GET /v1/raft; NodeID is empty for one no
// registered member owns.
type RaftServer struct {
	NodeID string `json:"node_id"`
	RaftID string `json:"raft_id"`
	Voter  bool   `json:"voter"`
}

// Lease is GET /v1/lease: whether the agent may serve its primaries, for
// how much longer, and which (partition -> epoch).
type Lease struct {
	Valid       bool              `json:"valid"`
	RemainingMS int64             `json:"remaining_ms"`
	Primaries   map[string]uint64 `json:"primaries"`
}

// GetJSON GETs path from the agent's API (within 3 s) into out.
func (a *Agent) GetJSON(path string, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return a.GetJSONContext(ctx, path, out)
}

// GetJSONContext GETs path from the agent's API into out; a status other
// than 200 is an error naming the agent, the path and the body.
func (a *Agent) GetJSONContext(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a.APIAddr()+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s %s", a.ID, path, resp.Status, strings.TrimSpace(string(body)))
	}
	return json.Unmarshal(body, out)
}

// PostJSON POSTs in as JSON to path on the agent's API (within 10 s, with
// token as bearer token if not empty) and decodes a 2xx answer into out
// (if not nil); any other status is an error naming the agent, the path
// and the body.
func (a *Agent) PostJSON(path, token string, in, out any) error {
	return a.SendJSON(http.MethodPost, path, token, in, out)
}

// SendJSON is PostJSON with another method (PATCH, DELETE).
func (a *Agent) SendJSON(method, path, token string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+a.APIAddr()+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s %s: %s %s", a.ID, method, path, resp.Status, strings.TrimSpace(string(raw)))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(raw, out)
}

// RollingRestart is GET /v1/rolling-restart.
type RollingRestart struct {
	Generation uint64   `json:"generation"`
	State      string   `json:"state"`
	Order      []string `json:"order"`
	Done       []string `json:"done"`
	InFlight   []string `json:"in_flight"`
	Error      string   `json:"error"`
	Summary    string   `json:"summary"`
}

// Status is the agent's GET /v1/status.
func (a *Agent) Status() (Status, error) {
	var s Status
	return s, a.GetJSON("/v1/status", &s)
}

// Members is the agent's GET /v1/members.
func (a *Agent) Members() ([]Member, error) {
	var r struct {
		Members []Member `json:"members"`
	}
	return r.Members, a.GetJSON("/v1/members", &r)
}

// MembersByID is Members keyed by member ID.
func (a *Agent) MembersByID() (map[string]Member, error) {
	ms, err := a.Members()
	if err != nil {
		return nil, err
	}
	out := make(map[string]Member, len(ms))
	for _, m := range ms {
		out[m.ID] = m
	}
	return out, nil
}

// MemberStatus is the status the agent lists member id with; an error if it
// does not list it.
func (a *Agent) MemberStatus(id string) (string, error) {
	ms, err := a.MembersByID()
	if err != nil {
		return "", err
	}
	m, ok := ms[id]
	if !ok {
		return "", fmt.Errorf("%s does not list %s", a.ID, id)
	}
	return m.Status, nil
}

// Partitions is the agent's GET /v1/partitions.
func (a *Agent) Partitions() (PartitionTable, error) {
	var p PartitionTable
	return p, a.GetJSON("/v1/partitions", &p)
}

// RaftServers is the raft configuration of the agent's GET /v1/raft.
func (a *Agent) RaftServers() ([]RaftServer, error) {
	var r struct {
		Servers []RaftServer `json:"servers"`
	}
	return r.Servers, a.GetJSON("/v1/raft", &r)
}

// Lease is the agent's GET /v1/lease, within ctx.
func (a *Agent) Lease(ctx context.Context) (Lease, error) {
	var l Lease
	return l, a.GetJSONContext(ctx, "/v1/lease", &l)
}
