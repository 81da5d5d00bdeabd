package agent

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/gossip"
	"github.com/steward-dev/steward/health"
)

// maxBodyBytes bounds request bodies of the API.
const maxBodyBytes = 1 << 20

// APIError is the body of every error answer.
type APIError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, APIError{Error: msg})
}

// routes is the agent's HTTP API.
func (a *Agent) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", a.handleHealth)
	mux.HandleFunc("GET "+ReadyPath, a.handleReady)
	mux.HandleFunc("GET /v1/status", a.handleStatus)
	for _, t := range a.watchTopics() {
		mux.HandleFunc("GET /v1/"+t.name, a.blockingQuery(t))
	}
	mux.HandleFunc("GET /v1/watch", a.handleWatch)
	mux.HandleFunc("POST /v1/resources", a.guardMutation(a.handleResourceCreate))
	mux.HandleFunc("POST /v1/partitions/{id}/split", a.guardMutation(a.handleSplit))
	mux.HandleFunc("PATCH /v1/resources/{name}", a.guardMutation(a.handleResourceChange))
	mux.HandleFunc("DELETE /v1/resources/{name}", a.guardMutation(a.handleResourceDelete))
	mux.HandleFunc("GET /v1/raft", a.handleRaft)
	mux.HandleFunc("GET /v1/lease", a.handleLease)
	mux.HandleFunc("GET /ui", a.handleUI)
	mux.HandleFunc("GET /v1/plan", a.handlePlan)
	mux.HandleFunc("GET /v1/events", a.handleEvents)
	mux.HandleFunc("POST /v1/maintenance", a.guardMutation(a.handleMaintenance))
	mux.HandleFunc("POST /v1/leave", a.guardMutation(a.handleLeave))
	mux.HandleFunc("POST /v1/members/{id}/force-leave", a.guardMutation(a.handleForceLeave))
	mux.HandleFunc("POST /v1/members/{id}/replace", a.guardMutation(a.handleReplace))
	mux.HandleFunc("POST /v1/partitions/{id}/move", a.guardMutation(a.handleMove))
	mux.HandleFunc("GET /v1/keyring", a.guardMutation(a.handleKeyringList))
	mux.HandleFunc("POST /v1/keyring", a.guardMutation(a.handleKeyringChange))
	mux.HandleFunc("POST /v1/migrations/{id}/complete", a.guardMutation(a.handleMigrationComplete))
	mux.HandleFunc("POST /v1/migrations/{id}/fail", a.guardMutation(a.handleMigrationFail))
	mux.HandleFunc("POST /v1/app/holdings", a.guardMutation(a.handleAppHoldings))
	mux.HandleFunc("POST /v1/app/load", a.guardMutation(a.handleAppLoad))
	mux.HandleFunc("GET /v1/load", a.handleLoad)
	mux.HandleFunc("GET /v1/leave", a.handleLeaveProgress)
	mux.HandleFunc("POST /v1/restart", a.guardMutation(a.handleRestart))
	mux.HandleFunc("GET /v1/restart", a.handleRestartProgress)
	mux.HandleFunc("POST /v1/rolling-restart", a.guardMutation(a.handleRollingRestart))
	mux.HandleFunc("GET /v1/rolling-restart", a.handleRollingProgress)
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.metrics.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	return mux
}

func (a *Agent) handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "node_id": a.cfg.NodeID})
}

// Status is GET /v1/status.
type Status struct {
	NodeID       string `json:"node_id"`
	RaftID       string `json:"raft_id"`
	LeaderID     string `json:"leader_id"`
	RaftState    string `json:"raft_state"`
	Term         uint64 `json:"term"`
	AppliedIndex uint64 `json:"applied_index"`
	CommitIndex  uint64 `json:"commit_index"`
	LastIndex    uint64 `json:"last_index"`
	Voter        bool   `json:"voter"`
	RaftHasState bool   `json:"raft_has_state"`
	Bootstrapped bool   `json:"bootstrapped"`
	// Ready: caught up with the cluster and in contact with its leader;
	// NotReady says why not.
	Ready    bool   `json:"ready"`
	NotReady string `json:"not_ready,omitempty"`
	// LeaderContactMS is how long ago the leader last answered this agent
	// with a grant its raft log has since caught up with (-1: never);
	// beyond the lease duration the agent's view may be stale.
	LeaderContactMS int64 `json:"leader_contact_ms"`
	// LeaseRelay is the raft ID of the voter that relayed this agent's
	// last lease grant; empty when the leader answered it directly (on
	// the leader itself, or after the relay failed).
	LeaseRelay string `json:"lease_relay,omitempty"`
	// LeasePrimaries counts the partitions this node's app may serve as
	// primary now (its lease).
	LeasePrimaries int    `json:"lease_primaries"`
	Members        int    `json:"members"`
	Partitions     int    `json:"partitions"`
	Version        string `json:"version"`
	// Quorum is "ok", or "lost" while no leader has been seen for longer
	// than the election timeout (then nothing is removed).
	Quorum string `json:"quorum"`
	// Maintenance is the cluster-wide manual freeze.
	Maintenance bool `json:"maintenance"`
	// RemovalsFrozen says why automatic removals are frozen, if they are.
	RemovalsFrozen string `json:"removals_frozen,omitempty"`
	// FailuresAtOnce is, on the leader, how many failures the freeze
	// counts now: suspects and failures not acted on yet, failures of the
	// last moments, and failures still being handled (never those handled
	// long ago). More than -max-failed freezes removals.
	FailuresAtOnce int `json:"failures_at_once"`
	// AppHealthy is this node's app's health (true without a health URL).
	AppHealthy bool `json:"app_healthy"`
	// UndeliveredEvents counts webhooks not yet acknowledged by the app.
	UndeliveredEvents int `json:"undelivered_events"`
	// DataLost lists the partitions whose last copy an app reported lost:
	// they have no primary, and their data is gone.
	DataLost []int `json:"data_lost,omitempty"`
	// Leaving is the phase of a graceful leave in progress, if any.
	Leaving string `json:"leaving,omitempty"`
	// Restarting is the phase of this node's planned restart, if any.
	Restarting string `json:"restarting,omitempty"`
	// RollingRestart is the cluster's last rolling restart, if any.
	RollingRestart *RollingView `json:"rolling_restart,omitempty"`
	// ClockSkewSeconds is this agent's wall clock minus the leader's, as
	// last measured (0 on the leader and before the first measurement).
	// Beyond the webhook tolerance (5 minutes) the app rejects this
	// agent's webhooks; the agent logs an error.
	ClockSkewSeconds float64 `json:"clock_skew_seconds"`
	// Cluster is the cluster's size, desired (-desired-nodes) versus
	// alive, and on the leader its requests for hosts (-provision-url).
	Cluster ClusterStatus `json:"cluster"`
}

// Status is this agent's view of itself and the cluster (GET /v1/status).
func (a *Agent) Status() Status {
	st := a.raft.Stats()
	out := Status{
		NodeID:       a.cfg.NodeID,
		RaftID:       a.raftID,
		RaftState:    a.raft.State(),
		Term:         st.Term,
		AppliedIndex: st.AppliedIndex,
		CommitIndex:  st.CommitIndex,
		LastIndex:    st.LastIndex,
		RaftHasState: a.raft.HasState() || st.LastIndex > 0,
		Version:      Version,
		Quorum:       "ok",
		AppHealthy:   !a.appUnhealthy.Load(),

		ClockSkewSeconds: a.clockSkewSeconds(),
	}
	if a.raft.IsLeader() {
		out.FailuresAtOnce = a.ctrl.FailuresAtOnce()
	}
	if a.quorumLost.Load() {
		out.Quorum = "lost"
	}
	lv := a.leaseView()
	out.LeaderContactMS = -1
	if lv.ContactAge >= 0 {
		out.LeaderContactMS = lv.ContactAge.Milliseconds()
	}
	out.LeasePrimaries = len(lv.Primaries)
	out.LeaseRelay = a.lease.relayedBy()
	out.Ready, out.NotReady = a.readiness()
	if a.deliverer != nil {
		out.UndeliveredEvents = a.deliverer.Pending()
	}
	out.Leaving = string(a.LeaveProgress().Phase)
	out.Cluster = a.clusterStatus()
	out.Restarting = string(a.RestartProgress().Phase)
	leaderRaftID, _ := a.raft.Leader()
	a.raft.Read(func(c *failover.Cluster) {
		out.Bootstrapped = c.Bootstrapped
		out.Members = len(c.Members)
		out.Partitions = c.ActivePartitions()
		out.Maintenance = c.Maintenance
		out.DataLost = c.LostPartitions()
		out.RollingRestart = rollingView(c.Rolling)
		for _, m := range c.Members {
			if leaderRaftID != "" && m.RaftID == leaderRaftID {
				out.LeaderID = m.ID
			}
			if m.ID == a.cfg.NodeID {
				out.Voter = m.Voter
			}
		}
	})
	if reason := a.ctrl.FreezeReason(); reason != "" {
		out.RemovalsFrozen = reason
	} else if out.Maintenance {
		out.RemovalsFrozen = "maintenance mode is on"
	}
	if out.LeaderID == "" && leaderRaftID != "" {
		// Before the leader is registered in the state (right after the
		// bootstrap), gossip knows which node has that raft ID.
		for _, n := range a.gossip.Members() {
			if n.Meta.RaftID == leaderRaftID {
				out.LeaderID = n.ID
			}
		}
	}
	return out
}

func (a *Agent) handleStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.Status())
}

// MemberView is one entry of GET /v1/members.
type MemberView struct {
	ID          string `json:"id"`
	Status      string `json:"status"`
	Voter       bool   `json:"voter"`
	Registered  bool   `json:"registered"`
	GossipState string `json:"gossip_state,omitempty"`
	RaftID      string `json:"raft_id,omitempty"`
	GossipAddr  string `json:"gossip_addr,omitempty"`
	RaftAddr    string `json:"raft_addr,omitempty"`
	APIAddr     string `json:"api_addr,omitempty"`
	AppAddr     string `json:"app_addr,omitempty"`
	Zone        string `json:"zone,omitempty"`
	// Tags are the member's labels (its agent's -tags), as the cluster
	// state holds them.
	Tags        map[string]string `json:"tags,omitempty"`
	Weight      int               `json:"weight"`
	Incarnation uint64            `json:"incarnation,omitempty"`
	AppHealthy  bool              `json:"app_healthy"`
	StatusSince string            `json:"status_since,omitempty"`
	// RestartGrace, for a member away for a planned restart, is how long
	// it may stay away (measured by the leader from when it saw it go).
	RestartGrace string `json:"restart_grace,omitempty"`
	// Forgetting: the member was forgotten (agent force-leave, or
	// -reap-after) while it still held copies; it goes once they are
	// re-created elsewhere.
	Forgetting bool `json:"forgetting,omitempty"`
	// ReplacedBy: the member is being replaced by this one (agent
	// replace): its copies move there, then it leaves.
	ReplacedBy string `json:"replaced_by,omitempty"`
	Primaries  int    `json:"primaries"`
	Copies     int    `json:"copies"`
	// Health is this agent's failure detector's view: healthy, suspect,
	// failed or held-down.
	Health string `json:"health,omitempty"`
	// FailedProbes is the current run of failed probes of the member.
	FailedProbes int `json:"failed_probes"`
	// HealthSince is when the detector's view of the member last changed.
	HealthSince string `json:"health_since,omitempty"`
}

// members merges the replicated member list with what gossip sees now:
// gossip's suspicion shows as "suspect" on a member the cluster still
// counts alive, and agents gossip knows but the leader has not registered
// yet are listed with registered=false.
func (a *Agent) members() []MemberView {
	gossipNodes := map[string]gossip.Node{}
	for _, n := range a.gossip.Members() {
		gossipNodes[n.ID] = n
	}
	var out []MemberView
	seen := map[string]bool{}
	a.raft.Read(func(c *failover.Cluster) {
		primaries, copies := loadByNode(c)
		for _, id := range c.MemberIDs() {
			m := c.Members[id]
			v := MemberView{
				ID: id, Status: string(m.Status), Voter: m.Voter, Registered: true,
				RaftID: m.RaftID, GossipAddr: m.GossipAddr, RaftAddr: m.RaftAddr, APIAddr: m.APIAddr,
				AppAddr: m.AppAddr, Zone: m.Zone, Tags: m.Tags, Weight: m.EffectiveWeight(), Incarnation: m.Incarnation,
				AppHealthy: !m.AppUnhealthy, Forgetting: m.Forget, ReplacedBy: m.ReplacedBy, Primaries: primaries[id], Copies: copies[id],
			}
			if m.StatusSince != 0 {
				v.StatusSince = time.Unix(0, m.StatusSince).UTC().Format(time.RFC3339Nano)
			}
			if m.Status == failover.StatusRestarting {
				v.RestartGrace = time.Duration(m.RestartGrace).String()
			}
			suspect := false
			if n, ok := gossipNodes[id]; ok {
				v.GossipState = string(n.State)
				suspect = n.State == gossip.StateSuspect || n.State == gossip.StateDead
			}
			if h, ok := a.monitor.Node(id); ok {
				v.Health = string(h.State)
				v.FailedProbes = h.ConsecutiveFailures
				if !h.LastChange.IsZero() {
					v.HealthSince = h.LastChange.UTC().Format(time.RFC3339Nano)
				}
				suspect = suspect || h.State != health.StateHealthy
			}
			if m.Status == failover.StatusAlive && suspect {
				v.Status = string(failover.StatusSuspect)
			}
			seen[id] = true
			out = append(out, v)
		}
	})
	for id, n := range gossipNodes {
		if seen[id] || n.State != gossip.StateAlive {
			continue
		}
		out = append(out, MemberView{
			ID: id, Status: string(failover.StatusAlive), GossipState: string(n.State),
			RaftID: n.Meta.RaftID, GossipAddr: n.Addr, RaftAddr: n.Meta.RaftAddr, APIAddr: n.Meta.APIAddr,
			AppAddr: n.Meta.AppAddr, Zone: n.Meta.Zone, Weight: n.Meta.Weight, AppHealthy: !n.Meta.AppUnhealthy,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// membersAnswer is the body of GET /v1/members (a watch topic).
func (a *Agent) membersAnswer(*http.Request) (any, *answerError) {
	return map[string]any{"members": a.members()}, nil
}

// loadByNode counts primaries and copies (primary included) per node.
func loadByNode(c *failover.Cluster) (primaries, copies map[string]int) {
	primaries, copies = map[string]int{}, map[string]int{}
	for _, p := range c.Partitions {
		if p.Primary != "" {
			primaries[p.Primary]++
		}
		for _, h := range p.Holders() {
			copies[h]++
		}
	}
	return primaries, copies
}

// PartitionsView is GET /v1/partitions.
type PartitionsView struct {
	// Stale is set when the table was asked for with ?stale=true while
	// this agent is out of contact with the leader.
	Stale    bool              `json:"stale,omitempty"`
	Settings failover.Settings `json:"settings"`
	// Resources are the resources of the table (all of them, whatever
	// ?resource= filters).
	Resources []failover.Resource `json:"resources"`
	// Partitions are the active partitions (of ?resource= if given), each
	// with its resource and its explicit key range (route keys with
	// failover.PartitionForKey).
	Partitions []failover.Partition `json:"partitions"`
	Balance    []NodeLoad           `json:"balance"`
}

// NodeLoad is one node's share of the table.
type NodeLoad struct {
	Node      string `json:"node"`
	Primaries int    `json:"primaries"`
	Copies    int    `json:"copies"`
}

// partitionsAnswer is the body of GET /v1/partitions (a watch topic).
func (a *Agent) partitionsAnswer(r *http.Request) (any, *answerError) {
	if !a.ready.Load() {
		return nil, &answerError{http.StatusServiceUnavailable, "this agent has not caught up with the cluster yet"}
	}
	var out PartitionsView
	if !a.inContact() || a.raft.StorageError() != nil {
		// Never present a table that may be stale as current: a cut-off
		// or paused agent's table misses whatever the majority decided,
		// and so does one whose disk refuses raft's writes.
		if r.URL.Query().Get("stale") != "true" {
			_, why := a.readiness()
			return nil, &answerError{http.StatusServiceUnavailable, why + "; the table may be stale (?stale=true shows it anyway)"}
		}
		out.Stale = true
	}
	resource := r.URL.Query().Get("resource")
	unknown := false
	a.raft.Read(func(c *failover.Cluster) {
		if !c.Bootstrapped {
			return
		}
		if _, ok := c.Resource(resource); resource != "" && !ok {
			unknown = true
			return
		}
		out.Settings = c.Settings
		out.Resources = c.ResourceList()
		out.Partitions = make([]failover.Partition, 0, len(c.Partitions))
		for _, p := range c.WithKeyRanges() {
			if p.Retired || p.SplitPending || resource != "" && p.ResourceName() != resource {
				continue
			}
			p.Resource = p.ResourceName()
			out.Partitions = append(out.Partitions, p)
		}
		primaries, copies := loadByNode(c)
		for _, id := range c.MemberIDs() {
			if copies[id] > 0 || c.Members[id].CanHold() {
				out.Balance = append(out.Balance, NodeLoad{Node: id, Primaries: primaries[id], Copies: copies[id]})
			}
		}
	})
	if unknown {
		return nil, &answerError{http.StatusNotFound, fmt.Sprintf("no resource %q", resource)}
	}
	if out.Partitions == nil {
		return nil, &answerError{http.StatusServiceUnavailable, "the cluster has not been bootstrapped yet"}
	}
	return out, nil
}

// handleMaintenance switches the cluster-wide maintenance freeze:
// body {"enabled": true|false}.
func (a *Agent) handleMaintenance(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Enabled *bool `json:"enabled"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || body.Enabled == nil {
		writeError(w, http.StatusBadRequest, `body must be {"enabled": true} or {"enabled": false}`)
		return
	}
	if _, err := a.apply(failover.Command{Kind: failover.CmdSetMaintenance, At: time.Now().UnixNano(), Maintenance: *body.Enabled}); err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	a.log.Warn("maintenance mode switched", "enabled", *body.Enabled)
	writeJSON(w, http.StatusOK, map[string]bool{"maintenance": *body.Enabled})
}

// raftServerView is one server of GET /v1/raft.
type raftServerView struct {
	NodeID  string `json:"node_id,omitempty"`
	RaftID  string `json:"raft_id"`
	Address string `json:"address"`
	Voter   bool   `json:"voter"`
}

// handleRaft lists the raft configuration as this agent knows it, with the
// node ID of each server.
func (a *Agent) handleRaft(w http.ResponseWriter, r *http.Request) {
	servers, err := a.raft.Configuration()
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	byRaftID := map[string]string{}
	a.raft.Read(func(c *failover.Cluster) {
		for id, m := range c.Members {
			byRaftID[m.RaftID] = id
		}
	})
	out := make([]raftServerView, 0, len(servers))
	for _, s := range servers {
		out = append(out, raftServerView{NodeID: byRaftID[s.ID], RaftID: s.ID, Address: s.Address, Voter: s.Voter})
	}
	writeJSON(w, http.StatusOK, map[string]any{"servers": out})
}
