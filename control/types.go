package control

import (
	"context"
	"time"

	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/gossip"
	"github.com/steward-dev/steward/health"
	"github.com/steward-dev/steward/raftctl"
)

// Raft lists the raft operations the control plane uses, and only those,
// so that tests can fake them. *raftctl.Node implements it.
type Raft interface {
	// Read runs fn on this server's copy of the cluster state (as its
	// state machine applied it); fn must not keep c.
	Read(fn func(c *failover.Cluster))
	// StateIndex is the raft index of the last entry that changed the
	// state: it only goes up, and equal indexes mean the same state.
	StateIndex() uint64
	// Snapshot is a copy of this server's cluster state.
	Snapshot() *failover.Cluster
	// Subscribe wakes the returned channel after each change of the state.
	Subscribe() (changes <-chan struct{}, unsubscribe func())
	// ApplyForwarded commits cmd: directly on the leader, forwarded to the
	// leader otherwise.
	ApplyForwarded(ctx context.Context, cmd failover.Command) (failover.Result, error)

	// Configuration is the raft configuration as this server knows it.
	Configuration() ([]raftctl.Server, error)
	// AddNonvoter adds a server, or updates its address (leader only).
	AddNonvoter(id, addr string) error
	// Remove takes a server out of the configuration (leader only).
	Remove(id string) error
	// Promote makes a non-voter a voter (leader only).
	Promote(id string) error
	// Demote makes a voter a non-voter (leader only).
	Demote(id string) error
	// Bootstrap writes the first configuration of a new cluster.
	Bootstrap(servers []raftctl.Server) error
	// HasState reports whether this server had a raft log at start.
	HasState() bool

	// IsLeader reports whether this server leads now.
	IsLeader() bool
	// Term is the current raft term.
	Term() uint64
	// ConfirmLeadership returns an instant since which no other server can
	// have been elected: this server leads in term and a majority of the
	// voters answered it in term after that instant. One at most fresh
	// old is returned at once; otherwise it asks the voters and waits up
	// to timeout.
	ConfirmLeadership(term uint64, fresh, timeout time.Duration) (time.Time, error)
	// Leader is the current leader's server ID and address ("" if none).
	Leader() (id, addr string)
	// TransferLeadership hands leadership to another voter.
	TransferLeadership() error
	// Stats are this server's term and indexes.
	Stats() raftctl.Stats
	// PingServer asks the raft server id at a raft address how far it has
	// applied; another server answering there is an error.
	PingServer(ctx context.Context, id, addr string) (raftctl.PeerStatus, error)
}

// Membership lists the gossip operations the control plane uses.
// *gossip.Gossip implements it.
type Membership interface {
	// Members is every node gossip knows, in any state.
	Members() []gossip.Node
	// Member is one node by ID.
	Member(id string) (gossip.Node, bool)
}

// Detector is the failure detector's view of the other nodes.
// *health.Monitor implements it.
type Detector interface {
	// Node is the detector's view of one node; false if it never heard of
	// it.
	Node(id string) (health.NodeHealth, bool)
	// Observe hands the detector an observation; the control plane gives
	// it a suspicion of a node it must know about before acting (a failed
	// member back in gossip that the detector never heard of), so that its
	// probes decide.
	Observe(ev health.Observation)
}

// Clock gives the wall clock for timestamps that leave this node (the At
// of raft commands) and a monotonic reading for every age and timeout:
// Elapsed is the time since an arbitrary origin, which a step of the wall
// clock does not move. A leader whose wall clock jumped an hour ahead used
// to cancel every copy in flight as "timed out after 1h0m11s".
type Clock interface {
	Now() time.Time
	Elapsed() time.Duration
}

// SystemClock reads the real clocks. Go's time.Now carries a monotonic
// reading, and time.Since subtracts those, so Elapsed never steps.
type SystemClock struct{ origin time.Time }

// NewSystemClock starts a system clock's Elapsed at zero now.
func NewSystemClock() SystemClock { return SystemClock{origin: time.Now()} }

// Now is time.Now.
func (c SystemClock) Now() time.Time { return time.Now() }

// Elapsed is the monotonic time since NewSystemClock.
func (c SystemClock) Elapsed() time.Duration { return time.Since(c.origin) }

// Restarter asks a member's agent to restart (a step of a rolling
// restart): POST /v1/restart on its API, or this agent's own restart when
// m is this agent. It returns once the agent has accepted (it then marks
// itself restarting and goes away); an error wrapping ErrRestartRefused
// when it refused, any other error when it could not be asked (tried
// again next round).
type Restarter interface {
	RequestRestart(ctx context.Context, m failover.Member) error
}

// Observer is told what the control plane did, for metrics. Its methods are
// called from the reconcile round and from Apply's callers; they must
// return quickly.
type Observer interface {
	// Applied: one command took this long to commit (forwarding included).
	Applied(took time.Duration)
	// MarkedFailed: this leader marked a member failed.
	MarkedFailed()
	// Frozen: automatic removals were frozen (true) or resumed (false).
	Frozen(frozen bool)
	// Planned: one round of the planner took this long.
	Planned(took time.Duration)
	// Decided: this agent recorded a decision in its event log (GET
	// /v1/events) with these actions, all of them, including those the log
	// keeps no room for. Counting actions here, at the one place every
	// decision passes, keeps action counters equal to the events: the
	// promotions of a failure are not planner rounds.
	Decided(eventType string, actions []failover.Action)
}

// Config is what the control plane decides with: the agent's settings
// that concern the cluster.
type Config struct {
	// NodeID is this node's logical ID.
	NodeID string
	// RaftID is this incarnation's raft server ID.
	RaftID string
	// BootstrapExpect: this many agents form the first cluster (0: this
	// agent never bootstraps one).
	BootstrapExpect int
	// Partitions is the number of partitions the bootstrap creates.
	Partitions int
	// ReplicationFactor is the bootstrap's number of copies of each
	// partition.
	ReplicationFactor int
	// Voters is the target number of raft voters (odd).
	Voters int
	// MaxFailed: more members failed at once than this freezes automatic
	// removals (0: DefaultMaxFailed).
	MaxFailed int
	// ProbeInterval is the failure detector's; the freeze's at-once window
	// is counted in it.
	ProbeInterval time.Duration
	// ReplaceDelay is how long the planner waits before it re-creates a
	// failed node's copies elsewhere.
	ReplaceDelay time.Duration
	// MigrationTimeout: a copy not acknowledged within it is re-planned
	// (0: the planner's default).
	MigrationTimeout time.Duration
	// MaxMigrationsPerNode bounds the copies in flight one node takes
	// part in.
	MaxMigrationsPerNode int
	// MaxMigrations bounds the copies in flight in the whole cluster.
	MaxMigrations int
	// InstantCopies: no app is attached, so a copy is complete as soon as
	// it is started.
	InstantCopies bool
	// ReapAfter: a member failed or departed for this long is forgotten.
	ReapAfter time.Duration
	// Leases are the primary lease's timings (LeaseTimingsFor).
	Leases LeaseTimings
	// Load are the thresholds the planner applies to the apps' load and
	// disk reports (failover.LoadPolicy; the zero value means its
	// defaults).
	Load failover.LoadPolicy
	// LoadReportTTL: the leader plans without a node's report once it is
	// older than this (0: DefaultLoadReportTTL).
	LoadReportTTL time.Duration
}

// DefaultLoadReportTTL is how long the leader keeps an app's load report
// without a newer one.
const DefaultLoadReportTTL = 30 * time.Second
