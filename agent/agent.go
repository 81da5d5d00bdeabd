package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/steward-dev/steward/control"
	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/gossip"
	"github.com/steward-dev/steward/health"
	"github.com/steward-dev/steward/hooks"
	"github.com/steward-dev/steward/raftctl"
)

// Version is the agent's version, set at build time with
// -ldflags "-X github.com/steward-dev/steward/agent.Version=...".
var Version = "0.1.0-dev"

// Agent wires gossip, raft and the HTTP API of one node. New prepares and
// binds nothing; Start opens the data dir, binds the listeners and starts
// the loops; Shutdown stops everything and is safe to call more than once.
type Agent struct {
	cfg Config
	log hclog.Logger

	// clock gives wall-clock timestamps and the monotonic readings every
	// timeout is measured with (see control.Clock).
	clock control.Clock

	// raftID is this incarnation's raft server ID (see loadIdentity).
	raftID string
	// createdDataDir is set when this Start created the data dir: a
	// start that fails removes it again, so that bad input (a taken node
	// ID, a -join nobody answers) leaves nothing bound to the node ID.
	createdDataDir bool
	// raftConfigHook, when set (by tests), adjusts raft's configuration
	// before Start opens it: fault injection.
	raftConfigHook func(*raftctl.Config)

	raft   *raftctl.Node
	gossip *gossip.Gossip
	// ctrl makes the cluster-control decisions (bootstrap, reconcile,
	// failures, voters, leave safety, leases, forgetting, lost copies)
	// over raft, gossip and the monitor; the agent's loops and handlers
	// call it.
	ctrl *control.Controller
	// startKeys is the gossip keyring read at start, and liveKeys the
	// gossip instance once it runs (its keyring follows rotations): the
	// raft port's cluster key derives from them (clusterSecrets).
	startKeys [][]byte
	liveKeys  atomic.Pointer[gossip.Gossip]
	httpLn    net.Listener
	httpSrv   *http.Server
	// probeLn and probeSrv are the -health-addr listener, if any.
	probeLn  net.Listener
	probeSrv *http.Server
	metrics  *agentMetrics
	// apiToken is Config.APIToken, or the first line of APITokenFile.
	apiToken string
	// handler is the HTTP API (Handler); it answers 503 until Start has
	// run.
	handler http.Handler
	started atomic.Bool

	// monitor confirms gossip's suspicions with probes (every agent runs
	// one; only the leader acts on it). appChecker probes the app next to
	// this agent; nil without -app-health-url.
	monitor         *health.Monitor
	appChecker      *health.AppChecker
	appUnhealthy    atomic.Bool
	electionTimeout time.Duration

	// quorumLost is set while this agent has seen no leader for longer
	// than the election timeout.
	quorumLost atomic.Bool
	// skew is how far this agent's wall clock is from the leader's.
	skew clockSkewState

	// leave tracks a graceful leave; leaveRequests carries API requests
	// for one to the process owner (cmdRun), which performs it and exits.
	leave leaveState
	// provision is what the leader's requests for hosts did (desired size).
	provision     provisionState
	leaveRequests chan bool
	// restart tracks a planned restart, and carries API requests for one
	// to the process owner (RestartRequests).
	restart restartState

	// deliverer delivers webhooks to the app (nil without -webhook-url);
	// acks is its record of what the app acknowledged; copies queues the
	// copies the app finished, to be committed through raft.
	deliverer *hooks.Deliverer
	acks      *hooks.AckStore
	copies    copyQueue
	// startIncarnation is the incarnation the app was last told about, as
	// saved in the data dir (read at start, see desiredLoop).
	startIncarnation uint64
	// holdingsMu serialises the app's holdings reports.
	holdingsMu sync.Mutex
	// appLoad is the app's last load report (load.go).
	appLoad appLoad

	// suspects are published in gossip metadata for the other agents.
	suspects suspects

	// ready is set once this agent's state has caught up with the cluster;
	// before that the partition table is not served.
	ready atomic.Bool

	// leaseTimings and lease are the primary leases (lease.go; the
	// leader's ledger is the controller's): their timings and this
	// agent's own grant.
	leaseTimings control.LeaseTimings
	lease        heldLease
	// leaseRelays chooses the server that relays this agent's renewals
	// (leaserelay.go).
	leaseRelays leaseRelays

	// watchHeartbeat is how often a watch stream says it is alive when
	// nothing changes (watch.go; tests shorten it).
	watchHeartbeat time.Duration

	// peersDirty wakes peersLoop after a gossip event; buffered 1.
	peersDirty chan struct{}

	// kick wakes the leader's reconcile loop early (gossip event, health
	// verdict, app health change); buffered 1, coalescing. State changes
	// wake it through raft's own notifications.
	kick chan struct{}

	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once
	stopErr  error
}

// New checks cfg and returns an agent that has not started anything: no
// file is written, no port bound. logger may be nil (no logs).
func New(cfg Config, logger hclog.Logger) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	token, err := cfg.apiToken()
	if err != nil {
		return nil, err
	}
	if cfg.ZoneFile != "" {
		if cfg.Zone, err = cfg.zoneFromFile(); err != nil {
			return nil, err
		}
	}
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &Agent{
		cfg:   cfg,
		log:   logger.With("node", cfg.NodeID),
		kick:  make(chan struct{}, 1),
		clock: control.NewSystemClock(),
		skew:  clockSkewState{warnedAt: -1},

		peersDirty:    make(chan struct{}, 1),
		leaveRequests: make(chan bool, 1),
		restart:       restartState{requests: make(chan struct{}, 1)},
		copies:        copyQueue{wake: make(chan struct{}, 1)},
		suspects:      suspects{set: map[string]bool{}, dirty: make(chan struct{}, 1)},
		ctx:           ctx,
		cancel:        cancel,
		metrics:       newAgentMetrics(cfg.NodeID, cfg.Zone),
		apiToken:      token,

		watchHeartbeat: defaultWatchHeartbeat,
	}
	a.metrics.registry.MustRegister(stateCollector{a})
	routes := a.routes()
	a.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.started.Load() {
			writeError(w, http.StatusServiceUnavailable, "the agent has not started yet")
			return
		}
		routes.ServeHTTP(w, r)
	})
	return a, nil
}

// Start opens the data dir, binds the HTTP API, raft and gossip, joins the
// cluster and starts the loops. On error everything started is stopped.
func (a *Agent) Start() (err error) {
	defer func() {
		if err != nil {
			_ = a.Shutdown()
			if a.createdDataDir {
				_ = os.RemoveAll(a.cfg.DataDir)
			}
		}
	}()
	// The files the settings name are read before anything is written, so
	// that a bad one leaves no data dir bound to the node ID behind.
	var raftTLS *tls.Config
	if a.cfg.TLSCert != "" {
		if raftTLS, err = LoadTLSConfig(a.cfg.TLSCert, a.cfg.TLSKey, a.cfg.TLSCA); err != nil {
			return configErrorf("-tls-cert: %v", err)
		}
		if a.cfg.TLSServerName != "" {
			if err := verifyServerName(raftTLS, a.cfg.TLSServerName); err != nil {
				return configErrorf("-tls-server-name: %v", err)
			}
			raftTLS.ServerName = a.cfg.TLSServerName
		}
	}
	if err := a.loadIdentity(); err != nil {
		return err
	}
	a.httpLn, err = net.Listen("tcp", a.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("-http-addr %s: %w", a.cfg.HTTPAddr, err)
	}
	if a.cfg.HealthAddr != "" {
		if a.probeLn, err = net.Listen("tcp", a.cfg.HealthAddr); err != nil {
			return fmt.Errorf("-health-addr %s: %w", a.cfg.HealthAddr, err)
		}
	}

	gc := gossip.DefaultConfig()
	if err := a.gossipKeyring(gc); err != nil {
		return err
	}
	a.startKeys = gc.Keyring

	rc := raftctl.DefaultConfig()
	rc.ServerID = a.raftID
	rc.ClusterSecrets = a.clusterSecrets
	rc.BindAddr = net.JoinHostPort(a.cfg.Bind, strconv.Itoa(a.cfg.RaftPort))
	rc.DataDir = a.cfg.DataDir
	rc.Logger = a.log.Named("raft")
	timings, err := a.timings()
	if err != nil {
		return err
	}
	timings.Raft.Apply(rc)
	hc, err := a.healthConfig()
	if err != nil {
		return err
	}
	a.leaseTimings = control.LeaseTimingsFor(hc)
	rc.LeaseRelay = raftctl.LeaseRelay{Wait: a.leaseTimings.RelayWait, Timeout: a.leaseTimings.RelayTimeout}
	// A live agent's renewals reach the leader at most a renewal period
	// and a relay's wait apart.
	rc.RenewalSilence = a.leaseTimings.Renew + a.leaseTimings.RelayWait
	if a.raftConfigHook != nil {
		a.raftConfigHook(rc)
	}
	rc.TLS = raftTLS
	a.electionTimeout = rc.ElectionTimeout
	a.raft, err = raftctl.New(rc)
	if err != nil {
		return fmt.Errorf("raft: %w", err)
	}
	if err := a.checkBootstrapFlags(); err != nil {
		return err
	}

	if a.clusterSecrets() == nil {
		a.log.Warn("the raft port is not authenticated (-insecure and no -api-token): anyone who reaches it can forward writes and speak raft")
	}

	a.monitor = health.NewMonitor(hc, peerProber{a: a}, health.SystemClock())
	a.ctrl = control.New(a.controlConfig(hc), control.Deps{
		Raft: a.raft, Members: gossipView{a}, Detector: a.monitor,
		Clock: a.clock, Logger: a.log, Observer: a.metrics, Restarter: memberRestarter{a},
	})
	a.raft.SetLeaseGranter(a.ctrl.GrantLease)
	a.raft.SetLoadSource(a.loadSource)
	a.metrics.registry.MustRegister(loadCollector{a})

	gc.NodeID = a.cfg.NodeID
	gc.BindAddr = a.cfg.Bind
	gc.BindPort = a.cfg.GossipPort
	gc.Profile = timings.Gossip
	gc.Logger = a.log.Named("gossip")
	if a.cfg.WebhookURL != "" {
		// Before the first metadata: a node.rejoin that a crash left
		// unacknowledged makes this process announce its app not ready
		// from its first word.
		if err := a.loadPendingRejoin(); err != nil {
			return err
		}
	}
	gc.Meta = a.localMeta()
	gc.ReconnectSeeds = a.reconnectSeeds
	a.gossip, err = gossip.New(gc)
	if err != nil {
		return fmt.Errorf("gossip: %w", err)
	}
	a.liveKeys.Store(a.gossip)
	a.raft.SetUnreachableHandler(a.observeUnreachable)
	if a.cfg.AppHealthURL != "" {
		ac := health.AppConfigFrom(hc)
		a.appChecker = health.NewAppChecker(ac, health.HTTPProbe(a.cfg.AppHealthURL, ac.Timeout), health.SystemClock())
		a.goLoop("app-health", a.appHealthLoop)
	}

	if a.cfg.WebhookURL != "" {
		if err := a.startWebhooks(); err != nil {
			return err
		}
	}

	a.started.Store(true)
	a.httpSrv = &http.Server{
		Handler:           a.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          a.log.Named("http").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	a.goLoop("http", func() {
		if err := a.httpSrv.Serve(a.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("http server stopped", "error", err)
		}
	})
	a.startProbeServer()
	a.goLoop("gossip-events", a.gossipEventLoop)
	a.goLoop("leader", a.leaderLoop)
	a.goLoop("readiness", a.readinessLoop)
	a.goLoop("verdicts", a.verdictLoop)
	a.goLoop("quorum", a.quorumLoop)
	a.goLoop("splits", a.splitLoop)
	a.goLoop("tags", a.tagsLoop)
	a.goLoop("suspects", a.suspectPublisher)
	a.goLoop("departed", func() { a.every(departedSweepInterval, a.forgetDepartedPeers) })
	a.goLoop("lease", a.leaseLoop)
	a.goLoop("lease-verify", a.leaseVerifyLoop)
	a.goLoop("ages", a.watchAges)
	a.goLoop("replacement", a.watchReplacement)
	if a.cfg.ProvisionURL != "" {
		a.goLoop("provision", a.provisionLoop)
	}
	a.goLoop("clock-skew", a.clockSkewLoop)
	a.goLoop("restart-return", a.returnLoop)

	a.log.Info("agent started", "version", Version, "raft_id", a.raftID,
		"gossip", a.gossip.Addr(), "raft", a.raft.Addr(), "http", a.httpLn.Addr().String(),
		"has_state", a.raft.HasState())

	if err := a.joinAtStart(); err != nil {
		return err
	}
	a.goLoop("gossip-peers", a.peersLoop)
	if a.cfg.BootstrapExpect > 0 && !a.raft.HasState() {
		a.goLoop("bootstrap", a.bootstrapLoop)
	}
	return nil
}

// WaitReady waits until the agent serves a current partition table: the
// cluster is bootstrapped, this agent has caught up with it and the leader
// answers it (Status().Ready). It returns ctx's error if that does not
// happen before ctx ends.
func (a *Agent) WaitReady(ctx context.Context) error {
	if !a.started.Load() {
		return errors.New("agent not started")
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if st := a.Status(); st.Ready && st.Bootstrapped && st.Partitions > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			_, why := a.readiness()
			return fmt.Errorf("agent not ready (%s): %w", why, ctx.Err())
		case <-tick.C:
		}
	}
}

// every runs fn every interval until the agent shuts down; it is the body
// of the agent's periodic loops (run under goLoop).
func (a *Agent) every(interval time.Duration, fn func()) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-ticker.C:
		}
		fn()
	}
}

// onChange runs fn after every change of the replicated state, and at
// least every interval, until the agent shuts down; it is the body of the
// loops that follow the state (run under goLoop).
func (a *Agent) onChange(interval time.Duration, fn func()) {
	changes, unsubscribe := a.raft.Subscribe()
	defer unsubscribe()
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-changes:
		case <-ticker.C:
		}
		fn()
	}
}

// goLoop runs fn in a goroutine owned by the agent: Shutdown waits for it.
func (a *Agent) goLoop(name string, fn func()) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		fn()
		a.log.Trace("loop stopped", "loop", name)
	}()
}

// Shutdown stops the loops, the HTTP server, gossip and raft, in that order.
// It does not leave the cluster (see Leave).
func (a *Agent) Shutdown() error {
	a.stopOnce.Do(func() {
		a.cancel()
		var errs []error
		if a.httpSrv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if err := a.httpSrv.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("http: %w", err))
			}
			cancel()
		} else if a.httpLn != nil {
			_ = a.httpLn.Close()
		}
		if err := a.stopProbeServer(); err != nil {
			errs = append(errs, fmt.Errorf("health listener: %w", err))
		}
		if a.gossip != nil {
			if err := a.gossip.Shutdown(); err != nil {
				errs = append(errs, fmt.Errorf("gossip: %w", err))
			}
		}
		if a.appChecker != nil {
			a.appChecker.Close()
		}
		if a.monitor != nil {
			a.monitor.Close()
		}
		a.wg.Wait()
		if a.deliverer != nil {
			if err := a.deliverer.Close(); err != nil {
				errs = append(errs, fmt.Errorf("webhooks: %w", err))
			}
		}
		if a.raft != nil {
			if err := a.raft.Shutdown(); err != nil {
				errs = append(errs, fmt.Errorf("raft: %w", err))
			}
		}
		a.stopErr = errors.Join(errs...)
		a.log.Info("agent stopped")
	})
	return a.stopErr
}

// HTTPAddr is the address the API listens on (useful when the port was 0).
// Valid after Start.
func (a *Agent) HTTPAddr() string { return a.httpLn.Addr().String() }

// GossipAddr is the address gossip listens on, for other agents' Join.
// Valid after Start.
func (a *Agent) GossipAddr() string { return a.gossip.Addr() }

// Handler is the agent's HTTP API (the endpoints of README.md), which the
// agent also serves on Config.HTTPAddr: an app that embeds the agent may
// mount it in its own server too. It answers 503 until Start has run.
func (a *Agent) Handler() http.Handler { return a.handler }

// loadIdentity prepares the data dir and this incarnation's raft server ID.
// The data dir remembers the node ID it belongs to, so that starting node b
// on node a's data by mistake fails instead of corrupting the cluster. The
// raft server ID is the node ID plus a random suffix made when the data dir
// is new: a node that comes back with an empty data dir is a new raft server
// under the same logical ID, which is what raft's maintainers advise.
func (a *Agent) loadIdentity() error {
	if _, err := os.Stat(a.cfg.DataDir); errors.Is(err, os.ErrNotExist) {
		a.createdDataDir = true
	}
	if err := os.MkdirAll(a.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("-data-dir: %w", err)
	}
	if err := checkDataDirTrust(a.cfg.DataDir); err != nil {
		return err
	}
	idPath := filepath.Join(a.cfg.DataDir, "node-id")
	if b, err := os.ReadFile(idPath); err == nil {
		got := strings.TrimSpace(string(b))
		if (Config{NodeID: got}).validNodeID() != nil {
			return fmt.Errorf("-data-dir: %s holds %s, which is not a node ID (damaged?); it names the node this data dir belongs to: write %q in it if this is that node's data dir", idPath, snippet(b), a.cfg.NodeID)
		}
		if got != a.cfg.NodeID {
			return configErrorf("-data-dir: %s belongs to node %q (%s), not %q", a.cfg.DataDir, got, idPath, a.cfg.NodeID)
		}
	} else if errors.Is(err, os.ErrNotExist) {
		if err := raftctl.WriteFileDurably(idPath, []byte(a.cfg.NodeID+"\n")); err != nil {
			return fmt.Errorf("-data-dir: %w", err)
		}
	} else {
		return fmt.Errorf("-data-dir: %w", err)
	}
	ridPath := filepath.Join(a.cfg.DataDir, "raft-id")
	if b, err := os.ReadFile(ridPath); err == nil {
		a.raftID = strings.TrimSpace(string(b))
		if !isRaftIDOf(a.raftID, a.cfg.NodeID) {
			return fmt.Errorf("-data-dir: %s holds %s, which is not a raft ID of node %q (the node ID, a dash, 8 hex digits); put back the raft ID this data dir's raft state belongs to (server_id in %s), or move the data dir aside to rejoin as a new server",
				ridPath, snippet(b), a.cfg.NodeID, filepath.Join(a.cfg.DataDir, "raft-applied.json"))
		}
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("-data-dir: %w", err)
	}
	if _, err := os.Stat(filepath.Join(a.cfg.DataDir, "raft")); err == nil {
		return fmt.Errorf("-data-dir: %s has raft state but no raft-id file; restore the file or start with an empty data dir", a.cfg.DataDir)
	}
	var suffix [4]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return err
	}
	a.raftID = a.cfg.NodeID + "-" + hex.EncodeToString(suffix[:])
	return raftctl.WriteFileDurably(ridPath, []byte(a.raftID+"\n"))
}

// raftIDSuffixLen is the length of the random hex suffix of a raft ID.
const raftIDSuffixLen = 8

// isRaftIDOf reports whether id is a raft ID loadIdentity makes for node:
// the node ID, a dash and 8 hex digits.
func isRaftIDOf(id, node string) bool {
	suffix, ok := strings.CutPrefix(id, node+"-")
	if !ok || len(suffix) != raftIDSuffixLen {
		return false
	}
	_, err := hex.DecodeString(suffix)
	return err == nil
}

// snippet shows the start of a state file's content in an error, quoted
// and bounded, however binary it is.
func snippet(b []byte) string {
	const max = 40
	s := strings.TrimSpace(string(b))
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}

// checkDataDirTrust refuses a data dir that someone else could have
// tampered with: one owned by another user, or writable by everyone. A dir
// readable by group or others is tightened to 0700, since it holds the raft
// log and secrets.
func checkDataDirTrust(dir string) error {
	info, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("-data-dir: %w", err)
	}
	if !info.IsDir() {
		return configErrorf("-data-dir: %s is not a directory", dir)
	}
	if info.Mode().Perm()&0o002 != 0 {
		return configErrorf("-data-dir: %s is writable by everyone (mode %04o); refusing to trust it", dir, info.Mode().Perm())
	}
	if st, ok := info.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
		return configErrorf("-data-dir: %s is owned by uid %d, not by this user (uid %d); refusing to trust it", dir, st.Uid, os.Getuid())
	}
	if info.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("-data-dir: %w", err)
		}
	}
	return nil
}

func (a *Agent) localMeta() gossip.Meta {
	return gossip.Meta{
		RaftID:   a.raftID,
		RaftAddr: a.raft.Addr(),
		APIAddr:  a.httpLn.Addr().String(),
		AppAddr:  a.cfg.AppAddr,
		Zone:     a.cfg.Zone,
		Version:  Version,
		Weight:   a.cfg.Weight,

		AppUnhealthy: a.appUnhealthy.Load() || a.restart.catchingUp.Load(),
		Suspects:     a.currentSuspects(),
		Leaving:      a.LeaveProgress().Phase != LeaveNone && a.LeaveProgress().Phase != LeaveFailed,
		Returning:    a.restart.returning.Load(),
	}
}

// gossipKeyring sets up gossip encryption: the keyring file in the data
// dir when there is one (it may have been rotated since -encrypt was
// first given), otherwise the -encrypt key, saved as the keyring file.
func (a *Agent) gossipKeyring(gc *gossip.Config) error {
	if a.cfg.Insecure {
		a.log.Warn("gossip is not encrypted (-insecure): anyone who reaches the gossip port can join")
		return nil
	}
	path := filepath.Join(a.cfg.DataDir, keyringFileName)
	gc.KeyringFile = path
	keys, err := gossip.LoadKeyringFile(path)
	switch {
	case err == nil:
		if a.cfg.Encrypt != "" {
			if k, perr := gossip.ParseKey(a.cfg.Encrypt); perr == nil && !bytes.Equal(k, keys[0]) {
				a.log.Warn("-encrypt differs from the primary key of the keyring in the data dir; using the keyring", "file", path)
			}
		}
		gc.Keyring = keys
		return nil
	case errors.Is(err, os.ErrNotExist):
		key, err := gossip.ParseKey(a.cfg.Encrypt)
		if err != nil {
			return configErrorf("-encrypt: %v", err)
		}
		if err := gossip.SaveKeyringFile(path, [][]byte{key}); err != nil {
			return fmt.Errorf("saving the gossip keyring: %w", err)
		}
		gc.Keyring = [][]byte{key}
		return nil
	default:
		return fmt.Errorf("gossip keyring: %w", err)
	}
}

// timings are the profile's timings for gossip, health and raft.
func (a *Agent) timings() (control.Timings, error) {
	p, err := control.ParseProfile(a.cfg.Profile)
	if err != nil {
		return control.Timings{}, configErrorf("-profile: %v", err)
	}
	return p.Timings()
}

// healthConfig is the failure detector's configuration: the profile's
// timings with the flags' overrides.
func (a *Agent) healthConfig() (health.Config, error) {
	timings, err := a.timings()
	if err != nil {
		return health.Config{}, err
	}
	hc := timings.Health
	hc.FailureThreshold = a.cfg.FailureThreshold
	if a.cfg.ProbeInterval > 0 {
		hc.ProbeInterval = a.cfg.ProbeInterval.D()
		if hc.ProbeTimeout >= hc.ProbeInterval {
			hc.ProbeTimeout = hc.ProbeInterval * 3 / 4
		}
	}
	hc.MaxFailed = a.cfg.MaxFailed
	if err := hc.Validate(); err != nil {
		return hc, configErrorf("-probe-interval: %v", err)
	}
	return hc, nil
}

// controlConfig is the controller's share of the configuration.
func (a *Agent) controlConfig(hc health.Config) control.Config {
	return control.Config{
		NodeID: a.cfg.NodeID, RaftID: a.raftID,
		BootstrapExpect: a.cfg.BootstrapExpect, Partitions: a.cfg.bootstrapPartitions(), ReplicationFactor: a.cfg.bootstrapReplicationFactor(),
		Voters: a.cfg.Voters, MaxFailed: a.cfg.MaxFailed, ProbeInterval: hc.ProbeInterval,
		ReplaceDelay: a.cfg.ReplaceDelay.D(), MigrationTimeout: a.cfg.MigrationTimeout.D(),
		MaxMigrationsPerNode: a.cfg.MaxMigrationsPerNode, MaxMigrations: a.cfg.MaxMigrations,
		InstantCopies: a.cfg.WebhookURL == "", ReapAfter: a.cfg.ReapAfter.D(),
		Leases: a.leaseTimings,
		Load:   a.loadPolicy(),
	}
}

// gossipView is gossip's membership for the controller. It reads
// a.gossip when called: the controller is made before gossip starts (the
// reconnect seeds need it) and calls it only from the loops, which start
// after.
type gossipView struct{ a *Agent }

func (g gossipView) Members() []gossip.Node               { return g.a.gossip.Members() }
func (g gossipView) Member(id string) (gossip.Node, bool) { return g.a.gossip.Member(id) }

// appHealthLoop publishes the app's health in this node's gossip metadata;
// the leader records it in the cluster state, and the planner moves
// primaries away from a node whose app is unhealthy.
func (a *Agent) appHealthLoop() {
	for {
		select {
		case <-a.ctx.Done():
			return
		case t, ok := <-a.appChecker.Transitions():
			if !ok {
				return
			}
			a.appUnhealthy.Store(!t.Healthy)
			if t.Healthy {
				a.log.Info("app healthy again", "reason", t.Reason)
				a.metrics.appHealthy.Set(1)
			} else {
				a.log.Warn("app unhealthy", "reason", t.Reason)
				a.metrics.appHealthy.Set(0)
			}
			if err := a.gossip.UpdateMeta(a.localMeta()); err != nil {
				a.log.Warn("publishing app health in gossip", "error", err)
			}
			a.kickLeader()
		}
	}
}

// apply commits cmd through raft (see control.Controller.Apply).
func (a *Agent) apply(cmd failover.Command) (failover.Result, error) {
	return a.ctrl.Apply(a.ctx, cmd)
}

// kickLeader wakes the reconcile loop without blocking.
func (a *Agent) kickLeader() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// gossipEventLoop logs gossip events, counts them and wakes the leader.
func (a *Agent) gossipEventLoop() {
	for {
		select {
		case <-a.ctx.Done():
			return
		case ev, ok := <-a.gossip.Events():
			if !ok {
				return
			}
			a.metrics.gossipEvents.WithLabelValues(ev.Type.String()).Inc()
			a.observeGossip(ev)
			a.log.Debug("gossip event", "type", ev.Type.String(), "peer", ev.Node.ID, "addr", ev.Node.Addr)
			a.kickLeader()
			a.peersChanged()
		}
	}
}

// readinessLoop waits until this agent has caught up with the cluster (a
// leader is known and the local state machine has applied what it had
// committed), then serves the partition table.
func (a *Agent) readinessLoop() {
	for a.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(a.ctx, 10*time.Second)
		err := a.raft.WaitCaughtUp(ctx)
		cancel()
		if err == nil {
			a.ready.Store(true)
			a.log.Info("state caught up; serving")
			return
		}
		if a.ctx.Err() != nil {
			return
		}
		a.log.Debug("not caught up yet", "error", err)
	}
}
