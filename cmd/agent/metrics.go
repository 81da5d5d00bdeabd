package main

import (
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
}

func newAgentMetrics() *agentMetrics {
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
	descReady = prometheus.NewDesc("steward_ready", "1 once this agent has caught up and serves the partition table.", nil, nil)
)

// stateCollector reads raft and the cluster state at scrape time, so that
// the figures are never stale.
type stateCollector struct{ a *Agent }

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRaftState, descRaftTerm, descCommitIndex, descAppliedIdx, descMembers, descPrimaries, descCopies, descReady} {
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
	if a.ready.Load() {
		ready = 1
	}
	ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, ready)
	byStatus := map[string]int{}
	for _, s := range []failover.MemberStatus{failover.StatusAlive, failover.StatusSuspect, failover.StatusFailed, failover.StatusLeaving, failover.StatusLeft} {
		byStatus[string(s)] = 0
	}
	for _, m := range a.members() {
		byStatus[m.Status]++
	}
	for s, n := range byStatus {
		ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(n), s)
	}
	a.raft.Read(func(cl *failover.Cluster) {
		primaries, copies := loadByNode(cl)
		for _, id := range cl.MemberIDs() {
			ch <- prometheus.MustNewConstMetric(descPrimaries, prometheus.GaugeValue, float64(primaries[id]), id)
			ch <- prometheus.MustNewConstMetric(descCopies, prometheus.GaugeValue, float64(copies[id]), id)
		}
	})
}
