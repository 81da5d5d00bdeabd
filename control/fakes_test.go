package control

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/gossip"
	"github.com/steward-dev/steward/health"
	"github.com/steward-dev/steward/raftctl"
)

// The fakes the control plane's tests run it with: raft as one in-memory
// server whose state machine applies commands at once, gossip as a list of
// nodes, the detector as a map, and a clock the test moves.

// testConfig is the agent's defaults for node self.
func testConfig(self string) Config {
	return Config{
		NodeID: self, RaftID: self + "-r",
		BootstrapExpect: 1, Partitions: 8, ReplicationFactor: 2,
		Voters: 5, ProbeInterval: time.Second,
		MigrationTimeout: 10 * time.Minute, MaxMigrationsPerNode: 2, MaxMigrations: 32,
		ReapAfter: 72 * time.Hour,
		Leases:    LeaseTimingsFor(health.LANConfig()),
	}
}

// fakeClock is a clock whose wall and monotonic readings tests move
// separately: Step moves the wall clock only, as NTP or an operator does;
// Advance moves both, as time passing does.
type fakeClock struct {
	mu      sync.Mutex
	wall    time.Time
	elapsed time.Duration
}

func newFakeClock() *fakeClock {
	return &fakeClock{wall: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wall
}

func (c *fakeClock) Elapsed() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.elapsed
}

func (c *fakeClock) Step(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wall = c.wall.Add(d)
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wall = c.wall.Add(d)
	c.elapsed += d
}

// fakeRaft is one raft server in memory: its configuration, its state
// machine (a failover.Cluster that applies commands at once), and a log of
// the configuration changes asked of it.
type fakeRaft struct {
	mu     sync.Mutex
	self   string // this server's raft ID
	leader bool
	// leaderID is the leader other servers see once this one handed
	// leadership over.
	leaderID string
	cluster  *failover.Cluster
	servers  []raftctl.Server
	term     uint64
	// peers answer PingServer, by raft address; a missing one fails.
	peers map[string]raftctl.PeerStatus
	// pings counts the PingServer calls.
	pings int
	// ops records configuration changes: "add x", "remove x", "promote x",
	// "demote x", "transfer".
	ops []string
	// commands records every command applied.
	commands []failover.Command
	// refuse makes every apply fail with it (no leader, say).
	refuse error
	// stateIndex counts the commands applied (raftctl.Node.StateIndex).
	stateIndex uint64
}

func newFakeRaft(self string, c *failover.Cluster) *fakeRaft {
	return &fakeRaft{self: self, leader: true, cluster: c, term: 1, peers: map[string]raftctl.PeerStatus{}}
}

func (r *fakeRaft) Read(fn func(c *failover.Cluster)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fn(r.cluster)
}

func (r *fakeRaft) StateIndex() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stateIndex
}

func (r *fakeRaft) Snapshot() *failover.Cluster {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cluster.Clone()
}

func (r *fakeRaft) Subscribe() (<-chan struct{}, func()) { return make(chan struct{}), func() {} }

func (r *fakeRaft) ApplyForwarded(ctx context.Context, cmd failover.Command) (failover.Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.refuse != nil {
		return failover.Result{}, r.refuse
	}
	res, err := r.cluster.Apply(cmd)
	if err == nil {
		r.commands = append(r.commands, cmd)
		r.stateIndex++
	}
	return res, err
}

func (r *fakeRaft) Configuration() ([]raftctl.Server, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]raftctl.Server(nil), r.servers...), nil
}

func (r *fakeRaft) find(id string) int {
	for i, s := range r.servers {
		if s.ID == id {
			return i
		}
	}
	return -1
}

func (r *fakeRaft) AddNonvoter(id, addr string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, "add "+id)
	if i := r.find(id); i >= 0 {
		r.servers[i].Address = addr
		return nil
	}
	r.servers = append(r.servers, raftctl.Server{ID: id, Address: addr})
	return nil
}

func (r *fakeRaft) Remove(id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, "remove "+id)
	if i := r.find(id); i >= 0 {
		r.servers = append(r.servers[:i], r.servers[i+1:]...)
		return nil
	}
	return fmt.Errorf("no server %s", id)
}

func (r *fakeRaft) setVoter(op, id string, voter bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, op+" "+id)
	if i := r.find(id); i >= 0 {
		r.servers[i].Voter = voter
		return nil
	}
	return fmt.Errorf("no server %s", id)
}

func (r *fakeRaft) Promote(id string) error { return r.setVoter("promote", id, true) }
func (r *fakeRaft) Demote(id string) error  { return r.setVoter("demote", id, false) }

func (r *fakeRaft) Bootstrap(servers []raftctl.Server) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.servers) > 0 {
		return errors.New("already bootstrapped")
	}
	r.servers = append([]raftctl.Server(nil), servers...)
	return nil
}

func (r *fakeRaft) HasState() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.servers) > 0
}

func (r *fakeRaft) IsLeader() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.leader
}

func (r *fakeRaft) Term() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.term
}

func (r *fakeRaft) ConfirmLeadership(term uint64, _, _ time.Duration) (time.Time, error) {
	if !r.IsLeader() || r.Term() != term {
		return time.Time{}, raftctl.ErrNotLeader
	}
	return time.Now(), nil
}

func (r *fakeRaft) Leader() (string, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.leader {
		return r.self, "addr-" + r.self
	}
	return r.leaderID, ""
}

func (r *fakeRaft) TransferLeadership() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, "transfer")
	for _, s := range r.servers {
		if s.Voter && s.ID != r.self {
			r.leader, r.leaderID = false, s.ID
			return nil
		}
	}
	return errors.New("no other voter to transfer leadership to")
}

func (r *fakeRaft) Stats() raftctl.Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := uint64(len(r.commands))
	return raftctl.Stats{Term: r.term, LastIndex: n, CommitIndex: n, AppliedIndex: n}
}

func (r *fakeRaft) PingServer(ctx context.Context, id, addr string) (raftctl.PeerStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pings++
	st, ok := r.peers[addr]
	if !ok {
		return raftctl.PeerStatus{}, fmt.Errorf("%s does not answer", addr)
	}
	return st, nil
}

// takePings returns the number of PingServer calls since the last call.
func (r *fakeRaft) takePings() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.pings
	r.pings = 0
	return n
}

// takeOps returns the configuration changes since the last call.
func (r *fakeRaft) takeOps() []string { return take(&r.mu, &r.ops) }

// takeCommands returns the commands applied since the last call.
func (r *fakeRaft) takeCommands() []failover.Command { return take(&r.mu, &r.commands) }

// take empties a record kept under mu and returns what it held.
func take[T any](mu *sync.Mutex, record *[]T) []T {
	mu.Lock()
	defer mu.Unlock()
	out := *record
	*record = nil
	return out
}

// fakeMembers is gossip's view: nodes by ID.
type fakeMembers struct {
	mu    sync.Mutex
	nodes map[string]gossip.Node
}

func (m *fakeMembers) Members() []gossip.Node {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []gossip.Node
	for _, n := range m.nodes {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (m *fakeMembers) Member(id string) (gossip.Node, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, ok := m.nodes[id]
	return n, ok
}

func (m *fakeMembers) set(id string, state gossip.NodeState) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.nodes[id]
	n.State = state
	m.nodes[id] = n
}

// fakeDetector is the failure detector's view: node ID to state.
type fakeDetector struct {
	mu       sync.Mutex
	nodes    map[string]health.NodeHealth
	observed []health.Observation
}

func (d *fakeDetector) Node(id string) (health.NodeHealth, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	h, ok := d.nodes[id]
	return h, ok
}

// Observe records what the control plane asked the detector to look at.
func (d *fakeDetector) Observe(ev health.Observation) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.observed = append(d.observed, ev)
}

func (d *fakeDetector) set(id string, st health.State, since time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.nodes[id] = health.NodeHealth{Node: id, State: st, LastChange: since}
}

// cluster is a controller on node self over fakes, with a bootstrapped
// state of the given nodes: each alive in gossip, healthy in the
// detector, a raft server (raft ID "<id>-r", address "<id>:7947"), a voter
// when voter says so.
type cluster struct {
	ctrl     *Controller
	raft     *fakeRaft
	members  *fakeMembers
	detector *fakeDetector
	clock    *fakeClock
}

func newCluster(self string, nodes []string, voters map[string]bool) *cluster {
	cfg := testConfig(self)
	state := failover.NewCluster()
	var ms []failover.Member
	fm := &fakeMembers{nodes: map[string]gossip.Node{}}
	for _, id := range nodes {
		m := failover.Member{ID: id, RaftID: id + "-r", RaftAddr: id + ":7947", GossipAddr: id + ":7946", Voter: voters[id]}
		ms = append(ms, m)
		fm.nodes[id] = gossip.Node{ID: id, Addr: m.GossipAddr, State: gossip.StateAlive,
			Meta: gossip.Meta{RaftID: m.RaftID, RaftAddr: m.RaftAddr}}
	}
	if _, err := state.Apply(failover.Command{Kind: failover.CmdBootstrap, At: 1, Members: ms,
		Settings: &failover.Settings{Partitions: cfg.Partitions, ReplicationFactor: cfg.ReplicationFactor}}); err != nil {
		panic(err)
	}
	r := newFakeRaft(self+"-r", state)
	for _, m := range ms {
		r.servers = append(r.servers, raftctl.Server{ID: m.RaftID, Address: m.RaftAddr, Voter: m.Voter})
	}
	cl := &cluster{raft: r, members: fm, detector: &fakeDetector{nodes: map[string]health.NodeHealth{}}, clock: newFakeClock()}
	for _, id := range nodes {
		if id != self {
			cl.detector.set(id, health.StateHealthy, time.Time{})
		}
	}
	cl.ctrl = New(cfg, Deps{Raft: r, Members: fm, Detector: cl.detector, Clock: cl.clock})
	return cl
}

// member is the state's view of one member.
func (cl *cluster) member(id string) failover.Member {
	var m failover.Member
	cl.raft.Read(func(c *failover.Cluster) { m = c.Members[id] })
	return m
}

// voters are the raft configuration's voters, sorted.
func (cl *cluster) voters() []string {
	servers, _ := cl.raft.Configuration()
	var out []string
	for _, s := range servers {
		if s.Voter {
			out = append(out, s.ID)
		}
	}
	sort.Strings(out)
	return out
}

// setStatus commits a status change of id, with the promotions it needs,
// as the leader or the leaving node does.
func (cl *cluster) setStatus(id string, st failover.MemberStatus) {
	snap := cl.raft.Snapshot()
	actions := failover.PlanStatus(snap, id, st, 1)
	if st == failover.StatusFailed {
		actions = failover.PlanFailure(snap, id, 1)
	}
	if _, err := cl.raft.ApplyForwarded(context.Background(), failover.Command{Kind: failover.CmdSetStatus, At: cl.clock.Now().UnixNano(), Node: id, Status: st, Actions: actions}); err != nil {
		panic(err)
	}
	cl.ctrl.Ages().Observe(cl.raft.Snapshot(), cl.clock.Elapsed())
}

// recorder is an Observer that counts.
type recorder struct {
	mu           sync.Mutex
	markedFailed int
	frozen       []bool
	// actions counts the actions of recorded decisions by kind.
	actions map[failover.ActionKind]int
	// planned counts the planner rounds.
	planned int
}

func (o *recorder) Applied(time.Duration) {}
func (o *recorder) MarkedFailed() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.markedFailed++
}
func (o *recorder) Frozen(f bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.frozen = append(o.frozen, f)
}
func (o *recorder) Planned(time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.planned++
}

func (o *recorder) plans() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.planned
}
func (o *recorder) Decided(_ string, actions []failover.Action) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.actions == nil {
		o.actions = map[failover.ActionKind]int{}
	}
	for _, a := range actions {
		o.actions[a.Kind]++
	}
}
