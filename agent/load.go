package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/steward-dev/steward/control"
	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/hooks"
	"github.com/steward-dev/steward/raftctl"

	"github.com/prometheus/client_golang/prometheus"
)

// This file takes the app's load and disk report (POST /v1/app/load, see
// hooks/load.go), passes it on to the leader with the lease renewals, and
// shows the leader's figures (GET /v1/load).

// appLoad is the app's last good report and what was passed on of it.
type appLoad struct {
	mu       sync.Mutex
	figures  *failover.NodeFigures
	postedAt time.Time // when the app posted it (monotonic)
	// sentAt and sentTo: when the report last left with a renewal, and to
	// which leader; it goes again once the app posts a newer one, the
	// leader changes, or a third of the leader's TTL has passed.
	sentAt time.Time
	sentTo string
}

// loadPolicy is the planner's load policy from the configuration.
func (a *Agent) loadPolicy() failover.LoadPolicy {
	pol := failover.DefaultLoadPolicy()
	pol.DiskFull = a.cfg.DiskFullPct / 100
	pol.DiskHigh = a.cfg.DiskHighPct / 100
	pol.Hysteresis = a.cfg.LoadHysteresis.D()
	pol.CountsOnly = a.cfg.BalanceBy != "load"
	return pol
}

// handleAppLoad is POST /v1/app/load with a hooks.LoadReport.
func (a *Agent) handleAppLoad(w http.ResponseWriter, r *http.Request) {
	partitions := 0
	a.raft.Read(func(c *failover.Cluster) { partitions = c.Settings.Partitions })
	if partitions == 0 {
		writeError(w, http.StatusServiceUnavailable, "the cluster has not been bootstrapped yet; report again")
		return
	}
	figs, err := decodeLoadReport(http.MaxBytesReader(w, r.Body, maxLoadBody), partitions)
	if err != nil {
		a.metrics.loadReports.WithLabelValues("rejected").Inc()
		a.log.Warn("the app's load report was refused", "error", err)
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	a.appLoad.mu.Lock()
	a.appLoad.figures, a.appLoad.postedAt = &figs, time.Now()
	a.appLoad.mu.Unlock()
	a.metrics.loadReports.WithLabelValues("accepted").Inc()
	writeJSON(w, http.StatusOK, hooks.LoadResult{Node: a.cfg.NodeID, Partitions: len(figs.Copies)})
}

// maxLoadBody bounds a report's body: MaxLoadReportCopies figures of
// about 80 bytes each.
const maxLoadBody = 2 << 20

// decodeLoadReport reads and checks a hooks.LoadReport: exactly its
// fields, every partition below partitions and listed once, sizes and
// loads finite and not negative, a disk's use within its capacity.
func decodeLoadReport(r io.Reader, partitions int) (failover.NodeFigures, error) {
	const want = `body must be {"disk": {"capacity_bytes": N, "used_bytes": N}, "partitions": [{"partition": N, "size_bytes": N, "load": X}, ...]}`
	body, err := io.ReadAll(r)
	if err != nil {
		return failover.NodeFigures{}, fmt.Errorf("%s: %v", want, err)
	}
	var in hooks.LoadReport
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return failover.NodeFigures{}, fmt.Errorf("%s: %v", want, err)
	}
	if dec.More() {
		return failover.NodeFigures{}, errors.New(want + ": trailing data")
	}
	if in.Partitions == nil {
		return failover.NodeFigures{}, errors.New(want + `: "partitions" is missing or null ([] for none)`)
	}
	if len(in.Partitions) > raftctl.MaxLoadReportCopies {
		return failover.NodeFigures{}, fmt.Errorf("%d partitions in one report, at most %d", len(in.Partitions), raftctl.MaxLoadReportCopies)
	}
	out := failover.NodeFigures{Copies: make(map[int]failover.CopyFigures, len(in.Partitions))}
	if d := in.Disk; d != nil {
		if d.CapacityBytes <= 0 || d.UsedBytes < 0 || d.UsedBytes > d.CapacityBytes {
			return failover.NodeFigures{}, fmt.Errorf("disk: used_bytes %d must be between 0 and capacity_bytes %d, which must be positive", d.UsedBytes, d.CapacityBytes)
		}
		out.DiskCapacity, out.DiskUsed = d.CapacityBytes, d.UsedBytes
	}
	for _, p := range in.Partitions {
		switch {
		case p.Partition < 0 || p.Partition >= partitions:
			return failover.NodeFigures{}, fmt.Errorf("partition %d does not exist: the cluster has partitions 0 to %d", p.Partition, partitions-1)
		case p.SizeBytes < 0:
			return failover.NodeFigures{}, fmt.Errorf("partition %d: size_bytes %d is negative", p.Partition, p.SizeBytes)
		case p.Load < 0 || math.IsNaN(p.Load) || math.IsInf(p.Load, 0):
			return failover.NodeFigures{}, fmt.Errorf("partition %d: load %v must be a number, not negative", p.Partition, p.Load)
		}
		if _, dup := out.Copies[p.Partition]; dup {
			return failover.NodeFigures{}, fmt.Errorf("partition %d is listed twice", p.Partition)
		}
		out.Copies[p.Partition] = failover.CopyFigures{Size: p.SizeBytes, Load: p.Load}
	}
	return out, nil
}

// loadToSend is the report a lease renewal to leader should carry, and its
// age; nil when none is due.
func (a *Agent) loadToSend(leader string, now time.Time) (*failover.NodeFigures, time.Duration) {
	ttl := control.DefaultLoadReportTTL
	l := &a.appLoad
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.figures == nil {
		return nil, 0
	}
	age := now.Sub(l.postedAt)
	if age > ttl {
		return nil, 0 // the app stopped reporting: let the leader's copy expire
	}
	if l.sentTo == leader && l.sentAt.After(l.postedAt) && now.Sub(l.sentAt) < ttl/3 {
		return nil, 0
	}
	return l.figures, age
}

// loadSent records that the report went with a renewal to leader at sent.
func (a *Agent) loadSent(leader string, sent time.Time) {
	a.appLoad.mu.Lock()
	a.appLoad.sentAt, a.appLoad.sentTo = sent, leader
	a.appLoad.mu.Unlock()
}

// LoadView is GET /v1/load: the apps' figures as the leader holds them.
type LoadView struct {
	// Leader is the node whose figures these are.
	Leader      string         `json:"leader"`
	DiskFullPct float64        `json:"disk_full_pct"`
	DiskHighPct float64        `json:"disk_high_pct"`
	Nodes       []NodeLoadView `json:"nodes"`
	// Partitions are the figures of every partition some holder reported:
	// the primary's load (the largest a holder reported without it) and
	// the largest size.
	Partitions []PartitionLoadView `json:"partitions"`
}

// NodeLoadView is one node's report in GET /v1/load.
type NodeLoadView struct {
	Node string `json:"node"`
	// AgeMS is how old the report is.
	AgeMS int64 `json:"age_ms"`
	// Load is the sum of the node's copies' loads.
	Load              float64 `json:"load"`
	Copies            int     `json:"copies"`
	DiskCapacityBytes int64   `json:"disk_capacity_bytes"`
	DiskUsedBytes     int64   `json:"disk_used_bytes"`
	DiskUsedPct       float64 `json:"disk_used_pct"`
	// Over is the disk threshold the node is over: "disk-full",
	// "disk-high" or "".
	Over string `json:"over"`
}

// PartitionLoadView is one partition's figures in GET /v1/load.
type PartitionLoadView struct {
	Partition int     `json:"partition"`
	SizeBytes int64   `json:"size_bytes"`
	Load      float64 `json:"load"`
}

// loadFigures is the leader's answer to GET /v1/load, built from its book
// and its state.
func (a *Agent) loadFigures() LoadView {
	out := LoadView{Leader: a.cfg.NodeID, DiskFullPct: a.cfg.DiskFullPct, DiskHighPct: a.cfg.DiskHighPct,
		Nodes: []NodeLoadView{}, Partitions: []PartitionLoadView{}}
	reports := a.ctrl.Load().Reports(a.clock.Elapsed())
	byNode := map[string]failover.NodeFigures{}
	for _, r := range reports {
		byNode[r.Node] = r.Figures
		n := NodeLoadView{Node: r.Node, AgeMS: r.Age.Milliseconds(), Copies: len(r.Figures.Copies),
			DiskCapacityBytes: r.Figures.DiskCapacity, DiskUsedBytes: r.Figures.DiskUsed}
		for _, c := range r.Figures.Copies {
			n.Load += c.Load
		}
		if r.Figures.DiskCapacity > 0 {
			n.DiskUsedPct = 100 * r.Figures.DiskRatio()
			switch {
			case n.DiskUsedPct > a.cfg.DiskFullPct:
				n.Over = "disk-full"
			case n.DiskUsedPct > a.cfg.DiskHighPct:
				n.Over = "disk-high"
			}
		}
		out.Nodes = append(out.Nodes, n)
	}
	if len(byNode) == 0 {
		return out
	}
	a.raft.Read(func(c *failover.Cluster) {
		for _, p := range c.Partitions {
			var pl PartitionLoadView
			seen, primary := false, false
			for _, h := range p.Holders() {
				cf, ok := byNode[h].Copies[p.ID]
				if !ok {
					continue
				}
				seen = true
				pl.SizeBytes = max(pl.SizeBytes, cf.Size)
				if h == p.Primary {
					pl.Load, primary = cf.Load, true
				} else if !primary {
					pl.Load = max(pl.Load, cf.Load)
				}
			}
			if seen {
				pl.Partition = p.ID
				out.Partitions = append(out.Partitions, pl)
			}
		}
	})
	return out
}

// loadSource answers a follower's request for the figures (raftctl kind
// load).
func (a *Agent) loadSource() ([]byte, error) { return json.Marshal(a.loadFigures()) }

// loadAskTimeout bounds asking the leader for its figures.
const loadAskTimeout = 2 * time.Second

// handleLoad is GET /v1/load: the figures as the leader holds them, asked
// of the leader when this agent does not lead.
func (a *Agent) handleLoad(w http.ResponseWriter, r *http.Request) {
	if a.raft.IsLeader() {
		writeJSON(w, http.StatusOK, a.loadFigures())
		return
	}
	_, addr := a.raft.Leader()
	if addr == "" {
		writeError(w, http.StatusServiceUnavailable, "no raft leader: the load figures live on the leader")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), loadAskTimeout)
	defer cancel()
	body, err := a.raft.RequestLoad(ctx, addr)
	if err != nil {
		writeError(w, http.StatusBadGateway, "asking the leader for its load figures: "+err.Error())
		return
	}
	var out LoadView
	if err := json.Unmarshal(body, &out); err != nil {
		writeError(w, http.StatusBadGateway, "the leader's load figures do not decode: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// loadCollector exports, on the leader, each node's reported figures (the
// other agents export none: the figures live on the leader).
type loadCollector struct{ a *Agent }

var (
	nodeLoadDesc = prometheus.NewDesc("steward_node_load",
		"Load the node's app reported (sum over its copies, the app's unit per second); on the leader.", []string{"node"}, nil)
	nodeDiskDesc = prometheus.NewDesc("steward_node_disk_used_ratio",
		"Used fraction of the node's disk as its app reported it; on the leader.", []string{"node"}, nil)
	nodeOverDesc = prometheus.NewDesc("steward_node_over_threshold",
		"1 when the node's reported disk use is over the threshold (disk_full: it sheds copies; disk_high: it takes none); on the leader.", []string{"node", "threshold"}, nil)
	nodeCopiesOverDesc = prometheus.NewDesc("steward_node_partitions_over_threshold",
		"Copies the node reported while its disk is over the threshold: what disk_full makes it shed, or disk_high keeps from growing; on the leader.", []string{"node", "threshold"}, nil)
	reportAgeDesc = prometheus.NewDesc("steward_node_load_report_age_seconds",
		"Age of the node's last load report; on the leader.", []string{"node"}, nil)
)

func (c loadCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- nodeLoadDesc
	ch <- nodeDiskDesc
	ch <- nodeOverDesc
	ch <- nodeCopiesOverDesc
	ch <- reportAgeDesc
}

func (c loadCollector) Collect(ch chan<- prometheus.Metric) {
	if !c.a.raft.IsLeader() {
		return
	}
	for _, n := range c.a.loadFigures().Nodes {
		ch <- prometheus.MustNewConstMetric(nodeLoadDesc, prometheus.GaugeValue, n.Load, n.Node)
		ch <- prometheus.MustNewConstMetric(reportAgeDesc, prometheus.GaugeValue, float64(n.AgeMS)/1000, n.Node)
		if n.DiskCapacityBytes <= 0 {
			continue
		}
		ch <- prometheus.MustNewConstMetric(nodeDiskDesc, prometheus.GaugeValue, n.DiskUsedPct/100, n.Node)
		for _, th := range []struct {
			name string
			over bool
		}{{"disk_full", n.Over == "disk-full"}, {"disk_high", n.Over != ""}} {
			v, copies := 0.0, 0.0
			if th.over {
				v, copies = 1, float64(n.Copies)
			}
			ch <- prometheus.MustNewConstMetric(nodeOverDesc, prometheus.GaugeValue, v, n.Node, th.name)
			ch <- prometheus.MustNewConstMetric(nodeCopiesOverDesc, prometheus.GaugeValue, copies, n.Node, th.name)
		}
	}
}
