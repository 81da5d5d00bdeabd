package control

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/steward-dev/steward/failover"
)

// Controller carries out the duties of one agent towards the cluster: as
// leader, the reconcile round (Reconcile) and the lease ledger; on every
// agent, the bootstrap, the steps of a leave and the drops of copies its
// app lost. It starts no goroutine: the agent calls it from its loops and
// its HTTP handlers, and it is safe for concurrent use.
//
// Each duty gathers its inputs through the interfaces (I/O), decides with
// a pure function of them (tested with tables), and applies the decision
// through Raft, one kind of change per step.
type Controller struct {
	cfg      Config
	raft     Raft
	members  Membership
	detector Detector
	clock    Clock
	log      hclog.Logger
	obs      Observer
	// restarter asks members to restart (rolling restarts).
	restarter Restarter

	// ages times migrations and member statuses on clock.Elapsed.
	ages *AgeTracker
	// stability is, on the leader, since when each raft server has been
	// healthy (for voter promotion).
	stability stability
	// freeze is why automatic removals are frozen ("" when not), and how
	// many failures the last round counted at once.
	freeze freezeState
	// events is the bounded log of decisions applied as leader.
	events eventLog
	// leases is the leader's ledger of primary leases.
	leases *LeaseLedger
	// primaries answers the grants: each member's primaries, per state.
	primaries primariesIndex
	// load is the leader's memory of the apps' load and disk reports.
	load *LoadBook
	// idle is the last plan that proposed nothing (runPlanner).
	idle idlePlan
	// involved answers which members take part in partitions, per state.
	involved involvedIndex
	// leaving is set once this agent has begun to leave: it is then no
	// longer a healthy server for voter planning.
	leaving atomic.Bool
	// restarting is set once this agent has begun to go away for a
	// planned restart: it is then no longer a healthy server either.
	restarting atomic.Bool
}

// Deps are what a Controller works through.
type Deps struct {
	Raft     Raft
	Members  Membership
	Detector Detector
	// Clock defaults to the system clock.
	Clock Clock
	// Logger defaults to no logs.
	Logger hclog.Logger
	// Observer defaults to observing nothing.
	Observer Observer
	// Restarter asks members to restart for a rolling restart; without
	// one, this agent starts rolling restarts but does not drive them.
	Restarter Restarter
}

// New returns a controller for cfg over deps.
func New(cfg Config, deps Deps) *Controller {
	c := &Controller{
		cfg: cfg, raft: deps.Raft, members: deps.Members, detector: deps.Detector,
		clock: deps.Clock, log: deps.Logger, obs: deps.Observer, restarter: deps.Restarter,
		ages:   NewAgeTracker(),
		leases: NewLeaseLedger(cfg.Leases),
	}
	ttl := cfg.LoadReportTTL
	if ttl <= 0 {
		ttl = DefaultLoadReportTTL
	}
	c.load = NewLoadBook(ttl)
	if c.clock == nil {
		c.clock = NewSystemClock()
	}
	if c.log == nil {
		c.log = hclog.NewNullLogger()
	}
	if c.obs == nil {
		c.obs = noObserver{}
	}
	return c
}

type noObserver struct{}

func (noObserver) Applied(time.Duration)             {}
func (noObserver) MarkedFailed()                     {}
func (noObserver) Frozen(bool)                       {}
func (noObserver) Planned(time.Duration)             {}
func (noObserver) Decided(string, []failover.Action) {}

// Ages is the controller's age tracker (migrations and member statuses on
// the monotonic clock); the agent feeds it every applied state.
func (c *Controller) Ages() *AgeTracker { return c.ages }

// Load is the leader's book of the apps' load and disk reports.
func (c *Controller) Load() *LoadBook { return c.load }

// Leases is the leader's lease ledger.
func (c *Controller) Leases() *LeaseLedger { return c.leases }

// Events is the log of decisions this agent applied as leader.
func (c *Controller) Events() []Event { return c.events.list() }

// RecordEvent adds a decision to the log (for the agent's own decisions,
// such as the drops of a holdings report).
func (c *Controller) RecordEvent(typ, summary string, actions []failover.Action) {
	c.events.record(c.clock.Now(), typ, summary, actions)
	c.obs.Decided(typ, actions)
}

// SetLeaving tells the controller that this agent is leaving (true) or
// that a leave was refused and changed nothing (false).
func (c *Controller) SetLeaving(on bool) { c.leaving.Store(on) }

// applyTimeout bounds one command, forwarding to the leader included.
const applyTimeout = 10 * time.Second

// Apply commits cmd through raft, directly on the leader, forwarded to the
// leader otherwise, within applyTimeout and ctx.
func (c *Controller) Apply(ctx context.Context, cmd failover.Command) (failover.Result, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, applyTimeout)
	defer cancel()
	res, err := c.raft.ApplyForwarded(ctx, cmd)
	c.obs.Applied(time.Since(start))
	return res, err
}

// MemberState copies the cluster state without its partition table: what
// the steps that only look at members need, at a fraction of the cost of
// a full copy when there are many partitions.
func (c *Controller) MemberState() *failover.Cluster {
	out := failover.NewCluster()
	c.raft.Read(func(cl *failover.Cluster) {
		out.Bootstrapped = cl.Bootstrapped
		out.Settings = cl.Settings
		out.Maintenance = cl.Maintenance
		out.Rolling = cl.Rolling.Clone()
		for id, m := range cl.Members {
			out.Members[id] = m
		}
	})
	return out
}

// stability tracks since when each raft server has been healthy without
// interruption, on the controller's monotonic clock.
type stability struct {
	mu    sync.Mutex
	since map[string]time.Duration // raft ID: clock.Elapsed when healthy since
}
