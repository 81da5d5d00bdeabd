package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/steward-dev/steward/hooks"
)

// Config configures one kvapp node.
type Config struct {
	// Addr is this app's data address (host:port), the one its agent
	// advertises as -app-addr. Peers that copy a partition from this node
	// are told to forward to the address they give; this one is given to
	// the nodes this node copies from.
	Addr string
	// AgentURL is the base URL of the co-located agent's HTTP API, e.g.
	// http://127.0.0.1:8500; the partition table, the members and the
	// migration acknowledgements go through it.
	AgentURL string
	// WebhookSecret is the decoded shared webhook secret (hooks.ParseSecret).
	WebhookSecret []byte
	// APIToken is the agent's API token, sent when acknowledging a copy;
	// empty when the agent has none.
	APIToken string
	// RetryBudget bounds how long a client request keeps retrying while
	// the cluster changes under it (primary unknown or moved, a copy
	// unreachable): long enough to ride out a failover, short enough that
	// a client is not left hanging.
	RetryBudget time.Duration
	// PeerTimeout bounds one request to a peer or to the agent.
	PeerTimeout time.Duration
	// DataDir holds the app's data (kvapp.db, bbolt). An app restarted on
	// the same dir has its data back; an empty dir is an app that holds
	// nothing, which it tells its agent (the holdings report).
	DataDir string
	// TableMaxAge is how long a fetched partition table is used before it
	// is fetched again even without a webhook or a refusal, while the
	// watch stream of the agent gives no current table (the agent is
	// out of contact, or restarting). With the stream, a primary learns
	// new migration targets as they are committed.
	TableMaxAge time.Duration
	// CopyAttempts is how many times a copy is tried before the migration
	// is reported failed to the agent.
	CopyAttempts int
	// CopyTargetGrace is how long after its registration a copy target
	// whose sends fail is still retried while the agent's table here does
	// not list it (the target's agent may be ahead of this one), and how
	// long a replica forwards to a target its table lists as a copy.
	CopyTargetGrace time.Duration
	// LoadInterval is how often the app reports its load and disk to its
	// agent (load.go).
	LoadInterval time.Duration
	// DiskCapacity, when positive, simulates a disk of this many bytes in
	// the load reports (used: the data file plus DiskReserved), instead of
	// the data dir's file system, so that a full disk can be shown.
	DiskCapacity int64
	// DiskReserved is what the simulated disk holds besides the data.
	DiskReserved int64
	// Logger receives the app's logs; nil means slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the defaults; Addr, AgentURL and WebhookSecret
// must still be set.
func DefaultConfig() Config {
	return Config{
		RetryBudget:     10 * time.Second,
		PeerTimeout:     3 * time.Second,
		TableMaxAge:     time.Second,
		CopyAttempts:    5,
		CopyTargetGrace: 30 * time.Second,
		LoadInterval:    5 * time.Second,
	}
}

// outcomeHeader marks a 503 answer to a write whose outcome is unknown
// (errOutcomeUnknown): the client must not assume it failed.
const outcomeHeader = "Kvapp-Outcome"

// isDialError reports whether err happened before a request was sent:
// nothing reached the peer.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// forwardedHeader marks a client request already forwarded once, so that
// the receiver answers it itself instead of forwarding again.
const forwardedHeader = "Kvapp-Forwarded"

// maxBatchBytes bounds a replicated batch (a write, or a chunk of a new
// primary's sync, see syncChunkBytes).
const maxBatchBytes = 4 * maxValueBytes

// server is one kvapp node.
type server struct {
	cfg    Config
	log    *slog.Logger
	store  *store
	agent  *agentClient
	client *http.Client
	tr     *http.Transport
	hooks  *hooks.Handler

	// ctx ends at Close; background copies run under it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// requests counts the requests served per partition, for the load
	// report.
	requests requestCounter
	// diskCapacity and diskReserved are the simulated disk of the load
	// reports (Config.DiskCapacity; POST /internal/disk changes them).
	diskCapacity, diskReserved atomic.Int64

	// reported is set once the agent has taken this app's holdings
	// report: until then webhooks are refused and the app is not healthy.
	reported atomic.Bool

	// lease says which partitions this node may serve as primary now
	// (hooks.LeaseKeeper, polling the agent's GET /v1/lease).
	lease *hooks.LeaseKeeper

	copyMu sync.Mutex
	// copies are the background copies by partition.
	copies map[int]*copyJob
	// copied are migrations whose copy finished here, answered 204 when
	// their assign is delivered again.
	copied map[string]bool
}

// newServer opens the data dir and builds a node. It starts reporting
// what the data dir holds to the agent, and bringing the copies of the
// partitions it leads up to date; Close stops both.
func newServer(cfg Config) (*server, error) {
	def := DefaultConfig()
	if cfg.RetryBudget <= 0 {
		cfg.RetryBudget = def.RetryBudget
	}
	if cfg.PeerTimeout <= 0 {
		cfg.PeerTimeout = def.PeerTimeout
	}
	if cfg.TableMaxAge <= 0 {
		cfg.TableMaxAge = def.TableMaxAge
	}
	if cfg.CopyAttempts <= 0 {
		cfg.CopyAttempts = def.CopyAttempts
	}
	if cfg.CopyTargetGrace <= 0 {
		cfg.CopyTargetGrace = def.CopyTargetGrace
	}
	if cfg.LoadInterval <= 0 {
		cfg.LoadInterval = def.LoadInterval
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: cfg.PeerTimeout}).DialContext,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     30 * time.Second,
	}
	client := &http.Client{
		Transport: tr,
		// Peers and the agent never redirect; following one would send a
		// write somewhere nobody chose.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	lease, err := hooks.NewLeaseKeeper(hooks.LeaseKeeperConfig{AgentURL: cfg.AgentURL, Client: client})
	if err != nil {
		return nil, err
	}
	agent, err := newAgentClient(cfg.AgentURL, cfg.APIToken, client, cfg.TableMaxAge)
	if err != nil {
		return nil, err
	}
	st, err := openStore(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{
		cfg: cfg, log: logger, store: st, client: client, tr: tr, lease: lease,
		agent:  agent,
		ctx:    ctx,
		cancel: cancel,
		copies: map[int]*copyJob{},
		copied: map[string]bool{},
	}
	s.hooks = &hooks.Handler{
		Secret:    cfg.WebhookSecret,
		OnAssign:  s.onAssign,
		OnPromote: s.onPromote,
		OnDemote:  s.onDemote,
		OnRelease: s.onRelease,
		OnSplit:   s.onSplit,
		OnRejoin:  s.onRejoin,
		OnQuorum:  s.onQuorum,
	}
	s.diskCapacity.Store(cfg.DiskCapacity)
	s.diskReserved.Store(cfg.DiskReserved)
	s.lease.Start()
	s.goBackground(func() { s.agent.runRouter(s.ctx) })
	s.goBackground(s.reportHoldings)
	s.goBackground(s.publishLoad)
	for _, id := range s.store.primariesToSync() {
		s.startSync(id)
	}
	return s, nil
}

// goBackground runs fn on a goroutine Close waits for.
func (s *server) goBackground(fn func()) {
	s.copyMu.Lock()
	defer s.copyMu.Unlock()
	if s.ctx.Err() != nil {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
}

// Handler is the node's whole HTTP surface.
func (s *server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.handleHealth)
	mux.HandleFunc("PUT /kv/{key}", s.handlePut)
	mux.HandleFunc("GET /kv/{key}", s.handleGet)
	mux.HandleFunc("POST /steward/events", func(w http.ResponseWriter, r *http.Request) {
		if !s.reported.Load() {
			// What this app holds must reach the agent before it acts on
			// any event: the agent delivers it again.
			writeJSON(w, http.StatusServiceUnavailable, apiError{Error: "kvapp: reporting what this app holds to its agent first"})
			return
		}
		s.hooks.ServeHTTP(w, r)
	})
	mux.HandleFunc("POST /internal/replicate", s.handleReplicate)
	mux.HandleFunc("GET /internal/partitions/{p}", s.handleDump)
	mux.HandleFunc("POST /internal/disk", s.handleSimulatedDisk)
	mux.HandleFunc("GET /internal/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"node_id": s.agent.self(), "partitions": s.store.status()})
	})
	return mux
}

// handleHealth answers 200 once the holdings report is through and while
// the data dir takes writes, 503 otherwise.
func (s *server) handleHealth(w http.ResponseWriter, r *http.Request) {
	switch err := s.store.disk.healthy(); {
	case err != nil:
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "disk failed", "error": err.Error(), "node_id": s.agent.self()})
	case !s.reported.Load():
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "starting: reporting holdings", "node_id": s.agent.self()})
	default:
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "node_id": s.agent.self()})
	}
}

// Close stops the background work, waits for it and closes the data dir;
// call it after the HTTP server has shut down. It is safe to call twice.
func (s *server) Close() {
	// Under copyMu, so that no goroutine starts (wg.Add) after Wait begins.
	s.copyMu.Lock()
	s.cancel()
	s.copyMu.Unlock()
	s.wg.Wait()
	s.lease.Close()
	s.tr.CloseIdleConnections()
	if err := s.store.close(); err != nil {
		s.log.Error("closing the data dir", "err", err)
	}
}

type apiError struct {
	Error   string `json:"error"`
	Primary string `json:"primary,omitempty"`
	Epoch   uint64 `json:"epoch,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// maxValueBytes bounds a value; this is an example store, not a blob store.
const maxValueBytes = 1 << 20

// clientOp is one client request, run on the key's primary.
type clientOp struct {
	method string
	key    string
	value  []byte
}

func (s *server) handlePut(w http.ResponseWriter, r *http.Request) {
	value, err := io.ReadAll(io.LimitReader(r.Body, maxValueBytes+1))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{Error: err.Error()})
		return
	}
	if len(value) > maxValueBytes {
		writeJSON(w, http.StatusRequestEntityTooLarge, apiError{Error: "value over 1 MiB"})
		return
	}
	s.serveClient(w, r, clientOp{method: http.MethodPut, key: r.PathValue("key"), value: value})
}

func (s *server) handleGet(w http.ResponseWriter, r *http.Request) {
	s.serveClient(w, r, clientOp{method: http.MethodGet, key: r.PathValue("key")})
}

// opResult is what a client gets back.
type opResult struct {
	status int
	body   []byte
}

// serveClient runs op on the key's primary: here when this node is the
// primary, else forwarded. A forwarded request is answered here without
// forwarding again (409 with the primary when this node is not it), and
// the forwarding node retries with a fresh table until RetryBudget runs
// out, so that a write during a failover lands once the new primary has
// been promoted.
func (s *server) serveClient(w http.ResponseWriter, r *http.Request, op clientOp) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RetryBudget)
	defer cancel()
	if r.Header.Get(forwardedHeader) != "" {
		res, err := s.runLocal(ctx, op)
		if err != nil {
			s.writeOpError(w, ctx, op, err)
			return
		}
		writeResult(w, res)
		return
	}
	var lastErr error
	for attempt := 0; ; attempt++ {
		res, err := s.tryOnce(ctx, op, attempt > 0)
		if err == nil {
			writeResult(w, res)
			return
		}
		if errors.Is(err, errOutcomeUnknown) {
			// Trying again would apply the write a second time, perhaps
			// after another client's: the client must decide.
			w.Header().Set(outcomeHeader, "unknown")
			writeJSON(w, http.StatusServiceUnavailable, apiError{Error: err.Error()})
			return
		}
		lastErr = err
		if !sleepCtx(ctx, backoff(attempt)) {
			break
		}
	}
	writeJSON(w, http.StatusServiceUnavailable, apiError{Error: fmt.Sprintf("kvapp: gave up after %s: %v", s.cfg.RetryBudget, lastErr)})
}

func writeResult(w http.ResponseWriter, res opResult) {
	if res.status == http.StatusOK {
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	w.WriteHeader(res.status)
	w.Write(res.body)
}

func (s *server) writeOpError(w http.ResponseWriter, ctx context.Context, op clientOp, err error) {
	if errors.Is(err, errOutcomeUnknown) {
		w.Header().Set(outcomeHeader, "unknown")
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: err.Error()})
		return
	}
	if errors.Is(err, errNotPrimary) || errors.Is(err, errFenced) || errors.Is(err, errSyncing) || errors.Is(err, errSplitting) || errors.Is(err, hooks.ErrNoLease) {
		e := apiError{Error: err.Error()}
		if v, verr := s.agent.get(ctx, false); verr == nil {
			e.Primary = v.partition(v.partitionFor(op.key)).Primary
		}
		writeJSON(w, http.StatusConflict, e)
		return
	}
	writeJSON(w, http.StatusServiceUnavailable, apiError{Error: err.Error()})
}

// tryOnce looks the primary up and runs op there once.
func (s *server) tryOnce(ctx context.Context, op clientOp, fresh bool) (opResult, error) {
	v, err := s.agent.get(ctx, fresh)
	if err != nil {
		return opResult{}, err
	}
	p := v.partition(v.partitionFor(op.key))
	switch {
	case p.Primary == "":
		return opResult{}, fmt.Errorf("kvapp: partition %d has no primary", p.ID)
	case p.Primary == s.agent.self():
		return s.runLocal(ctx, op)
	}
	addr := v.appAddr(p.Primary)
	if addr == "" {
		return opResult{}, fmt.Errorf("kvapp: no app address for %s", p.Primary)
	}
	return s.forward(ctx, addr, op)
}

func (s *server) runLocal(ctx context.Context, op clientOp) (opResult, error) {
	if op.method == http.MethodGet {
		return s.localGet(ctx, op.key)
	}
	if err := s.localPut(ctx, op.key, op.value); err != nil {
		return opResult{}, err
	}
	return opResult{status: http.StatusNoContent}, nil
}

func (s *server) forward(ctx context.Context, addr string, op clientOp) (opResult, error) {
	u := "http://" + addr + "/kv/" + url.PathEscape(op.key)
	var body io.Reader
	if op.method == http.MethodPut {
		body = bytes.NewReader(op.value)
	}
	req, err := http.NewRequestWithContext(ctx, op.method, u, body)
	if err != nil {
		return opResult{}, err
	}
	req.Header.Set(forwardedHeader, "1")
	resp, err := s.client.Do(req)
	if err != nil {
		if op.method == http.MethodPut && !isDialError(err) {
			// The primary may have applied it before the connection broke.
			return opResult{}, fmt.Errorf("%w: forwarding to %s: %w", errOutcomeUnknown, addr, err)
		}
		return opResult{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxValueBytes+1))
	if err != nil {
		if op.method == http.MethodPut {
			return opResult{}, fmt.Errorf("%w: reading the answer of %s: %w", errOutcomeUnknown, addr, err)
		}
		return opResult{}, err
	}
	switch resp.StatusCode {
	case http.StatusOK, http.StatusNoContent, http.StatusNotFound:
		return opResult{status: resp.StatusCode, body: b}, nil
	}
	err = fmt.Errorf("kvapp: primary at %s answered %s: %s", addr, resp.Status, bytes.TrimSpace(b))
	if resp.Header.Get(outcomeHeader) == "unknown" || (op.method == http.MethodPut && resp.StatusCode != http.StatusConflict) {
		// Only a refusal (409: not primary, fenced, no lease) says for
		// sure that the write was not made.
		return opResult{}, fmt.Errorf("%w: %w", errOutcomeUnknown, err)
	}
	return opResult{}, err
}

func (s *server) localGet(ctx context.Context, key string) (opResult, error) {
	v, err := s.agent.get(ctx, false)
	if err != nil {
		return opResult{}, err
	}
	id := v.partitionFor(key)
	value, ok, err := s.serveRead(id, key)
	if err != nil {
		return opResult{}, err
	}
	s.requests.add(id)
	if !ok {
		return opResult{status: http.StatusNotFound, body: []byte("not found\n")}, nil
	}
	return opResult{status: http.StatusOK, body: value}, nil
}

// serveRead is where this node, as a partition's primary, decides to
// answer a read: with the latest version of the key that every copy has.
func (s *server) serveRead(id int, key string) ([]byte, bool, error) {
	if err := s.lease.Check(id, s.store.epochOf(id)); err != nil {
		return nil, false, err
	}
	return s.store.read(id, key)
}

// localPut makes a write as primary and returns once it is on this node's
// disk and on every current copy: the replicas and migration targets of
// the agent's table, and the copy targets registered here. Until then
// reads do not see it.
func (s *server) localPut(ctx context.Context, key string, value []byte) error {
	v, err := s.agent.get(ctx, false)
	if err != nil {
		return err
	}
	id := v.partitionFor(key)
	if err := s.lease.Check(id, s.store.epochOf(id)); err != nil {
		return err
	}
	s.requests.add(id)
	w, err := s.store.primaryWrite(id, key, value)
	if err != nil {
		return err
	}
	// From here on the write may reach copies: a failure leaves its outcome
	// unknown, and it must not be made again behind the client's back.
	if w.persistFirst {
		if err := s.store.durable(ctx, w.disk); err != nil {
			return fmt.Errorf("%w: %w", errOutcomeUnknown, err)
		}
	}
	w.msg.From = s.agent.self()
	w.msg.Via = []string{w.msg.From}
	local := make(chan error, 1)
	go func() { local <- s.store.durable(ctx, w.disk) }()
	rerr := s.replicateAll(ctx, w.msg, s.writeDests(v, id, w.registered), true)
	if err := errors.Join(<-local, rerr); err != nil {
		return fmt.Errorf("%w: %w", errOutcomeUnknown, err)
	}
	return s.acknowledgeWrite(id, w.msg.Entries[0])
}

// acknowledgeWrite is where this node, as a partition's primary, settles a
// write every copy has: from now on reads see it, and the client is told
// it is done.
//
// Every copy has it, so reads may see it whatever happens next; but the
// client is told it is done only while this node still holds the lease: once
// the lease has run out a successor may be serving, and a write
// acknowledged now could be missing from its reads already made.
func (s *server) acknowledgeWrite(id int, e dumpEntry) error {
	s.store.confirm(id, e.Key, entry{value: e.Value, ver: e.Version})
	if err := s.lease.Check(id, s.store.epochOf(id)); err != nil {
		return fmt.Errorf("%w: %w", errOutcomeUnknown, err)
	}
	return nil
}

// writeDests are the copies a primary's write must reach: every copy
// target registered here, and every holder and migration target of the
// table but this node. A failed member stays listed as a replica until its
// replacement has copied; waiting for it would stall every write until
// then. It can never be promoted, and on its return it is told to rejoin
// (and re-syncs, see onRejoin).
//
// A registered target gets the write whatever v says of it, unless v is
// at least as new as the registration and shows it failed (isStale). v was
// read when the write began, and it may be older than the registration:
// the target's agent is ahead of this one's (its copy began from a change
// this table does not show yet, or it is back from a failure this table
// still shows). And v is not the only table in use: a write that began
// earlier read an older one, which may not list the target at all, so a
// registration dropped because a newer table lists it would be missing
// from that write. A registration ends only when the target answers that
// it holds nothing, when a table newer than it shows the target failed,
// or when a send to it fails and a fresh table says it is no copy
// (replicateTo); while the table lists it, the two ways to it are one
// destination (dedupe).
func (s *server) writeDests(v *clusterView, id int, registered []dest) []dest {
	pv := v.partition(id)
	var dests []dest
	for _, d := range registered {
		if isStale(v, d) {
			s.store.dropCopyTarget(id, d.node)
			continue
		}
		dests = append(dests, d)
	}
	for _, n := range pv.copies(s.agent.self()) {
		if !v.members[n].gone() {
			dests = append(dests, dest{node: n})
		}
	}
	return dedupe(dests)
}

// isStale reports whether v shows the registered target d failed (or
// left, or restarting) in a table at least as new as the one d copied
// under: d went away after it registered, so it holds this partition no
// more (on its return it re-syncs, and registers again, under a newer
// table). Its writes are then not sent at all: a node cut off would make
// every write wait for a send to time out (-peer-timeout) before a fresh
// table let it go. With an older v the failure may be one d is already
// back from, and it is sent to.
func isStale(v *clusterView, d dest) bool {
	if !d.registered || v.index < d.index {
		return false
	}
	m, ok := v.members[d.node]
	return ok && m.gone()
}

func dedupe(ds []dest) []dest {
	seen := map[string]int{}
	var out []dest
	for _, d := range ds {
		if i, ok := seen[d.node]; ok {
			// Listed by the table: it is a copy for sure.
			out[i].registered = out[i].registered && d.registered
			if out[i].addr == "" {
				out[i].addr = d.addr
			}
			continue
		}
		seen[d.node] = len(out)
		out = append(out, d)
	}
	return out
}

// replicateMsg is the body of POST /internal/replicate: writes of one
// partition from its primary (one client write, or a chunk of what a new
// primary holds, see sync.go).
type replicateMsg struct {
	Partition int         `json:"partition"`
	Epoch     uint64      `json:"epoch"`
	Entries   []dumpEntry `json:"entries"`
	// From is the sending node, so that a copy source does not forward a
	// write back to where it came from.
	From string `json:"from"`
	// Via are the nodes the write has passed through, the primary first
	// and From last: a copy source forwards it to none of them, so that
	// holders registered on one another never pass a write round a ring.
	Via []string `json:"via,omitempty"`
}

// replicateAll sends msg to every dest in parallel and waits for all.
// asPrimary: this node originated the write, so a fencing refusal may be
// answered by adopting a newer epoch the table gives this node.
func (s *server) replicateAll(ctx context.Context, msg replicateMsg, dests []dest, asPrimary bool) error {
	if len(dests) == 0 {
		return nil
	}
	errs := make([]error, len(dests))
	var wg sync.WaitGroup
	for i, d := range dests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.replicateTo(ctx, msg, d, asPrimary)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// fencedError carries a peer's refusal of an old epoch.
type fencedError struct{ epoch uint64 }

func (e *fencedError) Error() string {
	return fmt.Sprintf("kvapp: a copy holds epoch %d (fenced)", e.epoch)
}
func (e *fencedError) Unwrap() error { return errFenced }

// replicateTo retries one destination until it has the write, it is no
// longer a copy, or ctx ends.
func (s *server) replicateTo(ctx context.Context, msg replicateMsg, d dest, asPrimary bool) error {
	self := s.agent.self()
	for attempt := 0; ; attempt++ {
		err := s.sendReplicate(ctx, msg, d)
		if err == nil {
			return nil
		}
		if errors.Is(err, errNotHeld) && d.registered {
			// A copy target that holds nothing has given its copy up (its
			// app restarted, or the copy was cancelled): a copy under way
			// accepts writes.
			s.store.dropCopyTarget(msg.Partition, d.node)
			return nil
		}
		v, verr := s.agent.get(ctx, true)
		if verr != nil {
			err = errors.Join(err, verr)
		} else {
			p := v.partition(msg.Partition)
			var fe *fencedError
			if errors.As(err, &fe) {
				if !asPrimary {
					return err // the primary decides
				}
				if p.Primary != self {
					return fmt.Errorf("%w: %s is primary at epoch %d", errNotPrimary, p.Primary, p.Epoch)
				}
				if p.Epoch >= fe.epoch && s.store.adoptWriteEpoch(msg.Partition, p.Epoch) {
					msg.Epoch = p.Epoch
					continue
				}
			} else if errors.Is(err, errNotHeld) && !p.isHolder(d.node) {
				// A migration target that has not started its copy yet: its
				// copy will take a snapshot from a holder (which has every
				// write acknowledged before) and register there for the
				// writes after it.
				s.log.Debug("a migration target has not started copying yet", "partition", msg.Partition, "node", d.node)
				return nil
			} else if !s.stillCopy(v, msg.Partition, d) {
				if d.registered {
					s.store.dropCopyTarget(msg.Partition, d.node)
				}
				s.log.Info("skipping a node that is no longer a copy", "partition", msg.Partition, "node", d.node)
				return nil
			}
			if d.addr == "" || !d.registered {
				d.addr = v.appAddr(d.node)
			}
		}
		if !sleepCtx(ctx, backoff(attempt)) {
			return fmt.Errorf("kvapp: replicate partition %d to %s: %w", msg.Partition, d.node, err)
		}
	}
}

// stillCopy reports whether d must still receive the partition's writes.
// A failed or departed member need not; otherwise a node the table lists
// as a holder or migration target must, and a copy target registered here
// but not listed must until the grace for this agent's table to catch up
// has passed.
func (s *server) stillCopy(v *clusterView, id int, d dest) bool {
	if m, ok := v.members[d.node]; ok && m.gone() {
		return false
	}
	if v.partition(id).holds(d.node) {
		return true
	}
	return d.registered && time.Since(d.since) < s.cfg.CopyTargetGrace
}

func (s *server) sendReplicate(ctx context.Context, msg replicateMsg, d dest) error {
	addr := d.addr
	if addr == "" {
		v, err := s.agent.get(ctx, false)
		if err != nil {
			return err
		}
		if addr = v.appAddr(d.node); addr == "" {
			return fmt.Errorf("kvapp: no app address for %s", d.node)
		}
	}
	body, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, s.cfg.PeerTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, "http://"+addr+"/internal/replicate", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch resp.StatusCode {
	case http.StatusNoContent, http.StatusOK:
		return nil
	case http.StatusConflict:
		var e apiError
		_ = json.Unmarshal(b, &e)
		return &fencedError{epoch: e.Epoch}
	case http.StatusNotFound:
		return fmt.Errorf("kvapp: %s: %w", addr, errNotHeld)
	}
	return fmt.Errorf("kvapp: %s answered %s: %s", addr, resp.Status, bytes.TrimSpace(b))
}

// handleReplicate applies writes from the primary, forwards them to the
// copy targets registered here, and answers 204 once they are on this
// node's disk and the targets have them too. It answers 409 with the epoch
// held to an older epoch (the fencing), 404 for a partition this node was
// not told to hold.
func (s *server) handleReplicate(w http.ResponseWriter, r *http.Request) {
	var msg replicateMsg
	if err := json.NewDecoder(io.LimitReader(r.Body, maxBatchBytes)).Decode(&msg); err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{Error: "decode: " + err.Error()})
		return
	}
	if msg.Partition < 0 || len(msg.Entries) == 0 {
		writeJSON(w, http.StatusBadRequest, apiError{Error: "partition and entries are required"})
		return
	}
	for _, e := range msg.Entries {
		if e.Key == "" {
			writeJSON(w, http.StatusBadRequest, apiError{Error: "an entry without a key"})
			return
		}
	}
	dests, fence, seq, err := s.store.applyReplicated(msg, msg.From)
	if err == nil {
		s.requests.add(msg.Partition)
	}
	switch {
	case errors.Is(err, errNotHeld):
		writeJSON(w, http.StatusNotFound, apiError{Error: err.Error()})
		return
	case err != nil:
		writeJSON(w, http.StatusConflict, apiError{Error: err.Error(), Epoch: fence})
		return
	}
	local := make(chan error, 1)
	go func() { local <- s.store.durable(r.Context(), seq) }()
	if len(dests) > 0 {
		dests = s.liveCopyTargets(r.Context(), msg.Partition, dests)
	}
	var ferr error
	if len(dests) > 0 {
		fwd := msg
		fwd.From = s.agent.self()
		fwd.Via = append(slices.Clone(msg.Via), fwd.From)
		ferr = s.replicateAll(r.Context(), fwd, dests, false)
	}
	if err := <-local; err != nil {
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: err.Error()})
		return
	}
	if ferr != nil {
		var fe *fencedError
		if errors.As(ferr, &fe) {
			writeJSON(w, http.StatusConflict, apiError{Error: ferr.Error(), Epoch: fe.epoch})
			return
		}
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: ferr.Error()})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// liveCopyTargets drops the registered copy targets that the table here
// lists as copies and that registered more than CopyTargetGrace ago: the
// primary reaches them itself (writeDests), and forwarding to them as well
// would double every write to them for as long as they hold the
// partition. A target registered more recently is still forwarded to: the
// primary's table may not list it yet (its agent may be behind this
// one's). A target this table shows failed or gone is dropped when the
// table is at least as new as the registration (isStale), and kept
// otherwise, since it may be back from that failure; if it is really
// gone, the forward fails and replicateTo drops it on a fresh table.
func (s *server) liveCopyTargets(ctx context.Context, id int, ds []dest) []dest {
	v, err := s.agent.get(ctx, false)
	if err != nil {
		return ds // unknown: keep them, replicateTo decides on failure
	}
	var out []dest
	for _, d := range ds {
		if isStale(v, d) || v.partition(id).holds(d.node) && time.Since(d.since) > s.cfg.CopyTargetGrace {
			s.store.dropCopyTarget(id, d.node)
			continue
		}
		out = append(out, d)
	}
	return out
}

// handleDump serves a complete partition to a node copying it. With
// ?node=ID&addr=host:port&index=N the caller is registered as a copy
// target in the same critical section as the snapshot: every write
// applied here later is forwarded to it. N is the state index of the
// caller's table (isStale).
func (s *server) handleDump(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.Atoi(r.PathValue("p"))
	if err != nil || id < 0 {
		writeJSON(w, http.StatusBadRequest, apiError{Error: "partition must be a non-negative integer"})
		return
	}
	q := r.URL.Query()
	var index uint64
	if v := q.Get("index"); v != "" {
		if index, err = strconv.ParseUint(v, 10, 64); err != nil {
			writeJSON(w, http.StatusBadRequest, apiError{Error: "index must be a state index"})
			return
		}
	}
	d, err := s.store.snapshot(id, q.Get("node"), q.Get("addr"), index, time.Now())
	if err != nil {
		writeJSON(w, http.StatusNotFound, apiError{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, d)
}

// backoff is the pause before retry attempt+1: 25 ms doubling to 500 ms.
func backoff(attempt int) time.Duration {
	d := 25 * time.Millisecond << min(attempt, 5)
	return min(d, 500*time.Millisecond)
}

// sleepCtx pauses for d, or less if ctx ends first; it reports whether the
// caller may go on.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
