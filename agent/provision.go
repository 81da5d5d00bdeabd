package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/steward-dev/steward/control"
	"github.com/steward-dev/steward/hooks"
)

// The desired size: the leader asks -provision-url for hosts while fewer
// than -desired-nodes members are in service (control.SizeOf and
// control.ProvisionSchedule decide; this file does the asking).

// ProvisionRequest is the body POSTed to -provision-url, signed like a
// webhook (headers webhook-id, webhook-timestamp, webhook-signature over
// "id.timestamp.body" with -webhook-secret).
type ProvisionRequest struct {
	// ID is unique per request (the webhook-id header too).
	ID string `json:"id"`
	// Type is always "cluster.provision".
	Type string `json:"type"`
	// Leader is the node ID of the agent asking.
	Leader string `json:"leader"`
	// Desired, Alive and Missing: the cluster's size (Missing hosts are
	// wanted), and in which zones (Zones, absent when nodes have no zone).
	Desired int            `json:"desired"`
	Alive   int            `json:"alive"`
	Missing int            `json:"missing"`
	Zones   map[string]int `json:"zones,omitempty"`
	// Attempt counts the requests of this shortage, from 1: the leader asks
	// again (5 s, then doubling up to 5 minutes) until the hosts join, so
	// the provisioner must not start Missing hosts on every request.
	Attempt int `json:"attempt"`
}

// ProvisionTypeRequest is ProvisionRequest.Type.
const ProvisionTypeRequest = "cluster.provision"

// Backoff of the provisioner requests after the first.
const (
	provisionBackoff    = 5 * time.Second
	provisionBackoffMax = 5 * time.Minute
)

// provisionState is what GET /v1/status shows of the requests.
type provisionState struct {
	mu       sync.Mutex
	requests int    // requests of the current shortage
	last     string // outcome of the last one
}

// ClusterStatus is cluster of GET /v1/status.
type ClusterStatus struct {
	// Size is desired versus alive (desired is this agent's
	// -desired-nodes).
	Size control.ClusterSize `json:"size"`
	// ProvisionRequests counts, on the leader, the requests to
	// -provision-url made for the current shortage; LastProvision says how
	// the last one went.
	ProvisionRequests int    `json:"provision_requests,omitempty"`
	LastProvision     string `json:"last_provision,omitempty"`
}

// clusterStatus is this agent's view of the cluster's size.
func (a *Agent) clusterStatus() ClusterStatus {
	out := ClusterStatus{Size: control.SizeOf(a.ctrl.MemberState(), a.cfg.DesiredNodes)}
	a.provision.mu.Lock()
	out.ProvisionRequests, out.LastProvision = a.provision.requests, a.provision.last
	a.provision.mu.Unlock()
	return out
}

// provisionLoop runs while the agent runs (with -provision-url): as leader
// it asks the provisioner for hosts when the cluster is short.
func (a *Agent) provisionLoop() {
	secret, err := hooks.ParseSecret(a.cfg.WebhookSecret)
	if err != nil {
		a.log.Error("-provision-url: no usable -webhook-secret to sign with; the provisioner is never asked", "error", err)
		return
	}
	sched := control.ProvisionSchedule{Grace: a.cfg.ProvisionGrace.D(), Backoff: provisionBackoff, MaxBackoff: provisionBackoffMax}
	client := &http.Client{Timeout: 10 * time.Second}
	a.every(500*time.Millisecond, func() {
		now := a.clock.Elapsed()
		if !a.raft.IsLeader() {
			sched.Observe(false, now) // a new leader starts its own grace
			a.setProvision(0, "")
			return
		}
		size := control.SizeOf(a.ctrl.MemberState(), a.cfg.DesiredNodes)
		ask, attempt := sched.Observe(size.Missing > 0, now)
		if size.Missing == 0 {
			a.setProvision(0, "")
		}
		if !ask {
			return
		}
		outcome := a.askProvisioner(client, secret, size, attempt)
		a.setProvision(attempt, outcome)
	})
}

func (a *Agent) setProvision(requests int, last string) {
	a.provision.mu.Lock()
	defer a.provision.mu.Unlock()
	if requests == 0 && last == "" && a.provision.requests == 0 {
		return
	}
	a.provision.requests, a.provision.last = requests, last
}

// askProvisioner POSTs one signed request and returns its outcome.
func (a *Agent) askProvisioner(client *http.Client, secret []byte, size control.ClusterSize, attempt int) string {
	now := a.clock.Now()
	req := ProvisionRequest{
		ID: fmt.Sprintf("prov-%s-%d-%d", a.cfg.NodeID, now.UnixNano(), attempt), Type: ProvisionTypeRequest, Leader: a.cfg.NodeID,
		Desired: size.Desired, Alive: size.Alive, Missing: size.Missing, Zones: size.Zones, Attempt: attempt,
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err.Error()
	}
	ctx, cancel := context.WithTimeout(a.ctx, 10*time.Second)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, a.cfg.ProvisionURL, bytes.NewReader(body))
	if err != nil {
		return err.Error()
	}
	hr.Header.Set("Content-Type", "application/json")
	hooks.SignHeaders(hr.Header, secret, req.ID, now, body)
	resp, err := client.Do(hr)
	if err != nil {
		a.log.Warn("asking the provisioner for hosts failed; will ask again", "missing", size.Missing, "attempt", attempt, "error", err)
		return fmt.Sprintf("attempt %d: %v", attempt, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	outcome := fmt.Sprintf("attempt %d at %s: %s", attempt, now.UTC().Format(time.RFC3339), resp.Status)
	if resp.StatusCode/100 != 2 {
		a.log.Warn("the provisioner refused the request for hosts; will ask again", "missing", size.Missing, "attempt", attempt, "status", resp.StatusCode)
	} else {
		a.log.Info("asked the provisioner for hosts", "missing", size.Missing, "zones", size.Zones, "attempt", attempt, "status", resp.StatusCode)
	}
	return outcome
}
