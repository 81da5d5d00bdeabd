package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/steward-dev/steward/control"
	"github.com/steward-dev/steward/failover"
)

// The operator's API: pins (POST /v1/partitions/{id}/move) and
// replacements (POST /v1/members/{id}/replace), and this agent's part of a
// replacement: leaving once it holds nothing (watchReplacement).

// MoveRequest is the body of POST /v1/partitions/{id}/move.
type MoveRequest struct {
	// Node is the node to pin the partition on; with Unpin, the node to
	// unpin ("" unpins every pin of the partition).
	Node string `json:"node"`
	// Primary pins the primary role on Node too.
	Primary bool `json:"primary,omitempty"`
	// Unpin removes pins instead.
	Unpin bool `json:"unpin,omitempty"`
}

// handleMove is POST /v1/partitions/{id}/move: pin partition id on a node
// (as a holder, or as primary), or unpin it. The planner moves the copy.
func (a *Agent) handleMove(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("partition %q is not a number", r.PathValue("id")))
		return
	}
	var body MoveRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, `body must be {"node": "NODE", "primary": false, "unpin": false}: `+err.Error())
		return
	}
	if body.Node == "" && !body.Unpin {
		writeError(w, http.StatusBadRequest, "name the node to move the partition to")
		return
	}
	if body.Unpin && body.Primary {
		writeError(w, http.StatusBadRequest, "primary and unpin do not go together")
		return
	}
	if !a.ready.Load() {
		writeError(w, http.StatusServiceUnavailable, "this agent has not caught up with the cluster yet")
		return
	}
	ch := failover.PinChange{Partition: id, Node: body.Node, Primary: body.Primary, Unpin: body.Unpin}
	if err := a.ctrl.Move(a.ctx, ch); err != nil {
		writeError(w, operatorErrorStatus(err), strings.TrimPrefix(err.Error(), control.ErrRefused.Error()+": "))
		return
	}
	var pins []failover.Pin
	a.raft.Read(func(c *failover.Cluster) {
		if id < len(c.Partitions) {
			pins = append([]failover.Pin{}, c.Partitions[id].Pins...)
		}
	})
	writeJSON(w, http.StatusOK, map[string]any{"partition": id, "pins": pins})
}

// ReplaceRequest is the body of POST /v1/members/{id}/replace.
type ReplaceRequest struct {
	// By is the member that takes the copies of {id} ("" calls the
	// replacement off).
	By string `json:"by"`
}

// handleReplace is POST /v1/members/{id}/replace: move every copy of
// member id to another member, add before remove, then id leaves.
func (a *Agent) handleReplace(w http.ResponseWriter, r *http.Request) {
	old := r.PathValue("id")
	var body ReplaceRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, `body must be {"by": "NEW"}: `+err.Error())
		return
	}
	if !a.ready.Load() {
		writeError(w, http.StatusServiceUnavailable, "this agent has not caught up with the cluster yet")
		return
	}
	if err := a.ctrl.Replace(a.ctx, old, body.By); err != nil {
		writeError(w, operatorErrorStatus(err), strings.TrimPrefix(err.Error(), control.ErrRefused.Error()+": "))
		return
	}
	copies := 0
	a.raft.Read(func(c *failover.Cluster) {
		for _, p := range c.Partitions {
			if p.Holds(old) {
				copies++
			}
		}
	})
	writeJSON(w, http.StatusAccepted, map[string]any{"node": old, "replaced_by": body.By, "copies_to_move": copies})
}

// operatorErrorStatus maps a refused operator command to its status code.
func operatorErrorStatus(err error) int {
	switch {
	case !errors.Is(err, control.ErrRefused):
		return http.StatusServiceUnavailable // raft: no leader, timeout
	case errors.Is(err, failover.ErrUnknownMember):
		return http.StatusNotFound
	}
	return http.StatusConflict
}

// watchReplacement makes this agent leave once it has been replaced (agent
// replace) and holds nothing any more: its owner performs the leave, as
// for POST /v1/leave.
func (a *Agent) watchReplacement() {
	changes, unsubscribe := a.raft.Subscribe()
	defer unsubscribe()
	var asked atomic.Bool
	for {
		done := false
		a.raft.Read(func(c *failover.Cluster) {
			for _, id := range c.Replaced() {
				if id == a.cfg.NodeID && c.Members[id].Status == failover.StatusAlive {
					done = true
				}
			}
		})
		if done && asked.CompareAndSwap(false, true) {
			a.log.Info("replaced, holding nothing: leaving the cluster")
			a.requestLeave(false)
		}
		select {
		case <-a.ctx.Done():
			return
		case <-changes:
		}
	}
}
