package agent

import (
	"time"

	"github.com/steward-dev/steward/gossip"
	"github.com/steward-dev/steward/health"
	"github.com/steward-dev/steward/hooks"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/steward-dev/steward/failover"
)

// agentMetrics are the agent's Prometheus metrics, on a registry of its own
// so that several agents in one test process do not collide.
type agentMetrics struct {
	registry     *prometheus.Registry
	applyLatency prometheus.Histogram
	gossipEvents *prometheus.CounterVec

	verdicts           *prometheus.CounterVec
	suspicionToVerdict prometheus.Histogram
	removals           prometheus.Counter
	frozen             prometheus.Gauge
	quorumLost         prometheus.Gauge
	clockSkew          prometheus.Gauge
	appHealthy         prometheus.Gauge
	actions            *prometheus.CounterVec
	planSeconds        prometheus.Histogram

	deliveries       *prometheus.CounterVec
	deliveryRetries  prometheus.Counter
	deliverySeconds  prometheus.Histogram
	migrationSeconds prometheus.Histogram
	copyFailures     *prometheus.CounterVec

	loadReports *prometheus.CounterVec
}

// ObserveDelivery implements hooks.Observer: every webhook attempt.
func (m *agentMetrics) ObserveDelivery(eventType, result string, attempt int, latency time.Duration) {
	m.deliveries.WithLabelValues(eventType, result).Inc()
	if attempt > 1 {
		m.deliveryRetries.Inc()
	}
	m.deliverySeconds.Observe(latency.Seconds())
}

// Applied, MarkedFailed, Frozen, Planned and Decided implement
// control.Observer.
func (m *agentMetrics) Applied(took time.Duration) { m.applyLatency.Observe(took.Seconds()) }

func (m *agentMetrics) MarkedFailed() { m.removals.Inc() }

func (m *agentMetrics) Frozen(frozen bool) {
	if frozen {
		m.frozen.Set(1)
	} else {
		m.frozen.Set(0)
	}
}

func (m *agentMetrics) Planned(took time.Duration) { m.planSeconds.Observe(took.Seconds()) }

// Decided counts the actions of every decision in the event log, so that
// steward_plan_actions_total adds up to what GET /v1/events lists; a
// cancelled copy that timed out counts in steward_copy_failures_total.
func (m *agentMetrics) Decided(_ string, actions []failover.Action) {
	for _, act := range actions {
		m.actions.WithLabelValues(string(act.Kind)).Inc()
		if act.Kind == failover.ActionCancelMigration && act.CopyFailed {
			m.copyFailures.WithLabelValues(act.Node, "timeout").Inc()
		}
	}
}

// newAgentMetrics registers the agent's metrics; nodeID and zone label its
// steward_node_info series.
func newAgentMetrics(nodeID, zone string) *agentMetrics {
	m := &agentMetrics{
		registry: prometheus.NewRegistry(),
		applyLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "steward_raft_apply_seconds",
			Help: "Time to commit and apply one command through raft, as seen by its proposer (forwarding included).",
			// 100 µs to about 6.5 s: group commit makes most applies take
			// a few milliseconds; the tail shows elections and slow disks.
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 17),
		}),
		gossipEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "steward_gossip_events_total",
			Help: "Gossip events seen, by type (join, suspect, alive, dead, left, update).",
		}, []string{"type"}),
	}
	for t := gossip.EventJoin; t <= gossip.EventUpdate; t++ {
		m.gossipEvents.WithLabelValues(t.String())
	}
	m.verdicts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "steward_health_verdicts_total",
		Help: "Verdicts of this agent's failure detector, by kind (failed, recovered).",
	}, []string{"kind"})
	for _, k := range []health.VerdictKind{health.VerdictFailed, health.VerdictRecovered} {
		m.verdicts.WithLabelValues(k.String())
	}
	m.suspicionToVerdict = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "steward_health_suspicion_to_verdict_seconds",
		Help: "Time from the first sign of trouble with a node to its failed verdict.",
		// 50 ms to about 100 s: the local profile decides in about half a
		// second, the wan profile in about ten.
		Buckets: prometheus.ExponentialBuckets(0.05, 2, 12),
	})
	m.removals = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "steward_members_failed_total",
		Help: "Members this agent, as leader, marked failed (and removed from raft).",
	})
	m.frozen = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "steward_removals_frozen",
		Help: "1 while automatic removals are frozen (too many failures at once, or maintenance).",
	})
	m.quorumLost = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "steward_quorum_lost",
		Help: "1 while this agent has seen no raft leader for longer than the election timeout.",
	})
	m.clockSkew = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "steward_clock_skew_seconds",
		Help: "This agent's wall clock minus the leader's, measured over the raft port every 10 s (0 on the leader). Webhook timestamps carry this clock.",
	})
	m.appHealthy = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "steward_app_healthy",
		Help: "1 while the co-located app passes its health checks (1 when no check is configured).",
	})
	m.appHealthy.Set(1)
	m.actions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "steward_plan_actions_total",
		Help: "Actions of the decisions this agent applied (those GET /v1/events lists: failures' promotions, planner rounds, forgotten members, lost copies), by kind.",
	}, []string{"kind"})
	// Every kind starts at 0, so that rate() and increase() see the first
	// one (a kind added later appears when first counted).
	for _, k := range []failover.ActionKind{failover.ActionPromote, failover.ActionStartMigration, failover.ActionCompleteMigration,
		failover.ActionCancelMigration, failover.ActionRemoveReplica, failover.ActionDropLostCopy} {
		m.actions.WithLabelValues(string(k))
	}
	m.planSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "steward_plan_seconds",
		Help:    "Time the planner takes for one round.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
	})
	m.deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "steward_webhook_deliveries_total",
		Help: "Webhook delivery attempts to the app, by event type and result (ok, copying, rejected, error).",
	}, []string{"type", "result"})
	for _, typ := range []string{hooks.TypeAssign, hooks.TypePromote, hooks.TypeDemote, hooks.TypeRelease, hooks.TypeRejoin, hooks.TypeQuorum} {
		for _, result := range []string{hooks.ResultOK, hooks.ResultCopying, hooks.ResultRejected, hooks.ResultError} {
			m.deliveries.WithLabelValues(typ, result)
		}
	}
	m.deliveryRetries = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "steward_webhook_retries_total",
		Help: "Webhook delivery attempts after the first of their event.",
	})
	m.deliverySeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "steward_webhook_delivery_seconds",
		Help:    "Time of one webhook request to the app.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 15),
	})
	m.migrationSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "steward_migration_seconds",
		Help: "Time from the start of a copy (as this agent saw it committed) to its completion, for copies made by this node's app.",
		// 10 ms to about 3 hours: copies range from empty partitions to
		// large ones over a slow link.
		Buckets: prometheus.ExponentialBuckets(0.01, 2, 21),
	})
	build := Build()
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "steward_build_info",
		Help: "Always 1; its labels say which build of the agent runs: version (the agent's), revision (VCS commit, \"unknown\" when built without VCS stamping) and goversion.",
	}, []string{"version", "revision", "goversion"})
	buildInfo.WithLabelValues(build.Version, build.Revision, build.GoVersion).Set(1)
	// The node ID as an info metric rather than a label on every series:
	// join it where a node ID is wanted, e.g.
	// steward_ready * on(instance) group_left(node_id) steward_node_info.
	nodeInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "steward_node_info",
		Help: "Always 1; maps the scraped instance to this agent's node ID (-node-id) and zone (-zone).",
	}, []string{"node_id", "zone"})
	nodeInfo.WithLabelValues(nodeID, zone).Set(1)
	m.registry.MustRegister(buildInfo, nodeInfo)
	m.copyFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "steward_copy_failures_total",
		Help: "Copies of partitions that failed, by target node and cause: app (the target's app refused the copy; counted by the target's agent) or timeout (counted by the leader that cancelled it).",
	}, []string{"node", "cause"})
	// This node's series exist from the start, at zero, so that rate()
	// sees the first failure.
	m.copyFailures.WithLabelValues(nodeID, "app")
	m.copyFailures.WithLabelValues(nodeID, "timeout")
	m.registry.MustRegister(m.deliveries, m.deliveryRetries, m.deliverySeconds, m.migrationSeconds, m.copyFailures)
	m.loadReports = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "steward", Name: "app_load_reports_total",
		Help: "Load reports of the app (POST /v1/app/load) by result: accepted, or rejected (bad reports change nothing).",
	}, []string{"result"})
	for _, r := range []string{"accepted", "rejected"} {
		m.loadReports.WithLabelValues(r)
	}
	m.registry.MustRegister(m.loadReports)
	m.registry.MustRegister(m.verdicts, m.suspicionToVerdict, m.removals, m.frozen, m.quorumLost, m.clockSkew, m.appHealthy, m.actions, m.planSeconds)
	m.registry.MustRegister(m.applyLatency, m.gossipEvents,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

var (
	descRaftState = prometheus.NewDesc("steward_raft_state",
		"1 for the raft state this agent is in (leader, follower, candidate, shutdown).", []string{"state"}, nil)
	descRaftTerm    = prometheus.NewDesc("steward_raft_term", "Current raft term.", nil, nil)
	descCommitIndex = prometheus.NewDesc("steward_raft_commit_index", "Raft commit index.", nil, nil)
	descAppliedIdx  = prometheus.NewDesc("steward_raft_applied_index", "Index of the last entry applied to the cluster state.", nil, nil)
	descMembers     = prometheus.NewDesc("steward_members",
		"Members of the cluster by status.", []string{"status"}, nil)
	descPrimaries = prometheus.NewDesc("steward_partitions_primary",
		"Partitions whose primary is on a node.", []string{"node"}, nil)
	descCopies = prometheus.NewDesc("steward_partitions_copies",
		"Copies (primary included) of partitions held by a node.", []string{"node"}, nil)
	descReady = prometheus.NewDesc("steward_ready", "1 while this agent has caught up and is in contact with the leader (its partition table is current).", nil, nil)

	descLeaderContact  = prometheus.NewDesc("steward_leader_contact_age_seconds", "Time since this agent sent the newest lease renewal whose grant its raft log has caught up with (-1: never): how old its view of the cluster may be.", nil, nil)
	descLeasePrimaries = prometheus.NewDesc("steward_lease_primaries", "Partitions this node's app may serve as primary now (its primary lease).", nil, nil)
	descLeaseRelayed   = prometheus.NewDesc("steward_lease_renewals_relayed_total", "Lease renewals of other agents this voter relayed to the leader in batches.", nil, nil)
	descHeldHeartbeats = prometheus.NewDesc("steward_raft_heartbeats_held_total", "Raft heartbeats to non-voters this agent, as leader, held until the non-voter was due one (0.4 heartbeat timeout after its last answer).", nil, nil)

	descSuspicions   = prometheus.NewDesc("steward_health_suspicions_total", "Peers that went from healthy to suspect in this agent's detector.", nil, nil)
	descFailedProbes = prometheus.NewDesc("steward_health_failed_probes_total", "Failed probes of peers (a gossip dead counts as one).", nil, nil)
	descFlaps        = prometheus.NewDesc("steward_health_flaps_total", "Hold-downs started for flapping peers.", nil, nil)
	descInconclusive = prometheus.NewDesc("steward_health_inconclusive_probes_total", "Probes of peers that ran out while this agent was itself starved of CPU; they count neither as failures nor as successes.", nil, nil)
	descProbeTimeout = prometheus.NewDesc("steward_health_probe_timeout_seconds", "The timeout of this agent's probes now: the profile's, stretched up to four times while its own probes run late.", nil, nil)
	descMigrations   = prometheus.NewDesc("steward_migrations_in_flight", "Copies of partitions in flight in the cluster.", nil, nil)
	descUndelivered  = prometheus.NewDesc("steward_webhook_undelivered", "Webhook events this agent has not yet had acknowledged by its app.", nil, nil)
	descDataLost     = prometheus.NewDesc("steward_partitions_data_lost", "Partitions whose last copy an app reported lost: they have no primary.", nil, nil)
	descUnderRepl    = prometheus.NewDesc("steward_partitions_under_replicated", "Partitions with fewer live copies (on members alive, suspect or leaving) than the replication factor; copies in flight do not count until complete.", nil, nil)
)

// stateCollector reads raft and the cluster state at scrape time, so that
// the figures are never stale.
type stateCollector struct{ a *Agent }

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRaftState, descRaftTerm, descCommitIndex, descAppliedIdx, descMembers, descPrimaries, descCopies, descReady, descSuspicions, descFailedProbes, descFlaps, descInconclusive, descProbeTimeout, descMigrations, descUndelivered, descLeaderContact, descLeasePrimaries, descLeaseRelayed, descHeldHeartbeats, descDataLost, descUnderRepl} {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	st := a.raft.Stats()
	state := a.raft.State()
	for _, s := range []string{"leader", "follower", "candidate", "shutdown"} {
		v := 0.0
		if s == state {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descRaftState, prometheus.GaugeValue, v, s)
	}
	ch <- prometheus.MustNewConstMetric(descRaftTerm, prometheus.GaugeValue, float64(st.Term))
	ch <- prometheus.MustNewConstMetric(descCommitIndex, prometheus.GaugeValue, float64(st.CommitIndex))
	ch <- prometheus.MustNewConstMetric(descAppliedIdx, prometheus.GaugeValue, float64(st.AppliedIndex))
	ready := 0.0
	if ok, _ := a.readiness(); ok {
		ready = 1
	}
	ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, ready)
	lv := a.leaseView()
	contact := -1.0
	if lv.ContactAge >= 0 {
		contact = lv.ContactAge.Seconds()
	}
	ch <- prometheus.MustNewConstMetric(descLeaderContact, prometheus.GaugeValue, contact)
	ch <- prometheus.MustNewConstMetric(descLeasePrimaries, prometheus.GaugeValue, float64(len(lv.Primaries)))
	ch <- prometheus.MustNewConstMetric(descLeaseRelayed, prometheus.CounterValue, float64(a.raft.RelayedLeases()))
	ch <- prometheus.MustNewConstMetric(descHeldHeartbeats, prometheus.CounterValue, float64(a.raft.HeldHeartbeats()))
	hc := a.monitor.Counters()
	ch <- prometheus.MustNewConstMetric(descSuspicions, prometheus.CounterValue, float64(hc.Suspicions))
	ch <- prometheus.MustNewConstMetric(descFailedProbes, prometheus.CounterValue, float64(hc.FailedProbes))
	ch <- prometheus.MustNewConstMetric(descFlaps, prometheus.CounterValue, float64(hc.Flaps))
	ch <- prometheus.MustNewConstMetric(descInconclusive, prometheus.CounterValue, float64(hc.InconclusiveProbes))
	ch <- prometheus.MustNewConstMetric(descProbeTimeout, prometheus.GaugeValue, hc.ProbeTimeout.Seconds())
	byStatus := map[string]int{}
	for _, s := range []failover.MemberStatus{failover.StatusAlive, failover.StatusSuspect, failover.StatusFailed, failover.StatusLeaving, failover.StatusLeft, failover.StatusRestarting} {
		byStatus[string(s)] = 0
	}
	for _, m := range a.members() {
		byStatus[m.Status]++
	}
	for s, n := range byStatus {
		ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(n), s)
	}
	undelivered := 0
	if a.deliverer != nil {
		undelivered = a.deliverer.Pending()
	}
	ch <- prometheus.MustNewConstMetric(descUndelivered, prometheus.GaugeValue, float64(undelivered))
	a.raft.Read(func(cl *failover.Cluster) {
		inFlight := 0
		for _, p := range cl.Partitions {
			inFlight += len(p.Migrations)
		}
		ch <- prometheus.MustNewConstMetric(descMigrations, prometheus.GaugeValue, float64(inFlight))
		ch <- prometheus.MustNewConstMetric(descDataLost, prometheus.GaugeValue, float64(len(cl.LostPartitions())))
		ch <- prometheus.MustNewConstMetric(descUnderRepl, prometheus.GaugeValue, float64(len(cl.UnderReplicated())))
		primaries, copies := loadByNode(cl)
		for _, id := range cl.MemberIDs() {
			ch <- prometheus.MustNewConstMetric(descPrimaries, prometheus.GaugeValue, float64(primaries[id]), id)
			ch <- prometheus.MustNewConstMetric(descCopies, prometheus.GaugeValue, float64(copies[id]), id)
		}
	})
}
