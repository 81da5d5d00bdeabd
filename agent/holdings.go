package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/steward-dev/steward/control"
	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/hooks"
)

// This file takes the app's holdings report (POST /v1/app/holdings, see
// hooks/holdings.go): at its start the app says which partitions it really
// holds, and the copies it had acknowledged and no longer has are treated
// as lost: dropped from the holders through raft (the controller's
// CommitLostCopies), so that they are never promoted and are copied again
// from a live holder, and forgotten by the Deliverer, so that what the
// cluster now gives the app is delivered again.

// holdingsWait bounds how long one report waits for its drops to reach
// this agent's copy of the state.
const holdingsWait = 10 * time.Second

// handleAppHoldings is POST /v1/app/holdings with {"partitions": [...]}.
func (a *Agent) handleAppHoldings(w http.ResponseWriter, r *http.Request) {
	held, list, err := decodeHoldings(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if a.deliverer == nil {
		writeError(w, http.StatusConflict, "this agent has no -webhook-url: it tells no app what to hold, so there is nothing to compare a report with")
		return
	}
	if !a.ready.Load() {
		writeError(w, http.StatusServiceUnavailable, "this agent has not caught up with the cluster yet; report again")
		return
	}
	partitions := 0
	a.raft.Read(func(c *failover.Cluster) { partitions = len(c.Partitions) })
	if partitions == 0 {
		writeError(w, http.StatusServiceUnavailable, "the cluster has not been bootstrapped yet; report again")
		return
	}
	for _, p := range list {
		if p >= partitions {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("partition %d does not exist: the cluster has partitions 0 to %d", p, partitions-1))
			return
		}
	}

	// One report at a time: two quick restarts of the app must not
	// interleave their drops and forgets.
	a.holdingsMu.Lock()
	defer a.holdingsMu.Unlock()
	ctx, cancel := context.WithTimeout(a.ctx, holdingsWait)
	defer cancel()
	lost, err := a.ctrl.CommitLostCopies(ctx, control.LostCopyCandidates(a.acks.Snapshot(), held))
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "committing the lost copies: "+err.Error()+"; report again")
		return
	}
	// The Deliverer must not deliver an assign for a copy just dropped:
	// give it the state that follows the drops before it forgets.
	var desired map[int]hooks.Assignment
	out := hooks.HoldingsResult{Node: a.cfg.NodeID, Lost: lost, DataLost: []int{}}
	if out.Lost == nil {
		out.Lost = []int{}
	}
	a.raft.Read(func(c *failover.Cluster) {
		desired = hooks.Desired(c, a.cfg.NodeID)
		for _, p := range lost {
			if c.Partitions[p].DataLost {
				out.DataLost = append(out.DataLost, p)
			}
		}
	})
	a.deliverer.SetDesired(desired)
	if out.Redelivered, err = a.deliverer.AppHoldings(held); err != nil {
		writeError(w, http.StatusInternalServerError, "forgetting what the app no longer holds: "+err.Error())
		return
	}
	if out.Redelivered == nil {
		out.Redelivered = []int{}
	}
	a.reportHoldings(len(list), out)
	writeJSON(w, http.StatusOK, out)
}

// decodeHoldings reads {"partitions": [...]}: exactly that field, a list
// (possibly empty, never null or missing) of distinct non-negative
// partition numbers.
func decodeHoldings(r io.Reader) (map[int]bool, []int, error) {
	const want = `body must be {"partitions": [...]}, the partitions the app holds ([] for none)`
	body, err := io.ReadAll(r)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %v", want, err)
	}
	var in struct {
		Partitions *[]int `json:"partitions"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return nil, nil, fmt.Errorf("%s: %v", want, err)
	}
	if dec.More() {
		return nil, nil, errors.New(want + ": trailing data")
	}
	if in.Partitions == nil {
		return nil, nil, errors.New(want + ": partitions is missing or null")
	}
	held := make(map[int]bool, len(*in.Partitions))
	for _, p := range *in.Partitions {
		if p < 0 {
			return nil, nil, fmt.Errorf("%s: partition %d is negative", want, p)
		}
		if held[p] {
			return nil, nil, fmt.Errorf("%s: partition %d is listed twice", want, p)
		}
		held[p] = true
	}
	return held, *in.Partitions, nil
}

// reportHoldings logs a report, loudly for data that is gone.
func (a *Agent) reportHoldings(held int, out hooks.HoldingsResult) {
	a.log.Info("the app reported its holdings", "held", held, "lost", out.Lost, "redelivered", out.Redelivered)
	for _, p := range out.Lost {
		if !slices.Contains(out.DataLost, p) {
			a.log.Warn("the app lost its copy of a partition; it is copied again from a live holder", "partition", p)
		}
	}
	for _, p := range out.DataLost {
		a.log.Error("DATA LOST: the app lost the last copy of a partition; it keeps no primary until an operator acts", "partition", p)
		a.ctrl.RecordEvent("partition.data_lost", fmt.Sprintf("partition %d: the app of %s lost its last copy; the partition has no primary", p, a.cfg.NodeID), nil)
	}
}
