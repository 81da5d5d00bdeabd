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

	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/hooks"
)

// This file takes the app's holdings report (POST /v1/app/holdings, see
// hooks/holdings.go): at its start the app says which partitions it really
// holds, and the copies it had acknowledged and no longer has are treated
// as lost: dropped from the holders through raft (failover.CmdCopiesLost),
// so that they are never promoted and are copied again from a live holder,
// and forgotten by the Deliverer, so that what the cluster now gives the
// app is delivered again.

// holdingsWait bounds how long one report waits for its drops to reach
// this agent's copy of the state.
const holdingsWait = 10 * time.Second

// holdingsRounds bounds how often a report re-plans drops that were stale
// (the partition moved on between the plan and its commit).
const holdingsRounds = 5

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
	a.raft.Read(func(c *failover.Cluster) { partitions = c.Settings.Partitions })
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
	lost, err := a.commitLostCopies(ctx, held)
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

// commitLostCopies drops, through raft, every copy the cluster gives this
// node that the app acknowledged (and not as a copy under way) and does
// not hold, and waits until this agent's state shows the drops. It returns
// the partitions dropped, in order. Drops planned against a partition that
// moved on meanwhile are planned again.
func (a *Agent) commitLostCopies(ctx context.Context, held map[int]bool) ([]int, error) {
	var candidates []int
	for p, ack := range a.acks.Snapshot() {
		if !held[p] && !ack.Copying {
			candidates = append(candidates, p)
		}
	}
	var lost []int
	for round := 0; ; round++ {
		var actions []failover.Action
		a.raft.Read(func(c *failover.Cluster) { actions = failover.PlanLostCopies(c, a.cfg.NodeID, candidates) })
		if len(actions) == 0 {
			slices.Sort(lost)
			return lost, nil
		}
		if round == holdingsRounds {
			return nil, fmt.Errorf("the partitions kept moving on: %d drops still stale after %d rounds", len(actions), round)
		}
		res, err := a.apply(failover.Command{Kind: failover.CmdCopiesLost, At: time.Now().UnixNano(), Node: a.cfg.NodeID, Actions: actions})
		if err != nil {
			return nil, err
		}
		lost = append(lost, res.Changed...)
		a.recordEvent("app.copies_lost", fmt.Sprintf("the app of %s lost %d copies: %d dropped, %d stale", a.cfg.NodeID, len(actions), res.Applied, res.Stale), actions)
		// Every planned partition has moved past the epoch it was planned
		// at, by this drop or by whatever made the drop stale.
		if err := a.waitState(ctx, func(c *failover.Cluster) bool {
			for _, act := range actions {
				if c.Partitions[act.Partition].Epoch <= act.Epoch {
					return false
				}
			}
			return true
		}); err != nil {
			return nil, err
		}
	}
}

// waitState waits until cond holds on this agent's copy of the state.
func (a *Agent) waitState(ctx context.Context, cond func(c *failover.Cluster) bool) error {
	changes, unsubscribe := a.raft.Subscribe()
	defer unsubscribe()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ok := false
		a.raft.Read(func(c *failover.Cluster) { ok = cond(c) })
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("this agent's state did not catch up: %w", ctx.Err())
		case <-changes:
		case <-tick.C:
		}
	}
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
		a.recordEvent("partition.data_lost", fmt.Sprintf("partition %d: the app of %s lost its last copy; the partition has no primary", p, a.cfg.NodeID), nil)
	}
}
