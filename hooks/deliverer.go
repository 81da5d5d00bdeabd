package hooks

import (
	"bytes"
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/steward-dev/steward/failover"
)

// ErrUnknownMigration is returned by MigrationCompleted and MigrationFailed
// for a migration this node's app was not asked to copy.
var ErrUnknownMigration = errors.New("hooks: no such migration for this node")

// ErrClosed is returned by calls on a closed Deliverer.
var ErrClosed = errors.New("hooks: deliverer closed")

// Config tunes a Deliverer.
type Config struct {
	// NodeID is this agent's -node-id: it goes into every event and
	// prefixes every webhook-id.
	NodeID string
	// URL is the app's webhook endpoint (-webhook-url).
	URL string
	// Secret signs every delivery (see ParseSecret).
	Secret []byte
	// Timeout bounds one delivery attempt, connection to last byte. An app
	// that needs longer (a big copy) answers 202 and reports later.
	Timeout time.Duration
	// MaxConcurrency is how many deliveries may be in flight at once
	// (always at most one per partition).
	MaxConcurrency int
	// BackoffBase is the delay cap of the first retry; it doubles with
	// every failed attempt of the same event.
	BackoffBase time.Duration
	// BackoffMax caps the doubling. The actual delay is drawn uniformly
	// from [0, cap) ("full jitter"), so that many agents retrying against
	// recovering apps do not do it in step.
	BackoffMax time.Duration
	// Rand draws the jitter; nil means one seeded from the clock. Tests
	// pass a seeded one.
	Rand *rand.Rand
	// Transport sends the requests; nil means a clone of
	// http.DefaultTransport. Redirects are never followed, whatever it is.
	Transport http.RoundTripper
	// Observer, if set, sees every delivery attempt (for metrics).
	Observer Observer
	// Now is the clock of the event timestamps and the signatures; nil
	// means time.Now.
	Now func() time.Time
}

// DefaultConfig returns the defaults; NodeID, URL and Secret are left to
// the caller.
func DefaultConfig() Config {
	return Config{
		Timeout:        5 * time.Second,
		MaxConcurrency: 4,
		BackoffBase:    200 * time.Millisecond,
		BackoffMax:     10 * time.Second,
	}
}

// CopySink is how the agent learns the outcome of a copy its app made. Its
// methods are called from delivery goroutines and from the callers of
// MigrationCompleted and MigrationFailed, possibly concurrently: they
// should hand the news off (to the leader forwarder) and return quickly.
type CopySink interface {
	// CopyDone: the app holds a full copy of partition for migrationID.
	CopyDone(partition int, migrationID string)
	// CopyFailed: the app gave up on the copy, for reason.
	CopyFailed(partition int, migrationID string, reason string)
}

// Delivery results given to an Observer and counted in Stats.
const (
	// ResultOK: a 2xx other than 202, or 202 to an event without a copy.
	ResultOK = "ok"
	// ResultCopying: 202 to an assign with a migration.
	ResultCopying = "copying"
	// ResultRejected: the app answered something other than 2xx (3xx
	// included: redirects are not followed).
	ResultRejected = "rejected"
	// ResultError: no answer (connection refused, timeout, ...).
	ResultError = "error"
)

// Observer sees every delivery attempt. It is called from delivery
// goroutines, concurrently, and must not block.
type Observer interface {
	// ObserveDelivery reports one attempt: the event type, one of the
	// Result constants, which attempt of this event it was (1 is the
	// first) and how long the request took.
	ObserveDelivery(eventType, result string, attempt int, latency time.Duration)
}

// DeliveryKey counts deliveries in Stats.
type DeliveryKey struct {
	Type   string
	Result string
}

// Stats is a snapshot of a Deliverer's counters.
type Stats struct {
	// Pending is how many events are waiting to be delivered or retried.
	Pending int
	// InFlight is how many requests are under way.
	InFlight int
	// CopiesPending is how many copies the app answered 202 to and has not
	// yet reported.
	CopiesPending int
	// Deliveries counts attempts by type and result.
	Deliveries map[DeliveryKey]uint64
	// Retries counts attempts after the first of their event.
	Retries uint64
}

// partState is the delivery state of one partition that has work: an
// event to send now (queued), one waiting for its retry time (in the retry
// heap), or one in flight or being recorded (busy). Partitions in
// agreement have none, so that a dispatch round never looks at them.
type partState struct {
	p         int
	key       string    // webhook-id of the event being tried; "" for none yet
	attempts  int       // failed attempts of that event
	next      time.Time // not before
	createdAt int64     // Timestamp of that event
	busy      bool      // a request in flight, or its acknowledgement being recorded
	recording bool      // its acknowledgement is being written to the store
	queued    bool      // in the ready queue
	heapIdx   int       // position in the retry heap; -1 when not in it
}

// retryHeap orders the partitions waiting to retry by their retry time.
type retryHeap []*partState

func (h retryHeap) Len() int           { return len(h) }
func (h retryHeap) Less(i, j int) bool { return h[i].next.Before(h[j].next) }
func (h retryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}
func (h *retryHeap) Push(x any) {
	st := x.(*partState)
	st.heapIdx = len(*h)
	*h = append(*h, st)
}
func (h *retryHeap) Pop() any {
	old := *h
	st := old[len(old)-1]
	old[len(old)-1] = nil
	st.heapIdx = -1
	*h = old[:len(old)-1]
	return st
}

// ackRecord is an acknowledgement waiting to be written to the store.
type ackRecord struct {
	st     *partState
	ev     Event
	status int
	// migration is the migration the event carries out: ev.MigrationID, or
	// for a new empty copy (no source, so the event names none) the
	// desired one's.
	migration string
}

// oneOff is an event given to Notify.
type oneOff struct {
	ev       Event
	attempts int
	next     time.Time
	inFlight bool
}

// Deliverer delivers events to the co-located app until what the app has
// acknowledged matches what the cluster says it holds. Create it with
// NewDeliverer; feed it with SetDesired; stop it with Close.
//
// Its work is proportional to what changes, not to how many partitions the
// node holds: SetDesired compares the new state with the previous one and
// queues only the partitions that differ; a dispatch round takes partitions
// from that queue (and from a heap of retry times) only while a delivery
// slot is free; acknowledgements that arrive while the previous ones are
// being written are recorded together, one write and one fsync for all of
// them (AckStore.Apply); Pending and Stats are kept up to date as things
// change, so that polling them is cheap.
type Deliverer struct {
	cfg    Config
	store  *AckStore
	sink   CopySink
	log    Logger
	client *http.Client
	now    func() time.Time

	ctx    context.Context
	cancel context.CancelFunc
	wake   chan struct{}
	wg     sync.WaitGroup // the dispatch loop and the deliveries
	once   sync.Once

	recordWake chan struct{}
	recordStop chan struct{}
	recordWG   sync.WaitGroup // the recorder
	setMu      sync.Mutex     // serialises SetDesired

	mu          sync.Mutex
	closed      bool
	rnd         *rand.Rand
	haveDesired bool
	desired     map[int]Assignment
	// resourceOf remembers the resource of every partition ever desired,
	// for the release events of partitions no longer desired (IDs are
	// never reused, so an entry never goes stale).
	resourceOf map[int]string
	migrations map[string]int // migration ID → partition, of desired
	// acked mirrors the store, which only this Deliverer writes.
	acked         map[int]Acked
	ackedCopies   map[string]int // migration ID → partition, of acked entries still copying
	copiesPending int
	// pending holds every partition whose acknowledged state differs from
	// the desired one.
	pending   map[int]struct{}
	parts     map[int]*partState
	ready     []int // partitions to look at, oldest first, from readyHead on
	readyHead int
	retryQ    retryHeap
	toRecord  []ackRecord
	redeliver map[int]bool    // copies to announce again after a restart
	completed map[string]bool // migrations reported complete or failed
	// forgetOnRecord: acknowledgements being recorded when the app reported
	// its holdings (AppHoldings), with whether it holds the partition.
	forgetOnRecord map[int]bool
	oneOffs        []*oneOff
	inFlight       int
	// Counters for Stats.
	deliveries map[DeliveryKey]uint64
	retries    uint64
}

// NewDeliverer starts a Deliverer. It delivers nothing until the first
// SetDesired, which the agent must call only once its copy of the cluster
// state has caught up (a stale state would release partitions the app
// rightly holds). From then on, everything desired and not acknowledged in
// store is delivered, and everything acknowledged and not desired is
// released: the app learns its full assignment at every start. Copies the
// app had answered 202 to before a restart are announced again (same
// webhook-id), in case the app restarted too. The Deliverer becomes the
// store's only writer.
func NewDeliverer(cfg Config, store *AckStore, sink CopySink, logger Logger) (*Deliverer, error) {
	def := DefaultConfig()
	switch {
	case cfg.NodeID == "":
		return nil, errors.New("hooks: deliverer needs a node ID")
	case cfg.URL == "":
		return nil, errors.New("hooks: deliverer needs a webhook URL")
	case !strings.HasPrefix(cfg.URL, "http://") && !strings.HasPrefix(cfg.URL, "https://"):
		return nil, fmt.Errorf("hooks: webhook URL %q is not http(s)", cfg.URL)
	case len(cfg.Secret) == 0:
		return nil, errors.New("hooks: deliverer needs a secret")
	case store == nil:
		return nil, errors.New("hooks: deliverer needs an ack store")
	case sink == nil:
		return nil, errors.New("hooks: deliverer needs a copy sink")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = def.Timeout
	}
	if cfg.MaxConcurrency <= 0 {
		cfg.MaxConcurrency = def.MaxConcurrency
	}
	if cfg.BackoffBase <= 0 {
		cfg.BackoffBase = def.BackoffBase
	}
	if cfg.BackoffMax < cfg.BackoffBase {
		cfg.BackoffMax = max(def.BackoffMax, cfg.BackoffBase)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	rnd := cfg.Rand
	if rnd == nil {
		seed := uint64(time.Now().UnixNano())
		rnd = rand.New(rand.NewPCG(seed, seed>>1|1))
	}
	transport := cfg.Transport
	if transport == nil {
		transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	if logger == nil {
		logger = nopLogger{}
	}
	d := &Deliverer{
		cfg:   cfg,
		store: store,
		sink:  sink,
		log:   logger,
		client: &http.Client{
			Transport: transport,
			Timeout:   cfg.Timeout,
			// A redirect is a misconfigured endpoint, not an answer: never
			// send a signed event somewhere else.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		now:         cfg.Now,
		wake:        make(chan struct{}, 1),
		recordWake:  make(chan struct{}, 1),
		recordStop:  make(chan struct{}),
		rnd:         rnd,
		desired:     map[int]Assignment{},
		resourceOf:  map[int]string{},
		migrations:  map[string]int{},
		acked:       map[int]Acked{},
		ackedCopies: map[string]int{},
		pending:     map[int]struct{}{},
		parts:       map[int]*partState{},
		redeliver:   map[int]bool{},
		completed:   map[string]bool{},

		forgetOnRecord: map[int]bool{},
		deliveries:     map[DeliveryKey]uint64{},
	}
	for p, a := range store.Snapshot() {
		d.setAckedLocked(AckChange{Partition: p, Acked: a})
		if a.Copying {
			d.redeliver[p] = true
		}
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.wg.Add(1)
	go d.loop()
	d.recordWG.Add(1)
	go d.recordLoop()
	return d, nil
}

// SetDesired replaces the desired state (see Desired). Call it on every
// change of the cluster state; calling it with an unchanged state costs a
// comparison, copies nothing and starts nothing. The map is copied; the
// caller must not change it during the call.
func (d *Deliverer) SetDesired(desired map[int]Assignment) {
	// One caller at a time, so that the state compared against below is
	// still the current one when the new one is installed. Installed maps
	// are never changed, so they can be read without d.mu.
	d.setMu.Lock()
	defer d.setMu.Unlock()
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	old, first := d.desired, !d.haveDesired
	d.mu.Unlock()

	var changed []int
	if !first {
		matched := 0
		for p, a := range desired {
			if prev, ok := old[p]; !ok || !prev.same(a) {
				changed = append(changed, p)
			}
			if _, ok := old[p]; ok {
				matched++
			}
		}
		if matched < len(old) {
			for p := range old {
				if _, ok := desired[p]; !ok {
					changed = append(changed, p)
				}
			}
		}
		if len(changed) == 0 {
			return
		}
	}
	next := make(map[int]Assignment, len(desired))
	migrations := map[string]int{}
	for p, a := range desired {
		next[p] = a
		if a.MigrationID != "" {
			migrations[a.MigrationID] = p
		}
	}

	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	if first {
		// The full assignment: everything desired, and everything
		// acknowledged (released if not desired, announced again if copying).
		d.haveDesired = true
		changed = make([]int, 0, len(next))
		for p := range next {
			changed = append(changed, p)
		}
		for p := range d.acked {
			if _, ok := next[p]; !ok {
				changed = append(changed, p)
			}
		}
	}
	d.desired = next
	d.migrations = migrations
	for p, a := range next {
		if a.Resource != "" {
			d.resourceOf[p] = a.Resource
		}
	}
	for id := range d.completed {
		if _, ok := migrations[id]; !ok {
			delete(d.completed, id)
		}
	}
	// In partition order, so that an assignment goes out in order.
	slices.Sort(changed)
	for _, p := range changed {
		d.updatePendingLocked(p)
		d.markDirtyLocked(p)
	}
	d.mu.Unlock()
	d.poke()
}

// Notify queues a one-off event (node.rejoin at start, cluster.quorum on a
// change), delivered and retried like the others. NodeID is filled in; an
// empty ID gets one that stays the same on every retry. An undelivered
// earlier event of the same type is superseded. While a node.rejoin is
// unacknowledged no partition event is sent: the app catches up on what
// it missed before it is told to lead anything.
func (d *Deliverer) Notify(ev Event) error {
	ev.NodeID = d.cfg.NodeID
	now := d.now()
	if ev.Timestamp == 0 {
		ev.Timestamp = now.Unix()
	}
	if ev.ID == "" {
		ev.ID = fmt.Sprintf("%s-%s-%d", d.cfg.NodeID, strings.ReplaceAll(ev.Type, ".", "-"), now.UnixNano())
	}
	if err := ev.Validate(); err != nil {
		return err
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return ErrClosed
	}
	kept := d.oneOffs[:0]
	for _, o := range d.oneOffs {
		if o.ev.Type == ev.Type && !o.inFlight {
			continue
		}
		kept = append(kept, o)
	}
	d.oneOffs = append(kept, &oneOff{ev: ev})
	d.mu.Unlock()
	d.poke()
	return nil
}

// Rejoining reports whether a node.rejoin is queued or being delivered:
// until it is acknowledged, the app has not caught up on what it missed
// while its node was away.
func (d *Deliverer) Rejoining() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, o := range d.oneOffs {
		if o.ev.Type == TypeRejoin {
			return true
		}
	}
	return false
}

// MigrationCompleted records that the app finished the copy migrationID
// (its call to /v1/migrations/{id}/complete) and reports it to the sink.
// It returns ErrUnknownMigration when this node's app is not copying it.
func (d *Deliverer) MigrationCompleted(migrationID string) error {
	return d.finishCopy(migrationID, func(p int) { d.sink.CopyDone(p, migrationID) })
}

// MigrationFailed records that the app gave up the copy migrationID and
// reports it to the sink, which has the cluster retry or re-plan it.
func (d *Deliverer) MigrationFailed(migrationID, reason string) error {
	return d.finishCopy(migrationID, func(p int) { d.sink.CopyFailed(p, migrationID, reason) })
}

func (d *Deliverer) finishCopy(id string, report func(p int)) error {
	if id == "" {
		return ErrUnknownMigration
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return ErrClosed
	}
	p, found := d.migrations[id]
	if !found {
		p, found = d.ackedCopies[id]
	}
	if !found {
		d.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrUnknownMigration, id)
	}
	// The app may report before its 202 has been recorded: remember, so
	// that the recording does not mark the copy pending again.
	d.completed[id] = true
	delete(d.redeliver, p)
	var err error
	// While the partition's acknowledgement is being written, the recorder
	// clears the flag after its write (it sees completed).
	recording := d.parts[p] != nil && d.parts[p].recording
	if a, ok := d.acked[p]; ok && a.MigrationID == id && a.Copying && !recording {
		a.Copying = false
		if err = d.store.Set(p, a); err == nil {
			d.setAckedLocked(AckChange{Partition: p, Acked: a})
		}
	}
	d.updatePendingLocked(p)
	d.markDirtyLocked(p)
	d.mu.Unlock()
	if err != nil {
		return err
	}
	report(p)
	d.poke()
	return nil
}

// AckedEpoch returns the epoch of the last event the app acknowledged for
// partition p, and false when it holds nothing acknowledged for it. The
// agent finishes a split once the app acknowledged it at the parent's
// epoch.
func (d *Deliverer) AckedEpoch(p int) (uint64, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	a, ok := d.acked[p]
	return a.Epoch, ok
}

// Pending is how many events are waiting to be delivered (in flight or
// not): partitions whose acknowledged state differs from the desired one,
// plus one-off events.
func (d *Deliverer) Pending() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.pending) + len(d.oneOffs)
}

// Stats returns a snapshot of the counters.
func (d *Deliverer) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := Stats{
		Pending:       len(d.pending) + len(d.oneOffs),
		InFlight:      d.inFlight,
		CopiesPending: d.copiesPending,
		Deliveries:    make(map[DeliveryKey]uint64, len(d.deliveries)),
		Retries:       d.retries,
	}
	for k, v := range d.deliveries {
		s.Deliveries[k] = v
	}
	return s
}

// Close stops delivering, aborts requests in flight, records the
// acknowledgements already received and waits for every goroutine. It is
// safe to call more than once.
func (d *Deliverer) Close() error {
	d.once.Do(func() {
		d.mu.Lock()
		d.closed = true
		d.mu.Unlock()
		d.cancel()
		d.wg.Wait()
		close(d.recordStop)
		d.recordWG.Wait()
		// What the app acknowledged last is recorded, so that it is not
		// delivered again after a restart.
		d.recordBatch()
		d.client.CloseIdleConnections()
	})
	return nil
}

func (d *Deliverer) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// loop starts deliveries whenever a slot is free and an event is due, and
// sleeps until the next one is due or something changes.
func (d *Deliverer) loop() {
	defer d.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		wait := d.dispatch()
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
		select {
		case <-d.ctx.Done():
			return
		case <-d.wake:
		case <-timer.C:
		}
	}
}

// idleWait is how long the loop sleeps with nothing due; any change wakes
// it earlier.
const idleWait = time.Minute

// dispatch starts what is due and returns how long to wait for the next.
// It looks only at queued partitions and due retries, and only while a
// slot is free: those it does not reach stay queued for the next round.
func (d *Deliverer) dispatch() time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return idleWait
	}
	now := time.Now()
	wait := idleWait
	// One-off events first: they are few and say something about the whole
	// node.
	rejoining := false
	for _, o := range d.oneOffs {
		rejoining = rejoining || o.ev.Type == TypeRejoin
	}
	for _, o := range d.oneOffs {
		if d.inFlight >= d.cfg.MaxConcurrency {
			return wait
		}
		if o.inFlight {
			continue
		}
		if o.next.After(now) {
			wait = min(wait, o.next.Sub(now))
			continue
		}
		o.inFlight = true
		d.start(o.ev, o.attempts+1, func(ok bool, status int) { d.oneOffDoneLocked(o, ok) })
	}
	if !d.haveDesired || rejoining {
		// Until the app has acknowledged node.rejoin (it re-syncs what it
		// missed while away), it is told nothing about its partitions: a
		// promotion before that would have it serve a copy that has not
		// caught up. The partitions stay queued; the acknowledgement
		// wakes the loop.
		return wait
	}
	for len(d.retryQ) > 0 && !d.retryQ[0].next.After(now) {
		st := heap.Pop(&d.retryQ).(*partState)
		d.markDirtyLocked(st.p)
	}
	for d.inFlight < d.cfg.MaxConcurrency {
		p, ok := d.popReadyLocked()
		if !ok {
			break
		}
		st := d.parts[p]
		st.queued = false
		if st.busy {
			continue // looked at again once it is done
		}
		ev, migration, ok := d.nextEventLocked(p)
		if !ok {
			d.dropLocked(st)
			continue
		}
		if st.key != ev.ID {
			// A new event, or one superseding an undelivered older one:
			// it starts with a clean retry schedule.
			st.key, st.attempts, st.next, st.createdAt = ev.ID, 0, time.Time{}, d.now().Unix()
		}
		if st.next.After(now) {
			if st.heapIdx < 0 {
				heap.Push(&d.retryQ, st)
			}
			continue
		}
		if st.heapIdx >= 0 {
			heap.Remove(&d.retryQ, st.heapIdx)
		}
		ev.Timestamp = st.createdAt
		st.busy = true
		d.start(ev, st.attempts+1, func(ok bool, status int) { d.partitionDoneLocked(st, ev, migration, ok, status) })
	}
	if len(d.retryQ) > 0 {
		wait = min(wait, max(0, d.retryQ[0].next.Sub(now)))
	}
	return wait
}

// markDirtyLocked queues partition p to be looked at by the next dispatch
// round (once, however often it changes before then).
func (d *Deliverer) markDirtyLocked(p int) {
	st := d.parts[p]
	if st == nil {
		st = &partState{p: p, heapIdx: -1}
		d.parts[p] = st
	}
	if !st.queued {
		st.queued = true
		d.ready = append(d.ready, p)
	}
}

func (d *Deliverer) popReadyLocked() (int, bool) {
	if d.readyHead == len(d.ready) {
		return 0, false
	}
	p := d.ready[d.readyHead]
	d.readyHead++
	switch {
	case d.readyHead == len(d.ready):
		d.ready, d.readyHead = d.ready[:0], 0
	case d.readyHead >= 1024 && 2*d.readyHead >= len(d.ready):
		// Reuse the front of a queue that never quite empties.
		n := copy(d.ready, d.ready[d.readyHead:])
		d.ready, d.readyHead = d.ready[:n], 0
	}
	return p, true
}

// dropLocked forgets the state of a partition that has nothing to deliver.
func (d *Deliverer) dropLocked(st *partState) {
	if st.heapIdx >= 0 {
		heap.Remove(&d.retryQ, st.heapIdx)
	}
	delete(d.parts, st.p)
}

// updatePendingLocked recomputes whether partition p counts in Pending;
// called whenever its desired or acknowledged state changes.
func (d *Deliverer) updatePendingLocked(p int) {
	if !d.haveDesired {
		return
	}
	want, isDesired := d.desired[p]
	have, isAcked := d.acked[p]
	if _, ok := transition(want, isDesired, have, isAcked, d.redeliver[p]); ok {
		d.pending[p] = struct{}{}
	} else {
		delete(d.pending, p)
	}
}

// setAckedLocked applies a change the store has made durable to the
// mirror of the store, its indexes and Pending.
func (d *Deliverer) setAckedLocked(c AckChange) {
	p := c.Partition
	if old, ok := d.acked[p]; ok && old.Copying {
		d.copiesPending--
		if q, ok := d.ackedCopies[old.MigrationID]; ok && q == p {
			delete(d.ackedCopies, old.MigrationID)
		}
	}
	if c.Delete {
		delete(d.acked, p)
	} else {
		d.acked[p] = c.Acked
		if c.Acked.Copying {
			d.copiesPending++
			d.ackedCopies[c.Acked.MigrationID] = p
		}
	}
	d.updatePendingLocked(p)
}

// nextEventLocked is the event partition p needs now, if any, and the
// migration it carries out ("" for none). A migration without a source (a
// new empty copy) is an assign that names no migration: the wire format
// gives a migration_id only with a source to copy from, and the app has
// nothing to copy; its acknowledgement completes the migration.
func (d *Deliverer) nextEventLocked(p int) (Event, string, bool) {
	want, isDesired := d.desired[p]
	have, isAcked := d.acked[p]
	typ, ok := transition(want, isDesired, have, isAcked, d.redeliver[p])
	if !ok {
		return Event{}, "", false
	}
	migration := ""
	ev := Event{Type: typ, NodeID: d.cfg.NodeID, Partition: p, Resource: d.resourceOf[p]}
	switch typ {
	case TypeRelease:
		ev.Epoch, ev.Role = have.Epoch, RoleNone
	default:
		ev.Epoch, ev.Role = want.Epoch, want.Role
		if typ == TypeAssign {
			migration = want.MigrationID
		}
		if typ == TypeAssign && want.Source != nil {
			src := *want.Source
			ev.Source, ev.MigrationID = &src, want.MigrationID
		}
		if typ == TypeSplit {
			ev.Children = append([]failover.SplitChild(nil), want.Split...)
		}
	}
	ev.ID = EventID(d.cfg.NodeID, p, ev.Epoch, typ)
	return ev, migration, true
}

// EventID is the webhook-id of a partition event: stable per (node,
// partition, epoch, type), so that every retry and every redelivery after a
// restart carries the same one.
func EventID(node string, partition int, epoch uint64, eventType string) string {
	return fmt.Sprintf("%s-p%d-e%d-%s", node, partition, epoch, strings.TrimPrefix(eventType, "partition."))
}

// transition decides which event moves the app from what it acknowledged
// (have) to what it should hold (want). It returns false when nothing is
// to be sent: in agreement, waiting for a copy, or a desired state older
// than the acknowledged one (a state still catching up, never sent
// backwards).
func transition(want Assignment, isDesired bool, have Acked, isAcked bool, redeliverCopy bool) (string, bool) {
	switch {
	case !isDesired && !isAcked:
		return "", false
	case !isDesired:
		return TypeRelease, true
	case !isAcked:
		return TypeAssign, true
	case want.Epoch < have.Epoch:
		return "", false
	case want.Epoch == have.Epoch && want.Role == have.Role && want.MigrationID == have.MigrationID:
		if redeliverCopy && have.Copying {
			return TypeAssign, true
		}
		return "", false
	case len(want.Split) > 0 && have.Role == RolePrimary && want.Role == RolePrimary:
		return TypeSplit, true
	case want.Source == nil && have.Role == RoleReplica && want.Role == RolePrimary:
		return TypePromote, true
	case want.Source == nil && have.Role == RolePrimary && want.Role == RoleReplica:
		return TypeDemote, true
	default:
		return TypeAssign, true
	}
}

// start sends ev on its own goroutine; done runs there afterwards, under
// d.mu, once the slot is free again.
func (d *Deliverer) start(ev Event, attempt int, done func(ok bool, status int)) {
	d.inFlight++
	if attempt > 1 {
		d.retries++
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		began := time.Now()
		status, err := d.post(ev)
		latency := time.Since(began)
		result := ResultOK
		switch {
		case err != nil:
			result = ResultError
		case status < 200 || status > 299:
			result = ResultRejected
		case status == http.StatusAccepted && ev.MigrationID != "":
			result = ResultCopying
		}
		if d.cfg.Observer != nil {
			d.cfg.Observer.ObserveDelivery(ev.Type, result, attempt, latency)
		}
		ok := result != ResultError && result != ResultRejected
		if !ok {
			if d.ctx.Err() == nil {
				d.log.Warn("webhook not acknowledged; will retry", "id", ev.ID, "type", ev.Type,
					"partition", ev.Partition, "epoch", ev.Epoch, "attempt", attempt, "status", status, "error", err)
			}
		} else {
			d.log.Debug("webhook acknowledged", "id", ev.ID, "status", status, "latency", latency)
		}
		d.mu.Lock()
		d.deliveries[DeliveryKey{ev.Type, result}]++
		d.inFlight--
		done(ok, status)
		d.mu.Unlock()
		d.poke()
	}()
}

// post sends one signed attempt and returns the status.
func (d *Deliverer) post(ev Event) (int, error) {
	body, err := json.Marshal(ev)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(d.ctx, http.MethodPost, d.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "steward-agent")
	SignHeaders(req.Header, d.cfg.Secret, ev.ID, d.now(), body)
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, err
	}
	// Drain a little so the connection can be reused; an app has nothing
	// long to say.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if ev.Type == TypeSplit && resp.StatusCode/100 == 2 && resp.Header.Get(SplitDoneHeader) != "done" {
		// Not an acknowledgement of the split (see SplitDoneHeader).
		return http.StatusNotImplemented, nil
	}
	return resp.StatusCode, nil
}

// backoff is the delay before retry number attempt (1 for the first
// retry): uniform in [0, min(max, base·2^(attempt-1))).
func backoff(attempt int, base, maxDelay time.Duration, rnd *rand.Rand) time.Duration {
	ceiling := base
	for i := 1; i < attempt && ceiling < maxDelay; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, maxDelay)
	if ceiling <= 0 {
		return 0
	}
	return time.Duration(rnd.Int64N(int64(ceiling)))
}

func (d *Deliverer) retryLater(attempts *int, next *time.Time) {
	*attempts++
	*next = time.Now().Add(backoff(*attempts, d.cfg.BackoffBase, d.cfg.BackoffMax, d.rnd))
}

func (d *Deliverer) oneOffDoneLocked(o *oneOff, ok bool) {
	o.inFlight = false
	if !ok {
		d.retryLater(&o.attempts, &o.next)
		return
	}
	for i, x := range d.oneOffs {
		if x == o {
			d.oneOffs = append(d.oneOffs[:i], d.oneOffs[i+1:]...)
			break
		}
	}
}

// partitionDoneLocked takes the outcome of one attempt for a partition. An
// acknowledgement goes to the recorder; the partition stays busy until it
// is durable, so that its next event cannot start before.
func (d *Deliverer) partitionDoneLocked(st *partState, ev Event, migration string, ok bool, status int) {
	if !ok {
		st.busy = false
		d.retryLater(&st.attempts, &st.next)
		d.markDirtyLocked(st.p)
		return
	}
	st.recording = true
	d.toRecord = append(d.toRecord, ackRecord{st: st, ev: ev, status: status, migration: migration})
	select {
	case d.recordWake <- struct{}{}:
	default:
	}
}

// recordLoop writes acknowledgements to the store as they arrive: all
// those that arrived during one write go into the next (group commit), so
// that the rate of deliveries is not bounded by the rate of fsyncs.
func (d *Deliverer) recordLoop() {
	defer d.recordWG.Done()
	for {
		select {
		case <-d.recordStop:
			return
		case <-d.recordWake:
			d.recordBatch()
		}
	}
}

// recordBatch makes the acknowledgements received so far durable with one
// AckStore.Apply, then lets their partitions move on.
func (d *Deliverer) recordBatch() {
	d.mu.Lock()
	batch := d.toRecord
	d.toRecord = nil
	if len(batch) == 0 {
		d.mu.Unlock()
		return
	}
	changes := make([]AckChange, len(batch))
	for i, r := range batch {
		changes[i] = d.ackChangeLocked(r)
	}
	d.mu.Unlock()

	err := d.store.Apply(changes)

	d.mu.Lock()
	var copiesDone []ackRecord
	var fixes []AckChange
	for i, r := range batch {
		st, c := r.st, changes[i]
		st.busy, st.recording = false, false
		d.markDirtyLocked(st.p)
		if err != nil {
			// Not recorded means not acknowledged: deliver it again (the
			// app treats the repeat as idempotent).
			d.retryLater(&st.attempts, &st.next)
			continue
		}
		delete(d.redeliver, st.p)
		d.setAckedLocked(c)
		st.key = "" // done: the partition's next event starts afresh
		if id := r.migration; id != "" && !c.Delete {
			if !c.Acked.Copying && !d.completed[id] {
				// The copy was made within the request (or there was
				// nothing to copy).
				d.completed[id] = true
				copiesDone = append(copiesDone, r)
			}
			if c.Acked.Copying && d.completed[id] {
				// The app reported the copy finished while its 202 was
				// being written.
				a := c.Acked
				a.Copying = false
				fixes = append(fixes, AckChange{Partition: st.p, Acked: a})
			}
		}
	}
	if err != nil {
		d.log.Error("cannot record acknowledgements; will deliver them again", "count", len(batch), "error", err)
		for _, r := range batch {
			delete(d.forgetOnRecord, r.st.p)
		}
	} else {
		fixes = append(fixes, d.forgetRecordedLocked(changes)...)
	}
	if len(fixes) > 0 {
		if ferr := d.store.Apply(fixes); ferr != nil {
			d.log.Error("cannot record finished copies", "count", len(fixes), "error", ferr)
		} else {
			for _, c := range fixes {
				d.setAckedLocked(c)
			}
		}
	}
	d.mu.Unlock()
	for _, r := range copiesDone {
		d.sink.CopyDone(r.st.p, r.migration)
	}
	d.poke()
}

// ackChangeLocked is what the store must record for an acknowledged event.
func (d *Deliverer) ackChangeLocked(r ackRecord) AckChange {
	if r.ev.Type == TypeRelease {
		return AckChange{Partition: r.st.p, Delete: true}
	}
	id := r.migration
	// Only an app given a migration ID can report a copy finished later:
	// an app that answers 202 to a new empty copy is done with it.
	copying := r.status == http.StatusAccepted && r.ev.MigrationID != "" && !d.completed[id]
	return AckChange{Partition: r.st.p, Acked: Acked{Role: r.ev.Role, Epoch: r.ev.Epoch, MigrationID: id, Copying: copying}}
}
