// Package gossip is Steward's membership layer over hashicorp/memberlist
// (SWIM with Lifeguard): it joins a cluster, carries each node's metadata
// (raft, API and app addresses, zone, version), and reports what happens to
// other nodes as a typed, ordered event stream: join, suspect, alive, dead,
// left and update.
//
// Two facts about memberlist v0.6.0 shape this package:
//
//   - memberlist's EventDelegate reports join, leave and update but never
//     suspicion, and the State field of the *Node values it hands out (from
//     Members and from NotifyLeave alike) is never written: memberlist keeps
//     the real state in an internal struct whose own State field shadows it.
//     So polling Members() for StateSuspect cannot work. This package
//     observes suspicion where memberlist decides it: the line memberlist
//     logs when this node's own probe fails ("Suspect X has failed, no acks
//     received"), read from the log writer this package gives memberlist.
//     A suspicion that reaches this node only by gossip is seen when its own
//     probe of the node fails too, within one probe round. A suspect node
//     that answers one of this node's probes again is reported alive
//     (memberlist's PingDelegate).
//   - For the same reason NotifyLeave cannot tell dead from left. Leave
//     therefore first gossips Meta.Leaving = true and waits for that update
//     to be broadcast; a peer that sees a node go while its last metadata
//     says Leaving reports EventLeft, otherwise EventDead.
package gossip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
)

var (
	// ErrShutdown is returned by methods called after Shutdown.
	ErrShutdown = errors.New("gossip: shut down")
	// ErrLeft is returned by Join and UpdateMeta after Leave: memberlist
	// cannot rejoin with the same instance; make a new Gossip.
	ErrLeft = errors.New("gossip: left the cluster; create a new Gossip to rejoin")
	// ErrJoinFailed is wrapped when Join could reach none of its addresses
	// before its context ended.
	ErrJoinFailed = errors.New("gossip: join failed")
	// ErrNoJoinAddrs is returned by Join with an empty address list.
	ErrNoJoinAddrs = errors.New("gossip: no addresses to join")
)

// Join backoff between rounds of attempts: doubles from joinBackoffMin to
// joinBackoffMax, with up to 25 % jitter so that agents started together
// do not retry in lockstep.
const (
	joinBackoffMin = 100 * time.Millisecond
	joinBackoffMax = 2 * time.Second
)

// Gossip is one member of a memberlist cluster. Create it with New; it is
// listening from then on. All methods are safe for concurrent use.
type Gossip struct {
	nodeID           string
	logger           hclog.Logger
	ml               *memberlist.Memberlist
	broadcastTimeout time.Duration
	// forgetAfter is how long dead and left nodes stay in Members: as long
	// as memberlist itself keeps gossiping about them.
	forgetAfter time.Duration

	// mu guards the fields below it. Lock order: memberlist's internal
	// lock, then mu (delegate callbacks run under memberlist's lock), so mu
	// is never held while calling into memberlist.
	mu        sync.Mutex
	view      map[string]*Node    // every known node, the local one included
	lost      map[string]lostNode // dead (not left) nodes to reconnect to
	localMeta Meta
	metaBytes []byte
	// idClaim is the last other process seen claiming this member's own
	// node ID, if any.
	idClaim *IDClaim

	queue     *eventQueue
	events    chan Event
	stop      chan struct{} // closed by Shutdown
	drainDone chan struct{} // closed when the drain goroutine has returned

	reconnect reconnector

	// keyring is memberlist's live keyring, nil when gossip is plaintext.
	// keyMu serialises changes to it with their persistence to keyringFile.
	keyMu       sync.Mutex
	keyring     *memberlist.Keyring
	keyringFile string

	// lifeMu serialises Leave with Shutdown: memberlist panics on Leave
	// after Shutdown.
	lifeMu sync.Mutex
	left   bool
	down   bool
}

// New validates cfg, creates the memberlist (listening on its port) and
// starts the goroutine that delivers events. It does not join anyone: call
// Join. cfg is not modified or retained.
func New(cfg *Config) (*Gossip, error) {
	if cfg == nil {
		return nil, fmt.Errorf("%w: nil", ErrInvalidConfig)
	}
	c := *cfg
	if c.BindAddr == "" {
		c.BindAddr = "127.0.0.1"
	}
	if c.Profile == "" {
		c.Profile = ProfileLAN
	}
	if c.EventBuffer == 0 {
		c.EventBuffer = 256
	}
	if c.BroadcastTimeout <= 0 {
		c.BroadcastTimeout = 5 * time.Second
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	meta := c.Meta
	if meta.Boot == 0 {
		meta.Boot = newBoot()
	}
	metaBytes, _ := EncodeMeta(meta) // validated above
	logger := c.Logger
	if logger == nil {
		logger = hclog.Default().Named("gossip")
	}

	mc, _ := c.Profile.MemberlistConfig() // validated above
	mc.Name = c.NodeID
	mc.BindAddr = c.BindAddr
	mc.BindPort = c.BindPort
	mc.AdvertiseAddr = c.AdvertiseAddr
	mc.AdvertisePort = c.AdvertisePort
	if c.AdvertisePort == 0 {
		mc.AdvertisePort = c.BindPort // memberlist fills both in when BindPort is 0
	}
	mc.Label = c.Label
	mc.DeadNodeReclaimTime = c.DeadNodeReclaimTime
	keys := c.Keyring
	if c.SecretKey != nil {
		keys = [][]byte{c.SecretKey}
	}
	if len(keys) > 0 {
		kr, err := memberlist.NewKeyring(cloneKeys(keys[1:]), slices.Clone(keys[0]))
		if err != nil {
			return nil, fmt.Errorf("%w: keyring: %v", ErrInvalidConfig, err)
		}
		mc.Keyring = kr
		mc.GossipVerifyIncoming = true
		mc.GossipVerifyOutgoing = true
	}

	reconnectEvery := c.ReconnectInterval
	if reconnectEvery == 0 {
		reconnectEvery = c.Profile.reconnectInterval()
	}
	reconnectTimeout := c.ReconnectTimeout
	if reconnectTimeout == 0 {
		reconnectTimeout = defaultReconnectTimeout
	}
	g := &Gossip{
		nodeID:           c.NodeID,
		logger:           logger,
		broadcastTimeout: c.BroadcastTimeout,
		forgetAfter:      mc.GossipToTheDeadTime,
		view:             make(map[string]*Node),
		lost:             make(map[string]lostNode),
		localMeta:        meta,
		metaBytes:        metaBytes,
		queue:            newEventQueue(),
		events:           make(chan Event, c.EventBuffer),
		stop:             make(chan struct{}),
		drainDone:        make(chan struct{}),
		keyring:          mc.Keyring,
		keyringFile:      c.KeyringFile,
		reconnect: reconnector{
			interval: reconnectEvery,
			timeout:  reconnectTimeout,
			seeds:    c.ReconnectSeeds,
			done:     make(chan struct{}),
			tried:    map[string]time.Time{},
		},
	}
	d := &delegates{g: g}
	mc.Delegate = d
	mc.Events = d
	mc.Conflict = d
	mc.Ping = d
	mc.Logger = log.New(&memberlistLog{
		next:      logger.StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true}),
		onSuspect: g.observeSuspect,
	}, "", 0)

	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("gossip: starting memberlist on %s: %w",
			net.JoinHostPort(c.BindAddr, strconv.Itoa(c.BindPort)), err)
	}
	g.ml = ml
	go g.drain()
	if g.reconnect.interval > 0 {
		go g.reconnectLoop()
	} else {
		close(g.reconnect.done)
	}
	return g, nil
}

// drain is the one goroutine that moves queued events to the Events
// channel, in order. It blocks while the consumer is slow; the queue in
// front of it grows instead of memberlist's callbacks blocking.
func (g *Gossip) drain() {
	defer close(g.drainDone)
	for {
		ev, ok := g.queue.pop(g.stop)
		if !ok {
			return
		}
		select {
		case g.events <- ev:
		case <-g.stop:
			return
		}
	}
}

// Events returns the stream of changes to remote nodes, in the order this
// member observed them. The local node never appears in it (not even its
// own join at start); use LocalNode for it. Nodes already in the cluster
// when Join succeeds arrive as EventJoin. Nothing is lost while the
// consumer is slow: events wait in an unbounded queue. The channel is
// closed by Shutdown; events not yet received by then are dropped.
func (g *Gossip) Events() <-chan Event { return g.events }

// Join contacts the given gossip addresses (host:port) and merges state
// with them, retrying with backoff until at least one answers or ctx is
// done. It returns how many addresses were contacted. When none could be
// reached it returns an error wrapping ErrJoinFailed that names the
// addresses and the last failure. One attempt may overrun ctx by up to the
// profile's TCPTimeout, since memberlist's Join takes no context.
func (g *Gossip) Join(ctx context.Context, addrs []string) (int, error) {
	return g.JoinReporting(ctx, addrs, func(a JoinAttempt) {
		g.logger.Debug("join attempt failed", "attempt", a.Attempt, "addrs", addrs, "error", a.Err)
	})
}

// JoinAttempt is one failed round of Join: every address was tried and
// none answered.
type JoinAttempt struct {
	// Attempt counts the rounds, from 1.
	Attempt int
	// Err says why each address failed, on one line.
	Err error
	// Next is how long Join waits before the next round.
	Next time.Duration
}

// JoinReporting is Join, calling report after each failed round, so that a
// caller can tell an operator what is happening while it keeps trying.
func (g *Gossip) JoinReporting(ctx context.Context, addrs []string, report func(JoinAttempt)) (int, error) {
	if len(addrs) == 0 {
		return 0, ErrNoJoinAddrs
	}
	if err := g.usable(); err != nil {
		return 0, err
	}
	backoff := joinBackoffMin
	var lastErr error
	for attempt := 1; ; attempt++ {
		n, err := g.ml.Join(addrs)
		if n > 0 {
			if err != nil {
				g.logger.Warn("joined, but some addresses failed", "contacted", n, "error", err)
			}
			g.logger.Info("joined cluster", "contacted", n, "members", g.ml.NumMembers(), "attempts", attempt)
			return n, nil
		}
		lastErr = oneLine(err)
		wait := backoff + time.Duration(rand.Int64N(int64(backoff)/4+1))
		report(JoinAttempt{Attempt: attempt, Err: lastErr, Next: wait})
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return 0, fmt.Errorf("%w: none of [%s] could be reached in %d attempts (%v); last error: %v",
				ErrJoinFailed, strings.Join(addrs, ", "), attempt, ctx.Err(), lastErr)
		case <-g.stop:
			timer.Stop()
			return 0, ErrShutdown
		case <-timer.C:
		}
		backoff = min(backoff*2, joinBackoffMax)
	}
}

// oneLine flattens memberlist's multi-line join error ("2 errors
// occurred:\n\t* Failed to join ...") into one line for a log field.
func oneLine(err error) error {
	if err == nil || !strings.Contains(err.Error(), "\n") {
		return err
	}
	var parts []string
	for _, line := range strings.Split(err.Error(), "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "* "))
		if line != "" && !strings.HasSuffix(line, "occurred:") {
			parts = append(parts, line)
		}
	}
	return errors.New(strings.Join(parts, "; "))
}

func (g *Gossip) usable() error {
	g.lifeMu.Lock()
	defer g.lifeMu.Unlock()
	switch {
	case g.down:
		return ErrShutdown
	case g.left:
		return ErrLeft
	}
	return nil
}

// Members returns every node this member knows, itself included, sorted by
// ID: alive and suspect ones, and dead or left ones for as long as
// memberlist still gossips about them (the profile's GossipToTheDeadTime).
func (g *Gossip) Members() []Node {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.forgetLocked(time.Now())
	out := make([]Node, 0, len(g.view))
	for _, n := range g.view {
		out = append(out, *n)
	}
	slices.SortFunc(out, func(a, b Node) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Member returns the node with this ID, if known (see Members).
func (g *Gossip) Member(id string) (Node, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.forgetLocked(time.Now())
	n, ok := g.view[id]
	if !ok {
		return Node{}, false
	}
	return *n, true
}

func (g *Gossip) forgetLocked(now time.Time) {
	for id, n := range g.view {
		if (n.State == StateDead || n.State == StateLeft) && now.Sub(n.Since) > g.forgetAfter {
			delete(g.view, id)
		}
	}
}

// LocalNode returns this node as its peers see it.
func (g *Gossip) LocalNode() Node {
	g.mu.Lock()
	defer g.mu.Unlock()
	if n, ok := g.view[g.nodeID]; ok {
		return *n
	}
	return Node{ID: g.nodeID, Meta: g.localMeta, State: StateAlive}
}

// Addr returns the gossip host:port this node advertises, with the real
// port when BindPort was 0. Give it to other nodes' Join.
func (g *Gossip) Addr() string { return g.LocalNode().Addr }

// NumMembers returns how many nodes memberlist counts as alive or suspect,
// this one included.
func (g *Gossip) NumMembers() int { return g.ml.NumMembers() }

// HealthScore is memberlist's Lifeguard awareness of its own health: 0 is
// healthy; higher means this node has been slow to answer or to probe
// (an overloaded host), and memberlist is stretching its timeouts.
func (g *Gossip) HealthScore() int { return g.ml.GetHealthScore() }

// UpdateMeta replaces this node's metadata and gossips it, waiting up to
// Config.BroadcastTimeout for the broadcast. Peers report EventUpdate.
func (g *Gossip) UpdateMeta(m Meta) error {
	if err := g.usable(); err != nil {
		return err
	}
	return g.updateMeta(m, g.broadcastTimeout)
}

func (g *Gossip) updateMeta(m Meta, timeout time.Duration) error {
	if m.Boot == 0 {
		g.mu.Lock()
		m.Boot = g.localMeta.Boot // this process's, whatever the caller built
		g.mu.Unlock()
	}
	b, err := EncodeMeta(m)
	if err != nil {
		return err
	}
	g.mu.Lock()
	g.localMeta = m
	g.metaBytes = b
	g.mu.Unlock()
	if err := g.ml.UpdateNode(timeout); err != nil {
		return fmt.Errorf("gossip: metadata update: %w", err)
	}
	return nil
}

// Leave leaves the cluster gracefully within timeout: it first gossips
// Meta.Leaving (so that peers report EventLeft, not EventDead), then
// broadcasts memberlist's leave. The node keeps answering gossip until
// Shutdown, which should follow. A Gossip cannot rejoin after Leave.
// Calling Leave twice is harmless.
func (g *Gossip) Leave(timeout time.Duration) error {
	if timeout <= 0 {
		return fmt.Errorf("gossip: leave timeout must be positive, got %v", timeout)
	}
	g.lifeMu.Lock()
	defer g.lifeMu.Unlock()
	if g.down {
		return ErrShutdown
	}
	if g.left {
		return nil
	}
	g.left = true
	deadline := time.Now().Add(timeout)

	g.mu.Lock()
	m := g.localMeta
	g.mu.Unlock()
	m.Leaving = true
	if err := g.updateMeta(m, timeout/2); err != nil {
		// Go on: peers that missed it will report the node dead, not left.
		g.logger.Warn("leaving: could not gossip the leaving flag in time", "error", err)
	}
	remaining := time.Until(deadline)
	if remaining <= 0 {
		remaining = time.Millisecond
	}
	if err := g.ml.Leave(remaining); err != nil {
		return fmt.Errorf("gossip: leave: %w", err)
	}
	g.logger.Info("left cluster")
	return nil
}

// Shutdown stops memberlist (without leaving: call Leave first for a
// graceful exit), stops the event and reconnect goroutines and closes the
// Events channel. It waits for a reconnect attempt in flight, at most the
// profile's TCPTimeout. It is safe to call more than once; later calls
// return nil.
func (g *Gossip) Shutdown() error {
	g.lifeMu.Lock()
	if g.down {
		g.lifeMu.Unlock()
		return nil
	}
	g.down = true
	g.lifeMu.Unlock()

	err := g.ml.Shutdown()
	g.queue.close()
	close(g.stop)
	<-g.drainDone
	<-g.reconnect.done
	close(g.events)
	if err != nil {
		return fmt.Errorf("gossip: shutdown: %w", err)
	}
	return nil
}

// ---- observations -------------------------------------------------------

// record applies a change to the view and queues the matching events, in
// one critical section so that the view and the stream agree on order.
// Events about the local node are not queued.
func (g *Gossip) record(id string, change func(n *Node, exists bool) []EventType) {
	g.mu.Lock()
	defer g.mu.Unlock()
	n, exists := g.view[id]
	if !exists {
		n = &Node{ID: id}
	}
	types := change(n, exists)
	if len(types) == 0 {
		return
	}
	g.view[id] = n
	if id == g.nodeID {
		return
	}
	for _, t := range types {
		g.queue.push(Event{Type: t, Node: *n})
	}
}

func (g *Gossip) setState(n *Node, s NodeState) {
	if n.State != s || n.Since.IsZero() {
		n.State = s
		n.Since = time.Now()
	}
}

func (g *Gossip) decodeMeta(ml *memberlist.Node) Meta {
	m, err := DecodeMeta(ml.Meta)
	if err != nil {
		g.logger.Warn("ignoring undecodable metadata", "node", ml.Name, "addr", ml.Address(), "error", err)
		return Meta{}
	}
	return m
}

func (g *Gossip) observeJoin(ml *memberlist.Node) {
	meta, addr := g.decodeMeta(ml), ml.Address()
	g.record(ml.Name, func(n *Node, _ bool) []EventType {
		n.Addr, n.Meta = addr, meta
		g.setState(n, StateAlive)
		n.Since = time.Now() // a join starts a new life even from alive
		delete(g.lost, ml.Name)
		return []EventType{EventJoin}
	})
}

func (g *Gossip) observeUpdate(ml *memberlist.Node) {
	meta, addr := g.decodeMeta(ml), ml.Address()
	g.record(ml.Name, func(n *Node, exists bool) []EventType {
		// memberlist only reports an update for a node it holds as alive
		// after an alive message with a higher incarnation and other
		// metadata, which is also how a suspect node refutes. Another
		// Boot is another process: the node restarted, perhaps before
		// this agent's memberlist even suspected it, while its failure
		// detector (confirming another agent's suspicion) failed it;
		// that is a sign of life too.
		var types []EventType
		restarted := exists && n.Meta.Boot != 0 && meta.Boot != n.Meta.Boot
		if exists && (n.State == StateSuspect || (restarted && n.State == StateAlive)) {
			types = append(types, EventAlive)
		}
		if !exists || n.State == StateDead || n.State == StateLeft {
			types = append(types, EventJoin)
		}
		g.setState(n, StateAlive)
		n.Addr, n.Meta = addr, meta
		delete(g.lost, ml.Name)
		return append(types, EventUpdate)
	})
}

func (g *Gossip) observeLeave(ml *memberlist.Node) {
	meta, addr := g.decodeMeta(ml), ml.Address()
	g.record(ml.Name, func(n *Node, _ bool) []EventType {
		n.Addr, n.Meta = addr, meta
		if meta.Leaving {
			g.setState(n, StateLeft)
			delete(g.lost, ml.Name)
			return []EventType{EventLeft}
		}
		g.setState(n, StateDead)
		g.noteLostLocked(ml.Name, addr)
		return []EventType{EventDead}
	})
}

// observeSuspect is called for memberlist's "Suspect X has failed" log
// line: this node's probe of X just failed and memberlist marks X suspect.
func (g *Gossip) observeSuspect(id string) {
	g.record(id, func(n *Node, exists bool) []EventType {
		if !exists || n.State != StateAlive || id == g.nodeID {
			return nil
		}
		g.setState(n, StateSuspect)
		return []EventType{EventSuspect}
	})
}

// observeAck is called when this node's probe of id was answered.
func (g *Gossip) observeAck(id string) {
	g.record(id, func(n *Node, exists bool) []EventType {
		if !exists || n.State != StateSuspect {
			return nil
		}
		g.setState(n, StateAlive)
		return []EventType{EventAlive}
	})
}

// newBoot draws Meta.Boot for this process: random, never 0.
func newBoot() uint64 { return rand.Uint64() | 1 }

// ---- memberlist delegates -----------------------------------------------

// delegates implements memberlist's Delegate, EventDelegate,
// ConflictDelegate and PingDelegate on behalf of a Gossip, so that those
// methods are not part of Gossip's API. memberlist calls the event and
// conflict methods with its node lock held: they only touch Gossip.mu
// (briefly) and the non-blocking event queue.
type delegates struct{ g *Gossip }

func (d *delegates) NodeMeta(limit int) []byte {
	d.g.mu.Lock()
	defer d.g.mu.Unlock()
	if len(d.g.metaBytes) > limit { // cannot happen: EncodeMeta enforces 512
		d.g.logger.Error("metadata over memberlist's limit, sending none", "size", len(d.g.metaBytes), "limit", limit)
		return nil
	}
	return slices.Clone(d.g.metaBytes)
}

func (d *delegates) NotifyMsg([]byte)                           {}
func (d *delegates) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *delegates) LocalState(join bool) []byte                { return nil }
func (d *delegates) MergeRemoteState(buf []byte, join bool)     {}

func (d *delegates) NotifyJoin(n *memberlist.Node)   { d.g.observeJoin(n) }
func (d *delegates) NotifyLeave(n *memberlist.Node)  { d.g.observeLeave(n) }
func (d *delegates) NotifyUpdate(n *memberlist.Node) { d.g.observeUpdate(n) }

// IDClaim is another process, at another address, that claims this
// member's own node ID.
type IDClaim struct {
	// Addr is its gossip address.
	Addr string
	// Meta is what it publishes (its API and raft addresses, raft ID).
	Meta Meta
}

// IDClaimedBy returns the last other process seen claiming this member's
// node ID, if any. A newcomer sees the member that already has its ID in
// the state its Join receives: memberlist keeps the running one and
// ignores the newcomer everywhere, so the newcomer must not go on.
func (g *Gossip) IDClaimedBy() (IDClaim, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.idClaim == nil {
		return IDClaim{}, false
	}
	return *g.idClaim, true
}

// ClaimantAnswers pings the process that claimed this member's node ID, at
// its gossip address and under the ID they share (memberlist answers a
// ping only for its own name). A running duplicate answers; a process
// that does not is this node's own previous incarnation, restarted at a
// new address, which memberlist accepts once the old entry is dead. Two
// pings, each bounded by the profile's probe timeout.
func (g *Gossip) ClaimantAnswers(c IDClaim) bool {
	addr, err := net.ResolveUDPAddr("udp", c.Addr)
	if err != nil {
		return false
	}
	for range 2 {
		if _, err := g.ml.Ping(g.nodeID, addr); err == nil {
			return true
		}
	}
	return false
}

// NotifyConflict is called when a process at another address claims a node
// ID this member knows. memberlist keeps the known entry and ignores the
// newcomer until the known one has left, or has been dead for
// Config.DeadNodeReclaimTime; then the newcomer's next alive message (its
// join, or a later push/pull) replaces it and peers see EventJoin with the
// new address. Two live processes with one ID keep conflicting: that is a
// configuration error, logged here on every occurrence.
func (d *delegates) NotifyConflict(existing, other *memberlist.Node) {
	if existing.Name == d.g.nodeID {
		claim := IDClaim{Addr: other.Address(), Meta: d.g.decodeMeta(other)}
		d.g.mu.Lock()
		d.g.idClaim = &claim
		d.g.mu.Unlock()
		d.g.logger.Error("node ID conflict: another process claims this node's ID",
			"node", existing.Name, "own_addr", existing.Address(), "claimed_by_addr", claim.Addr, "claimed_by_api", claim.Meta.APIAddr)
		return
	}
	d.g.logger.Error("node ID conflict: another process claims a known node ID; keeping the known one until it has left or been dead for DeadNodeReclaimTime",
		"node", existing.Name, "known_addr", existing.Address(), "claimed_by_addr", other.Address())
}

func (d *delegates) AckPayload() []byte { return nil }

func (d *delegates) NotifyPingComplete(other *memberlist.Node, rtt time.Duration, payload []byte) {
	d.g.observeAck(other.Name)
}

// memberlistLog is the writer behind memberlist's *log.Logger: it forwards
// every line to hclog and watches for the line memberlist logs when it
// marks a node suspect after its own probe failed (state.go, probeNode, in
// memberlist v0.6.0; the suspicion test fails if that line changes).
type memberlistLog struct {
	next      io.Writer
	onSuspect func(id string)
}

var (
	suspectPrefix = []byte("memberlist: Suspect ")
	suspectSuffix = []byte(" has failed, no acks received")
)

func (w *memberlistLog) Write(p []byte) (int, error) {
	if id, ok := parseSuspectLine(p); ok {
		w.onSuspect(id)
	}
	return w.next.Write(p)
}

func parseSuspectLine(p []byte) (string, bool) {
	i := bytes.Index(p, suspectPrefix)
	if i < 0 {
		return "", false
	}
	rest := bytes.TrimRight(p[i+len(suspectPrefix):], "\r\n")
	id, ok := bytes.CutSuffix(rest, suspectSuffix)
	if !ok || len(id) == 0 {
		return "", false
	}
	return string(id), true
}
