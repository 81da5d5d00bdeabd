package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/steward-dev/steward/failover"
)

// Resources over the HTTP API: GET /v1/resources lists them, POST creates
// one, PATCH /v1/resources/{name} changes its replication factor, target
// size, zones rule or node selector, DELETE /v1/resources/{name} deletes
// it (see failover/resource.go and failover/placement.go).

// ResourceView is one resource of GET /v1/resources.
type ResourceView struct {
	failover.Resource
	// ActivePartitions counts the resource's partitions now (its initial
	// count plus the splits).
	ActivePartitions int `json:"active_partitions"`
	// UnderReplicated counts its partitions with fewer copies than its
	// replication factor.
	UnderReplicated int `json:"under_replicated"`
}

// ResourcesView is GET /v1/resources.
type ResourcesView struct {
	Resources []ResourceView `json:"resources"`
}

func resourceViews(c *failover.Cluster) []ResourceView {
	out := []ResourceView{}
	index := map[string]int{}
	for _, r := range c.ResourceList() {
		if r.Zones == "" {
			r.Zones = failover.ZonesSpread
		}
		index[r.Name] = len(out)
		out = append(out, ResourceView{Resource: r})
	}
	for _, p := range c.Partitions {
		i, ok := index[p.ResourceName()]
		if !ok || p.Retired {
			continue
		}
		out[i].ActivePartitions++
		if len(p.Holders()) < out[i].ReplicationFactor {
			out[i].UnderReplicated++
		}
	}
	return out
}

// resourcesAnswer is the body of GET /v1/resources (a watch topic).
func (a *Agent) resourcesAnswer(r *http.Request) (any, *answerError) {
	if !a.ready.Load() {
		return nil, &answerError{http.StatusServiceUnavailable, "this agent has not caught up with the cluster yet"}
	}
	var out ResourcesView
	bootstrapped := false
	a.raft.Read(func(c *failover.Cluster) {
		bootstrapped = c.Bootstrapped
		out.Resources = resourceViews(c)
	})
	if !bootstrapped {
		return nil, &answerError{http.StatusServiceUnavailable, "the cluster has not been bootstrapped yet"}
	}
	return out, nil
}

// decodeStrict decodes a JSON body, refusing unknown fields.
func decodeStrict(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// handleResourceCreate is POST /v1/resources with
// {"name": ..., "partitions": N, "replication_factor": R} and optionally
// "target_size_bytes", "zones" (spread, none, strict) and "nodes" (a node
// selector, k=v,k2=v2).
func (a *Agent) handleResourceCreate(w http.ResponseWriter, r *http.Request) {
	var body failover.Resource
	if err := decodeStrict(w, r, &body); err != nil {
		writeError(w, http.StatusBadRequest, `body must be {"name": "...", "partitions": N, "replication_factor": R}: `+err.Error())
		return
	}
	zones, nodes, err := checkPlacement(string(body.Zones), body.Nodes)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	body.Zones, body.Nodes = zones, nodes
	if err := body.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, strings.TrimPrefix(err.Error(), "failover: "))
		return
	}
	var cmd failover.Command
	var refused error
	a.raft.Read(func(c *failover.Cluster) {
		switch {
		case !c.Bootstrapped:
			refused = errors.New("the cluster has not been bootstrapped yet")
		default:
			if _, exists := c.Resource(body.Name); exists {
				refused = fmt.Errorf("resource %q already exists", body.Name)
				return
			}
			if n := c.ActivePartitions(); n+body.Partitions > failover.MaxPartitions {
				refused = fmt.Errorf("the cluster has %d partitions: %d more would exceed its limit of %d", n, body.Partitions, failover.MaxPartitions)
				return
			}
			// The layout is computed here, on this agent's copy of the
			// table, and carried in the entry; if the table moved on
			// before it commits, the command is refused and the caller
			// retries.
			cmd = failover.Command{Kind: failover.CmdCreateResource, At: time.Now().UnixNano(), Resource: &body, Table: failover.LayoutResource(c, body)}
		}
	})
	if refused != nil {
		writeError(w, http.StatusConflict, refused.Error())
		return
	}
	if _, err := a.apply(cmd); err != nil {
		writeError(w, http.StatusServiceUnavailable, "resource not created: "+err.Error())
		return
	}
	a.log.Info("resource created", "resource", body.Name, "partitions", body.Partitions, "replication_factor", body.ReplicationFactor)
	a.kickLeader()
	writeJSON(w, http.StatusCreated, body)
}

// handleResourceChange is PATCH /v1/resources/{name} with
// {"replication_factor": R} and/or {"target_size_bytes": N}: with a new
// replication factor the planner then adds the copies (add before remove)
// or drops the surplus ones; with a target size partitions above it are
// split automatically (0: never).
func (a *Agent) handleResourceChange(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var body struct {
		ReplicationFactor *int    `json:"replication_factor"`
		TargetSize        *int64  `json:"target_size_bytes"`
		Zones             *string `json:"zones"`
		Nodes             *string `json:"nodes"`
	}
	if err := decodeStrict(w, r, &body); err != nil || body.ReplicationFactor == nil && body.TargetSize == nil && body.Zones == nil && body.Nodes == nil {
		writeError(w, http.StatusBadRequest, `body must hold one or more of {"replication_factor": R, "target_size_bytes": N, "zones": "spread|none|strict", "nodes": "k=v,..."}`)
		return
	}
	var zones failover.ZonesRule
	var nodes string
	if body.Zones != nil || body.Nodes != nil {
		z, n := "", ""
		if body.Zones != nil {
			z = *body.Zones
		}
		if body.Nodes != nil {
			n = *body.Nodes
		}
		var err error
		if zones, nodes, err = checkPlacement(z, n); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	if rf := body.ReplicationFactor; rf != nil && (*rf < 1 || *rf > failover.MaxReplicationFactor) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("replication factor must be between 1 and %d, got %d", failover.MaxReplicationFactor, *rf))
		return
	}
	if ts := body.TargetSize; ts != nil && *ts < 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("the target size must not be negative, got %d", *ts))
		return
	}
	var cur failover.Resource
	var known bool
	a.raft.Read(func(c *failover.Cluster) { cur, known = c.Resource(name) })
	if !known {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no resource %q", name))
		return
	}
	if rf := body.ReplicationFactor; rf != nil {
		if _, err := a.apply(failover.Command{Kind: failover.CmdSetReplicationFactor, At: time.Now().UnixNano(), Resource: &failover.Resource{Name: name, ReplicationFactor: *rf}}); err != nil {
			writeError(w, http.StatusServiceUnavailable, "replication factor not changed: "+err.Error())
			return
		}
		a.log.Info("replication factor changed", "resource", name, "from", cur.ReplicationFactor, "to", *rf)
		cur.ReplicationFactor = *rf
	}
	if ts := body.TargetSize; ts != nil {
		if _, err := a.apply(failover.Command{Kind: failover.CmdSetTargetSize, At: time.Now().UnixNano(), Resource: &failover.Resource{Name: name, TargetSize: *ts}}); err != nil {
			writeError(w, http.StatusServiceUnavailable, "target size not changed: "+err.Error())
			return
		}
		a.log.Info("target size changed", "resource", name, "from", cur.TargetSize, "to", *ts)
		cur.TargetSize = *ts
	}
	if body.Zones != nil || body.Nodes != nil {
		// One command sets both: the one not given stays as it is.
		next := failover.Resource{Name: name, Zones: cur.Zones, Nodes: cur.Nodes}
		if body.Zones != nil {
			next.Zones = zones
		}
		if body.Nodes != nil {
			next.Nodes = nodes
		}
		if _, err := a.apply(failover.Command{Kind: failover.CmdSetPlacement, At: time.Now().UnixNano(), Resource: &next}); err != nil {
			writeError(w, http.StatusServiceUnavailable, "placement not changed: "+err.Error())
			return
		}
		a.log.Info("placement changed", "resource", name, "zones", next.Zones, "nodes", next.Nodes, "was_zones", cur.Zones, "was_nodes", cur.Nodes)
		cur.Zones, cur.Nodes = next.Zones, next.Nodes
	}
	a.kickLeader()
	if cur.Zones == "" {
		cur.Zones = failover.ZonesSpread
	}
	writeJSON(w, http.StatusOK, cur)
}

// checkPlacement checks a zones rule and a node selector as given, and
// returns them as the state spells them ("" for spread; the selector's
// keys sorted).
func checkPlacement(zones, nodes string) (failover.ZonesRule, string, error) {
	rule, err := failover.ParseZonesRule(zones)
	if err != nil {
		return "", "", errors.New(strings.TrimPrefix(err.Error(), "failover: "))
	}
	if rule == failover.ZonesSpread {
		rule = ""
	}
	canon, err := failover.CanonicalNodeSelector(nodes)
	if err != nil {
		return "", "", errors.New(strings.TrimPrefix(err.Error(), "failover: "))
	}
	return rule, canon, nil
}

// handleResourceDelete is DELETE /v1/resources/{name}: its partitions are
// retired and every app told to release its copies.
func (a *Agent) handleResourceDelete(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if name == failover.DefaultResource {
		writeError(w, http.StatusBadRequest, "the default resource cannot be deleted")
		return
	}
	var known bool
	a.raft.Read(func(c *failover.Cluster) { _, known = c.Resource(name) })
	if !known {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no resource %q", name))
		return
	}
	res, err := a.apply(failover.Command{Kind: failover.CmdDeleteResource, At: time.Now().UnixNano(), Resource: &failover.Resource{Name: name}})
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "resource not deleted: "+err.Error())
		return
	}
	a.log.Warn("resource deleted", "resource", name, "partitions_retired", len(res.Changed))
	writeJSON(w, http.StatusOK, map[string]any{"deleted": name, "partitions_retired": len(res.Changed)})
}

// checkBootstrapFlags refuses to start an agent whose -partitions or
// -replication-factor, when given, contradicts the settings its stored state was
// bootstrapped with: they only apply to a new cluster, and silently
// ignoring them hides a mistake (a resource is created or changed at run
// time instead: agent resource create, agent resource set-rf).
func (a *Agent) checkBootstrapFlags() error {
	stored, ok, err := a.raft.BootstrapSettings()
	if err != nil {
		return fmt.Errorf("reading the stored bootstrap settings: %w", err)
	}
	if !ok {
		return nil
	}
	if a.cfg.Partitions != 0 && a.cfg.Partitions != stored.Partitions {
		return configErrorf("-partitions %d contradicts the cluster's stored settings: its default resource was created with %d partitions (-partitions only applies to a new cluster; give %d, or create another resource with agent resource create)",
			a.cfg.Partitions, stored.Partitions, stored.Partitions)
	}
	if a.cfg.ReplicationFactor != 0 && a.cfg.ReplicationFactor != stored.ReplicationFactor {
		return configErrorf("-replication-factor %d contradicts the cluster's stored settings: its default resource was created with replication factor %d (give %d; change it at run time with agent resource set-rf default R)",
			a.cfg.ReplicationFactor, stored.ReplicationFactor, stored.ReplicationFactor)
	}
	return nil
}
