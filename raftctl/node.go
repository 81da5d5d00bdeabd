package raftctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/steward-dev/steward/failover"
	"go.etcd.io/bbolt"
)

var (
	// ErrNotLeader is returned by writes and membership changes on a server
	// that is not the leader (or is handing leadership over). ApplyForwarded
	// forwards a write to the leader instead.
	ErrNotLeader = errors.New("raftctl: not leader")
	// ErrShutdown is returned by calls on a Node that has been shut down.
	ErrShutdown = errors.New("raftctl: node is shut down")
	// ErrUnknownServer is returned by Promote and Demote for an ID that is
	// not in the raft configuration.
	ErrUnknownServer = errors.New("raftctl: unknown server")
	// ErrLeaderSelf is returned when the leader is asked to remove or demote
	// itself: it must transfer leadership first (see TransferLeadership).
	ErrLeaderSelf = errors.New("raftctl: the leader cannot remove or demote itself; transfer leadership first")
	// ErrCommandTooLarge is returned for a command whose encoding is over
	// MaxCommandSize; it never reaches the log.
	ErrCommandTooLarge = errors.New("raftctl: command too large")
)

// MaxCommandSize bounds an encoded command, applied here or forwarded. The
// largest legitimate one is the bootstrap entry carrying the whole initial
// table: failover.MaxPartitions partitions with 7 copies each, under node
// IDs of the longest allowed length (64 characters), encodes to 32.2 MiB
// (a failure's promotions, the next largest, stay under 7 MiB). 40 MiB
// leaves a quarter on top; anything beyond is a bug or an attack, and
// would be replicated to and kept by every server.
const MaxCommandSize = 40 << 20

// logCacheSize is how many recent log entries are kept in memory in front of
// bbolt, so replication to followers rarely reads the disk.
const logCacheSize = 512

// waitPollInterval is how often the wait functions recheck raft's indexes,
// which raft does not signal (no-op and barrier entries never reach the FSM).
const waitPollInterval = 10 * time.Millisecond

// Server is one member of the raft configuration.
type Server struct {
	// ID is the raft server ID.
	ID string `json:"id"`
	// Address is the host:port of its raft transport.
	Address string `json:"address"`
	// Voter is true for a voter, false for a non-voter.
	Voter bool `json:"voter"`
}

// Node is one raft server with Steward's FSM.
//
// Raft traps worth knowing (DESIGN.md, Traps):
//   - raft's ShutdownOnRemove is left at its default (true): a server removed
//     from the configuration shuts its raft down. So the leader must never
//     remove itself; it transfers leadership and lets the new leader remove
//     it. Remove and Demote refuse to act on the leader itself.
//   - After a restart the FSM replays asynchronously: call WaitCaughtUp before
//     serving the state.
type Node struct {
	cfg       *Config
	logger    hclog.Logger
	raft      *raft.Raft
	fsm       *fsm
	logs      raft.LogStore
	transport *raft.NetworkTransport
	// acks are the answers to this node's AppendEntries, which confirm
	// its leadership (confirm.go) and tell which followers hold the
	// newest entry (announce.go).
	acks *followerAcks
	// trans is raft's transport as raft uses it: the NetworkTransport,
	// recording answers (acks.go); the announcer sends through it too.
	trans ackingTransport
	// thin holds the heartbeats to non-voters until they are due one
	// (thin.go).
	thin *heartbeatThinning
	// heartbeatTimeout is the one raft runs now (thin.go,
	// switchHeartbeatTimeout), in nanoseconds.
	heartbeatTimeout atomic.Int64
	stream           *tcpStreamLayer
	bolt             *raftboltdb.BoltStore // nil when InMemory
	hasState         bool

	// requests is the memory budget of large requests on the raft port.
	requests requestBudget

	changes       <-chan struct{}
	cancelChanges func()

	// forwardTarget names the server ApplyForwarded sends writes to: Leader,
	// except in tests of the retry.
	forwardTarget func() (id, addr string)

	// controlWG counts serveControl and the handlers of Steward's own
	// exchanges on the raft port (pings, forwarded writes); controlConns are
	// the handlers' connections, closed on Shutdown.
	controlWG     sync.WaitGroup
	controlMu     sync.Mutex
	controlConns  map[net.Conn]struct{}
	controlClosed bool

	// leaseGranter answers lease requests while this server leads
	// (SetLeaseGranter); nil refuses them.
	leaseMu      sync.Mutex
	leaseGranter LeaseGranter
	// leaseConn is the connection kept to the leader for this agent's
	// renewals (RequestLease); pingConns those kept to the peers it pings.
	leaseConn keptConn
	// relayIn feeds relayLoop the lease requests this server relays to the
	// leader, and relayConn is the connection it keeps to the leader for
	// the batches (relay.go).
	relayIn   chan relayedLease
	relayConn keptConn
	// batchesServed counts the relays' batches this server answered,
	// relayed the requests it relayed.
	batchesServed atomic.Uint64
	relayed       atomic.Uint64
	pingConns     pingConns
	// loadSource answers load requests while this server leads
	// (SetLoadSource); guarded by leaseMu too.
	loadSource LoadSource

	// guard watches the writes to raft.db (nil when InMemory); markPath is
	// where this server's progress is recorded, lastMark what was last
	// written there (integrity.go). loops counts the guard's probe,
	// markLoop and announceLoop.
	guard    *storeGuard
	markPath string
	markMu   sync.Mutex
	lastMark stateMark
	loops    sync.WaitGroup

	// announce wakes announceLoop after a command committed (announce.go);
	// buffered 1, coalescing.
	announce chan struct{}
	// leaders signals SubscribeLeader's subscribers (leaderwatch.go).
	leaders *notifier

	shutdownOnce sync.Once
	shutdownErr  error
	shutdownCh   chan struct{}
}

// New opens the stores, starts the TCP transport and raft. It does not
// bootstrap: call HasState and Bootstrap, or wait to be added by a leader.
func New(cfg *Config) (n *Node, err error) {
	if cfg == nil {
		return nil, errors.New("raftctl: nil config")
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	logger = withScalarFields(logger)

	// Everything opened so far is closed again if a later step fails.
	var closers []io.Closer
	defer func() {
		if err != nil {
			for i := len(closers) - 1; i >= 0; i-- {
				closers[i].Close()
			}
		}
	}()

	var (
		logs     raft.LogStore
		stable   raft.StableStore
		snaps    raft.SnapshotStore
		bolt     *raftboltdb.BoltStore
		guard    *storeGuard
		markPath string
	)
	shutdownCh := make(chan struct{})
	if cfg.InMemory {
		mem := raft.NewInmemStore()
		logs, stable, snaps = mem, mem, raft.NewInmemSnapshotStore()
	} else {
		// Nothing is created or opened for writing before the state has
		// been checked (integrity.go).
		dir := filepath.Join(cfg.DataDir, "raft")
		dbPath := filepath.Join(dir, "raft.db")
		markPath = filepath.Join(cfg.DataDir, markFileName)
		mark, err := readMark(markPath)
		if err != nil {
			return nil, err
		}
		if err := checkBeforeOpen(cfg, dbPath, markPath, mark); err != nil {
			return nil, err
		}
		fellBack, err := checkBolt(dbPath)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("raftctl: create %s: %w", dir, err)
		}
		if bolt, err = openBolt(dbPath); err != nil {
			return nil, err
		}
		closers = append(closers, bolt)
		snaps, err = raft.NewFileSnapshotStoreWithLogger(dir, cfg.SnapshotRetain, logger.Named("snapshots"))
		if err != nil {
			return nil, fmt.Errorf("raftctl: snapshot store in %s: %w", dir, err)
		}
		if err := verifyState(dbPath, filepath.Join(dir, "snapshots"), markPath, bolt, snaps, mark, fellBack, logger); err != nil {
			return nil, err
		}
		guard = newStoreGuard(dbPath, logger.Named("store"), shutdownCh, cfg.StoreFault)
		cached, err := raft.NewLogCache(logCacheSize, guardedLogStore{LogStore: bolt, guard: guard})
		if err != nil {
			return nil, fmt.Errorf("raftctl: log cache: %w", err)
		}
		logs, stable = cached, guardedStableStore{StableStore: bolt, guard: guard}
	}

	hasState, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		return nil, fmt.Errorf("raftctl: read existing state: %w", err)
	}

	stream, err := listenTCP(cfg.BindAddr, cfg.AdvertiseAddr, cfg.TLS, cfg.ClusterSecrets, cfg.TransportTimeout, logger.Named("transport"))
	if err != nil {
		return nil, err
	}
	transport := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: cfg.MaxPool,
		Timeout: cfg.TransportTimeout,
		Logger:  logger.Named("transport"),
	})
	closers = append(closers, transport)

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ServerID)
	rc.Logger = logger
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	// Group commit: concurrent applies share one log write and one fsync.
	rc.BatchApplyCh = true
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("raftctl: %w", err)
	}

	if guard != nil {
		guard.isolate = func() { transport.Close() }
	}

	f := newFSM()
	acks := newFollowerAcks()
	thin := newThinning(cfg, shutdownCh)
	trans := ackingTransport{NetworkTransport: transport, acks: acks, thin: thin}
	r, err := startRaft(rc, f, logs, stable, snaps, trans, cfg.DataDir)
	if err != nil {
		return nil, err
	}

	n = &Node{
		cfg:          cfg,
		logger:       logger,
		raft:         r,
		fsm:          f,
		logs:         logs,
		transport:    transport,
		acks:         acks,
		thin:         thin,
		trans:        trans,
		stream:       stream,
		bolt:         bolt,
		hasState:     hasState,
		guard:        guard,
		markPath:     markPath,
		controlConns: make(map[net.Conn]struct{}),
		announce:     make(chan struct{}, 1),
		leaders:      newNotifier(),
		relayIn:      make(chan relayedLease, maxRelayQueue),
		shutdownCh:   shutdownCh,
	}
	n.forwardTarget = n.Leader
	n.heartbeatTimeout.Store(int64(cfg.HeartbeatTimeout))
	n.changes, n.cancelChanges = f.changes.subscribe()
	n.watchLeader()
	n.controlWG.Add(1)
	go n.serveControl()
	if cfg.AnnounceCommits {
		n.loops.Add(1)
		go func() { defer n.loops.Done(); n.announceLoop() }()
	}
	if cfg.LeaseRelay.Wait > 0 {
		n.loops.Add(1)
		go func() { defer n.loops.Done(); n.relayLoop() }()
	}
	if cfg.NonvoterContact > 0 || cfg.NonvoterHeartbeatTimeout > cfg.HeartbeatTimeout {
		n.loops.Add(1)
		go func() { defer n.loops.Done(); n.nonvoterLoop() }()
	}
	if guard != nil {
		n.loops.Add(2)
		go func() { defer n.loops.Done(); guard.probeLoop(stable) }()
		go func() { defer n.loops.Done(); n.markLoop() }()
	}
	return n, nil
}

// openBolt opens raft.db for raft, turning a panic on a damaged page into
// an error.
func openBolt(path string) (store *raftboltdb.BoltStore, err error) {
	defer func() {
		if r := recover(); r != nil {
			store, err = nil, unsafeState(path, "damaged (%v)", r)
		}
	}()
	store, err = raftboltdb.New(raftboltdb.Options{
		Path: path,
		BoltOptions: &bbolt.Options{
			// Fail instead of hanging when another process holds the
			// file lock (a second agent on the same data dir).
			Timeout: time.Second,
			// The freelist is rebuilt on open rather than written on
			// every commit: fewer bytes per fsync, as Consul does.
			NoFreelistSync: true,
		},
	})
	if errors.Is(err, bbolt.ErrTimeout) {
		return nil, fmt.Errorf("raftctl: %s is locked by another process: is another agent running on this data dir?", path)
	}
	if err != nil {
		return nil, fmt.Errorf("raftctl: open %s: %w", path, err)
	}
	return store, nil
}

// startRaft is raft.NewRaft, with a panic from the stores (an entry it
// cannot read) turned into an error that names the state's directory.
func startRaft(rc *raft.Config, f *fsm, logs raft.LogStore, stable raft.StableStore, snaps raft.SnapshotStore, trans raft.Transport, dataDir string) (r *raft.Raft, err error) {
	defer func() {
		if p := recover(); p != nil {
			r, err = nil, unsafeState(filepath.Join(dataDir, "raft"), "raft cannot read its own state (%v)", p)
		}
	}()
	r, err = raft.NewRaft(rc, f, logs, stable, snaps, trans)
	if err != nil {
		return nil, fmt.Errorf("raftctl: start raft on %s: %w", filepath.Join(dataDir, "raft"), err)
	}
	return r, nil
}

// markLoop records this server's progress in its stateMark while it runs.
func (n *Node) markLoop() {
	tick := time.NewTicker(markInterval)
	defer tick.Stop()
	for {
		select {
		case <-n.shutdownCh:
			return
		case <-tick.C:
			n.recordMark()
		}
	}
}

// recordMark writes the stateMark if this server has progressed since the
// last one. Called from markLoop and, once raft has stopped, from Shutdown.
func (n *Node) recordMark() {
	applied, term := n.fsm.appliedAt()
	// The terms as raft.db holds them (raft's in memory may be ahead of a
	// save that is still under way).
	current, vote, err := savedTerms(n.bolt)
	if err != nil {
		n.logger.Warn("cannot read raft's saved term to record progress", "error", err)
		return
	}
	m := stateMark{ServerID: n.cfg.ServerID, AppliedIndex: applied, AppliedTerm: term, CurrentTerm: current, VoteTerm: vote}
	n.markMu.Lock()
	defer n.markMu.Unlock()
	if m == n.lastMark || (m.AppliedIndex == 0 && m.CurrentTerm == 0) {
		return
	}
	if err := writeMark(n.markPath, m); err != nil {
		n.logger.Warn("cannot record raft progress", "file", n.markPath, "error", err)
		return
	}
	n.lastMark = m
}

// StorageError says why raft's store is refusing writes, or nil. While it
// is not nil, raft is stalled or refusing entries, and this server's state
// must not be served as current.
func (n *Node) StorageError() error {
	if n.guard == nil {
		return nil
	}
	return n.guard.Err()
}

// HasState reports whether raft found existing state (log, term or
// snapshots) when the node was opened. A node with state must not be
// bootstrapped again; it resumes its cluster.
func (n *Node) HasState() bool { return n.hasState }

// ID is this server's raft ID.
func (n *Node) ID() string { return n.cfg.ServerID }

// Addr is the transport's advertised address: with a bind port of 0, the
// port actually bound. This is the address to give Bootstrap and AddNonvoter.
func (n *Node) Addr() string { return string(n.transport.LocalAddr()) }

// Bootstrap forms a new cluster with servers as its first configuration.
// Every server of a new cluster may call it with the same list (the list is
// sorted by ID first, so order does not matter); raft makes it a no-op on a
// server that already has state, and that case returns nil. If this server is
// in the list, its address there must be Addr().
func (n *Node) Bootstrap(servers []Server) error {
	if len(servers) == 0 {
		return errors.New("raftctl: bootstrap needs at least one server")
	}
	sorted := append([]Server(nil), servers...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].ID < sorted[j].ID })
	var conf raft.Configuration
	for _, s := range sorted {
		if s.ID == n.cfg.ServerID && s.Address != n.Addr() {
			return fmt.Errorf("raftctl: bootstrap lists this server %q at %s, but it is at %s", s.ID, s.Address, n.Addr())
		}
		conf.Servers = append(conf.Servers, raft.Server{
			ID:       raft.ServerID(s.ID),
			Address:  raft.ServerAddress(s.Address),
			Suffrage: suffrage(s.Voter),
		})
	}
	err := n.raft.BootstrapCluster(conf).Error()
	if errors.Is(err, raft.ErrCantBootstrap) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("raftctl: bootstrap: %w", err)
	}
	return nil
}

func suffrage(voter bool) raft.ServerSuffrage {
	if voter {
		return raft.Voter
	}
	return raft.Nonvoter
}

// Apply proposes cmd and waits until it is committed and applied here. It
// returns ErrNotLeader on a follower. An error from Cluster.Apply comes back
// as the error (the entry is in the log, but it changed nothing on any
// replica).
func (n *Node) Apply(cmd failover.Command) (failover.Result, error) {
	data, err := EncodeCommand(cmd)
	if err != nil {
		return failover.Result{}, err
	}
	return n.apply(data)
}

// ApplyEncoded is Apply for a command already encoded with EncodeCommand: the
// leader's side of a write forwarded by a follower. Data that does not decode
// is refused before it reaches the log.
func (n *Node) ApplyEncoded(data []byte) (failover.Result, error) {
	if _, err := DecodeCommand(data); err != nil {
		return failover.Result{}, err
	}
	return n.apply(data)
}

func (n *Node) apply(data []byte) (failover.Result, error) {
	if len(data) > MaxCommandSize {
		return failover.Result{}, fmt.Errorf("%w: %d bytes, the limit is %d", ErrCommandTooLarge, len(data), MaxCommandSize)
	}
	switch n.raft.State() {
	case raft.Leader:
	case raft.Shutdown:
		return failover.Result{}, ErrShutdown
	default:
		return failover.Result{}, ErrNotLeader
	}
	f := n.raft.Apply(data, n.cfg.ApplyTimeout)
	if err := f.Error(); err != nil {
		return failover.Result{}, mapRaftError(err)
	}
	n.announceCommits()
	resp, ok := f.Response().(*applyResponse)
	if !ok {
		return failover.Result{}, fmt.Errorf("raftctl: unexpected FSM response %T", f.Response())
	}
	return resp.result, resp.err
}

// mapRaftError turns raft's "not the leader" family into ErrNotLeader (while
// keeping raft's error in the chain) and marks the rest as raftctl's.
//
// raft.ErrLeadershipLost deserves care: the entry may or may not commit
// later. Steward's commands are compare-and-set on epochs or idempotent, so
// the caller may retry against the new leader; a retried bootstrap or member
// removal that had in fact committed then reports
// failover.ErrAlreadyBootstrapped or failover.ErrUnknownMember.
func mapRaftError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader),
		errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w: %w", ErrNotLeader, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: %w", ErrShutdown, err)
	}
	return fmt.Errorf("raftctl: %w", err)
}

// Read runs fn with the current state under a read lock. fn must be quick
// (raft cannot apply while it runs), must not modify c, and must not keep
// references into c after it returns; use Snapshot for a copy to keep.
func (n *Node) Read(fn func(c *failover.Cluster)) {
	n.fsm.mu.RLock()
	defer n.fsm.mu.RUnlock()
	fn(n.fsm.cluster)
}

// LastIndex is the index of the last entry in this server's raft log
// (stored, not necessarily committed or applied).
func (n *Node) LastIndex() uint64 { return n.raft.LastIndex() }

// HoldsEntry reports whether this server's raft log holds the entry at
// index in term (any entry at index when term is 0): then, by raft's log
// matching, it holds every entry before it as the leader that wrote it
// did. An index compacted into this server's snapshot, which it applied,
// is held.
func (n *Node) HoldsEntry(index, term uint64) bool {
	if n.raft.LastIndex() < index {
		return false
	}
	if term == 0 {
		return true
	}
	if applied, appliedTerm := n.fsm.appliedAt(); applied == index && appliedTerm == term {
		return true
	}
	var l raft.Log
	if err := n.logs.GetLog(index, &l); err != nil {
		return errors.Is(err, raft.ErrLogNotFound) && n.fsm.appliedIndex() >= index
	}
	return l.Term == term
}

// StateIndex is the raft index of the last entry that changed the state
// (or of the snapshot it was restored from): it only goes up while the
// node runs, and equal indexes mean the same state. Blocking queries hand
// it to clients as X-Steward-Index. Subscribe first, then read it, so that
// a change between the two still wakes the subscriber.
func (n *Node) StateIndex() uint64 {
	n.fsm.mu.RLock()
	defer n.fsm.mu.RUnlock()
	return n.fsm.stateIndex
}

// Snapshot returns a deep copy of the current state.
func (n *Node) Snapshot() *failover.Cluster {
	n.fsm.mu.RLock()
	defer n.fsm.mu.RUnlock()
	return n.fsm.cluster.Clone()
}

// Changes returns the node's change channel: it receives a signal after
// every applied entry (or restored snapshot) that may have changed the state.
// Signals coalesce (buffer of one) and are never blocked on, so a consumer
// sees at least one signal after the last change but not one per change; it
// should then look at the whole state (level-triggered). The channel is
// shared: for several independent consumers, use Subscribe.
func (n *Node) Changes() <-chan struct{} { return n.changes }

// Subscribe returns a change channel of its own, with the semantics of
// Changes, and a function that ends the subscription.
func (n *Node) Subscribe() (<-chan struct{}, func()) { return n.fsm.changes.subscribe() }

// Subscribers counts the subscriptions not yet ended (the agent's loops,
// and one per blocking query or watch stream in progress).
func (n *Node) Subscribers() int { return n.fsm.changes.count() }

// LeadershipChanges returns raft's leader channel: true when this server
// becomes leader, false when it stops being leader. It holds only the latest
// value (raft overwrites an unread one), so raft never blocks on it and a
// slow reader sees the current state rather than every transition. There is
// one such channel per node: give it to one consumer.
func (n *Node) LeadershipChanges() <-chan bool { return n.raft.LeaderCh() }

// IsLeader reports whether this server is the leader now.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the current leader's ID and address as far as this server
// knows, or empty strings when there is none.
func (n *Node) Leader() (id, addr string) {
	a, i := n.raft.LeaderWithID()
	return string(i), string(a)
}

// State is this server's raft state: "leader", "follower", "candidate" or
// "shutdown".
func (n *Node) State() string {
	switch n.raft.State() {
	case raft.Leader:
		return "leader"
	case raft.Candidate:
		return "candidate"
	case raft.Shutdown:
		return "shutdown"
	default:
		return "follower"
	}
}

// Stats are raft's counters for status pages and metrics.
type Stats struct {
	// State is as returned by Node.State.
	State string `json:"state"`
	// Term is the current raft term.
	Term uint64 `json:"term"`
	// LastIndex is the index of the last entry in the local log (or
	// snapshot), committed or not.
	LastIndex uint64 `json:"last_index"`
	// CommitIndex is the highest index this server knows to be committed.
	CommitIndex uint64 `json:"commit_index"`
	// AppliedIndex is the index of the last entry the FSM has applied: the
	// state Read and Snapshot show. Raft's no-op and barrier entries never
	// reach the FSM, so it may sit a little below CommitIndex for good.
	AppliedIndex uint64 `json:"applied_index"`
	// LastContact is how long ago a follower last heard from the leader;
	// 0 on the leader, -1 if the server never heard from one.
	LastContact time.Duration `json:"last_contact"`
}

// Term is raft's current term.
func (n *Node) Term() uint64 { return n.raft.CurrentTerm() }

// Stats returns raft's counters.
func (n *Node) Stats() Stats {
	s := Stats{
		State:        n.State(),
		Term:         n.raft.CurrentTerm(),
		LastIndex:    n.raft.LastIndex(),
		CommitIndex:  n.raft.CommitIndex(),
		AppliedIndex: n.fsm.appliedIndex(),
	}
	switch last := n.raft.LastContact(); {
	case n.raft.State() == raft.Leader:
		s.LastContact = 0
	case last.IsZero():
		s.LastContact = -1
	default:
		s.LastContact = time.Since(last)
	}
	return s
}

// Barrier waits until every entry before it has been applied to the FSM;
// only the leader can issue one. The leader calls it after it is elected, so
// that the state it serves includes everything committed before.
func (n *Node) Barrier(timeout time.Duration) error {
	if err := n.raft.Barrier(timeout).Error(); err != nil {
		return mapRaftError(err)
	}
	return nil
}

// TakeSnapshot makes raft snapshot the FSM now and compact its log, instead
// of waiting for SnapshotThreshold. raft.ErrNothingNewToSnapshot is returned
// (wrapped) when nothing was applied since the last snapshot.
func (n *Node) TakeSnapshot() error {
	if err := n.raft.Snapshot().Error(); err != nil {
		return fmt.Errorf("raftctl: snapshot: %w", err)
	}
	return nil
}

// WaitApplied waits until the FSM reflects every log entry up to index, or
// ctx ends.
func (n *Node) WaitApplied(ctx context.Context, index uint64) error {
	tick := time.NewTicker(waitPollInterval)
	defer tick.Stop()
	for {
		// Take the channel before checking, so progress made between the
		// check and the select still wakes us.
		progressed := n.fsm.progressed()
		if n.appliedThrough(index) {
			return nil
		}
		if n.raft.State() == raft.Shutdown {
			return ErrShutdown // our Shutdown, or raft's own on removal
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-n.shutdownCh:
			return ErrShutdown
		case <-progressed:
		case <-tick.C:
		}
	}
}

// appliedThrough reports whether the FSM reflects every entry up to index.
// Raft never hands no-op entries (one per new leader) or barriers to the
// FSM, so the FSM's own index can stay below index forever; once raft has
// dispatched index, the entries the FSM has not seen only matter if they are
// commands or configuration changes.
func (n *Node) appliedThrough(index uint64) bool {
	done := n.fsm.appliedIndex()
	if done >= index {
		return true
	}
	if n.raft.AppliedIndex() < index {
		return false
	}
	for i := index; i > done; i-- {
		var l raft.Log
		if err := n.logs.GetLog(i, &l); err != nil {
			// Compacted away: covered by a snapshot, which the FSM either
			// took after applying it or restored.
			return errors.Is(err, raft.ErrLogNotFound)
		}
		if l.Type == raft.LogCommand || l.Type == raft.LogConfiguration {
			return false
		}
	}
	return true
}

// WaitCaughtUp waits until the state this server serves is current. On the
// leader that is a Barrier. On a follower it waits until it has heard from a
// leader after the call began, takes the last index of its log at that point
// (everything the leader had sent it) as the target, and waits until that
// index is committed and applied; if meanwhile more than one replication
// batch arrived (it is still receiving a backlog), it does another round.
//
// Why not the commit index: heartbeats carry none, so right after contact a
// follower's commit index may still predate the call. Its log does not: an
// entry the leader committed was in the logs of a quorum, and is sent to this
// follower before anything newer.
//
// "Caught up" is therefore local and approximate for a follower that is
// still far behind. To judge a server against the leader (e.g. before
// promoting it), compare its applied index with the leader's, fetched from
// each agent's /v1/status, or call WaitApplied with the leader's index.
func (n *Node) WaitCaughtUp(ctx context.Context) error {
	start := time.Now()
	tick := time.NewTicker(waitPollInterval)
	defer tick.Stop()
	var target uint64 // 0 until a leader was heard from after start
	for {
		switch n.raft.State() {
		case raft.Shutdown:
			return ErrShutdown
		case raft.Leader:
			timeout := n.cfg.ApplyTimeout
			if deadline, ok := ctx.Deadline(); ok {
				timeout = time.Until(deadline)
				if timeout <= 0 {
					return context.DeadlineExceeded
				}
			}
			err := n.Barrier(timeout)
			if err == nil || !errors.Is(err, ErrNotLeader) {
				return err
			}
			// Lost leadership meanwhile: wait as a follower.
		default:
			if target == 0 {
				if id, _ := n.Leader(); id != "" && n.raft.LastContact().After(start) {
					target = n.raft.LastIndex()
				}
			}
			if target != 0 {
				// A new leader may truncate uncommitted entries at the tail.
				if last := n.raft.LastIndex(); last < target {
					target = last
				}
				if n.raft.CommitIndex() >= target && n.appliedThrough(target) {
					last := n.raft.LastIndex()
					if last <= target+backlogBatch {
						return nil
					}
					target = last
				}
			}
		}
		progressed := n.fsm.progressed()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-n.shutdownCh:
			return ErrShutdown
		case <-progressed:
		case <-tick.C:
		}
	}
}

// backlogBatch is raft's default MaxAppendEntries: a follower whose log grew
// by more than one batch while it waited is still catching up.
const backlogBatch = 64

// Shutdown stops answering pings and forwarded writes, stops raft, closes
// the transport and the stores. It is safe to
// call more than once; later calls return the first call's result.
func (n *Node) Shutdown() error {
	n.shutdownOnce.Do(func() {
		close(n.shutdownCh)
		n.cancelChanges()
		// raft's requests fail as it stops: that says nothing of the
		// followers.
		n.SetUnreachableHandler(nil)
		// Stop answering pings and forwarded writes first: a node on its
		// way out is not a live peer.
		n.closeControl()
		n.leaseConn.close()
		n.pingConns.close()
		var errs []error
		if err := n.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("raft: %w", err))
		}
		// Close pooled outbound connections too, so peers' handlers for
		// them end now rather than at their next read deadline.
		n.transport.CloseStreams()
		if err := n.transport.Close(); err != nil {
			errs = append(errs, fmt.Errorf("transport: %w", err))
		}
		// Handlers end once their connection is closed and raft (whose
		// futures they may wait on) has stopped.
		n.controlWG.Wait()
		n.loops.Wait()
		n.relayConn.close() // the relay loop, which uses it, has ended
		if n.guard != nil {
			n.recordMark() // raft has stopped: its final progress
		}
		if n.bolt != nil {
			if err := n.bolt.Close(); err != nil {
				errs = append(errs, fmt.Errorf("bolt: %w", err))
			}
		}
		if len(errs) > 0 {
			n.shutdownErr = fmt.Errorf("raftctl: shutdown: %w", errors.Join(errs...))
		}
	})
	return n.shutdownErr
}
