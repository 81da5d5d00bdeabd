package client

import (
	"time"

	"github.com/steward-dev/steward/failover"
)

// The answers of the agent's API, as the client decodes them. The agent
// serves more fields than some of these carry; unknown fields are
// ignored, so a newer agent does not break an older client.

// Partition is one row of the partition table: its ID, epoch, primary,
// replicas, migrations in flight (the agent's own type, from the pure
// failover package).
type Partition = failover.Partition

// Settings are the default resource's bootstrap parameters.
type Settings = failover.Settings

// Resource is a named resource: its partition count and replication
// factor.
type Resource = failover.Resource

// Table is GET /v1/partitions.
type Table struct {
	// Stale is set when the table was asked for with Stale while the
	// agent was out of contact with the leader: it may miss changes.
	Stale    bool     `json:"stale,omitempty"`
	Settings Settings `json:"settings"`
	// Resources are every resource of the table.
	Resources []Resource `json:"resources,omitempty"`
	// Partitions are the active partitions, each with its resource and
	// key range (Router.Route maps keys to them).
	Partitions []Partition `json:"partitions"`
	Balance    []NodeLoad  `json:"balance"`
}

// ResourceInfo is one resource of GET /v1/resources.
type ResourceInfo struct {
	Resource
	// ActivePartitions counts its partitions now (splits included).
	ActivePartitions int `json:"active_partitions"`
	// UnderReplicated counts its partitions with fewer copies than its
	// replication factor.
	UnderReplicated int `json:"under_replicated"`
}

// NodeLoad is one node's share of the table.
type NodeLoad struct {
	Node      string `json:"node"`
	Primaries int    `json:"primaries"`
	Copies    int    `json:"copies"`
}

// Member is one entry of GET /v1/members.
type Member struct {
	ID string `json:"id"`
	// Status is alive, suspect, failed, leaving or left (or restarting).
	Status      string `json:"status"`
	Voter       bool   `json:"voter"`
	Registered  bool   `json:"registered"`
	GossipState string `json:"gossip_state,omitempty"`
	RaftID      string `json:"raft_id,omitempty"`
	GossipAddr  string `json:"gossip_addr,omitempty"`
	RaftAddr    string `json:"raft_addr,omitempty"`
	APIAddr     string `json:"api_addr,omitempty"`
	// AppAddr is the data address of the member's app: where a router
	// sends the requests of the partitions it is primary of.
	AppAddr    string `json:"app_addr,omitempty"`
	Zone       string `json:"zone,omitempty"`
	Weight     int    `json:"weight"`
	AppHealthy bool   `json:"app_healthy"`
	Primaries  int    `json:"primaries"`
	Copies     int    `json:"copies"`
	Health     string `json:"health,omitempty"`
}

// Status is GET /v1/status: one agent's view of itself and the cluster.
type Status struct {
	NodeID       string `json:"node_id"`
	RaftID       string `json:"raft_id"`
	LeaderID     string `json:"leader_id"`
	RaftState    string `json:"raft_state"`
	Term         uint64 `json:"term"`
	AppliedIndex uint64 `json:"applied_index"`
	CommitIndex  uint64 `json:"commit_index"`
	LastIndex    uint64 `json:"last_index"`
	Voter        bool   `json:"voter"`
	Bootstrapped bool   `json:"bootstrapped"`
	// Ready: caught up and in contact with the leader; NotReady says why
	// not.
	Ready           bool    `json:"ready"`
	NotReady        string  `json:"not_ready,omitempty"`
	LeaderContactMS int64   `json:"leader_contact_ms"`
	Members         int     `json:"members"`
	Partitions      int     `json:"partitions"`
	Version         string  `json:"version"`
	Quorum          string  `json:"quorum"`
	Maintenance     bool    `json:"maintenance"`
	RemovalsFrozen  string  `json:"removals_frozen,omitempty"`
	FailuresAtOnce  int     `json:"failures_at_once"`
	AppHealthy      bool    `json:"app_healthy"`
	DataLost        []int   `json:"data_lost,omitempty"`
	Leaving         string  `json:"leaving,omitempty"`
	ClockSkewSecs   float64 `json:"clock_skew_seconds"`
}

// LeaveProgress is GET /v1/leave.
type LeaveProgress struct {
	// Phase is draining, handing-over, leaving-raft, leaving-gossip, done
	// or failed ("" before a leave).
	Phase           string    `json:"phase"`
	Started         time.Time `json:"started,omitzero"`
	CopiesRemaining int       `json:"copies_remaining"`
	Primaries       int       `json:"primaries"`
	Error           string    `json:"error,omitempty"`
}
