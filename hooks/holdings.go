package hooks

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"
)

// The holdings report.
//
// An app that keeps its data tells its agent, every time it starts and
// before it answers its health checks as healthy or acknowledges any
// webhook, which partitions it really holds: POST /v1/app/holdings with
// {"partitions": [...]} (an empty list when it holds nothing, as after its
// data dir was wiped), with the agent's API token. A partition belongs in
// the list only when the app has all of it, durably: an assign it
// acknowledged, or a copy it finished; a copy still under way does not.
//
// The agent compares the report with what the app had acknowledged. A copy
// the cluster gives the node, which the app had acknowledged and no longer
// holds, is lost: the cluster drops the node from its holders (a lost
// primary's best live replica is promoted instead; the lost copy is never
// promoted), re-creates the copy from a live holder, and marks a partition
// whose last copy it was as lost rather than give it an empty primary. The
// agent then forgets what the app had acknowledged for every partition it
// does not hold and every copy it had not finished, so that what the
// cluster gives the app now (assigns with a source included) is delivered
// again, at once.
//
// An app that never reports keeps the behaviour of before: the agent
// believes what it acknowledged.

// HoldingsPath is the agent's endpoint for the holdings report.
const HoldingsPath = "/v1/app/holdings"

// Holdings is the body of POST /v1/app/holdings.
type Holdings struct {
	// Partitions are the partitions the app holds in full, in any order,
	// each once. Required: an app that holds nothing sends [].
	Partitions []int `json:"partitions"`
}

// HoldingsResult is the agent's answer to a holdings report.
type HoldingsResult struct {
	// Node is the agent's -node-id.
	Node string `json:"node"`
	// Lost are the partitions the cluster gave the node, which the app had
	// acknowledged and no longer holds: dropped from their holders, to be
	// copied again from a live holder.
	Lost []int `json:"lost"`
	// DataLost are the partitions of Lost whose last copy it was: they keep
	// no primary (an operator must decide what to do with them).
	DataLost []int `json:"data_lost"`
	// Redelivered are the partitions whose acknowledged state the agent
	// forgot: what the cluster gives the app for them is delivered again.
	Redelivered []int `json:"redelivered"`
}

// ErrHoldingsRefused is wrapped by ReportHoldings when the agent refused
// the report itself (a 4xx: a bad list, a wrong token, an agent without
// webhooks): sending it again unchanged will not help. Any other error
// (the agent unreachable, not caught up yet, no raft leader) is worth
// retrying.
var ErrHoldingsRefused = errors.New("hooks: holdings report refused")

// ReportHoldings tells the agent at agentURL (its HTTP API, e.g.
// "http://127.0.0.1:8500") which partitions the app holds: POST
// /v1/app/holdings. token is the agent's API token, sent as a bearer token
// when not empty; a nil client means http.DefaultClient. A nil or empty
// partitions reports that the app holds nothing.
//
// Call it at every start, before the app answers its health checks as
// healthy and before it acknowledges any webhook (answer them 503 until
// then: the agent delivers them again), and retry it until it succeeds:
// the agent answers 503 until it has caught up with the cluster.
func ReportHoldings(ctx context.Context, client *http.Client, agentURL, token string, partitions []int) (HoldingsResult, error) {
	if partitions == nil {
		partitions = []int{}
	}
	var out HoldingsResult
	err := postToAgent(ctx, client, agentURL, HoldingsPath, token, Holdings{Partitions: partitions}, &out)
	if err != nil {
		return HoldingsResult{}, fmt.Errorf("hooks: report holdings: %w", refusedAs(err, ErrHoldingsRefused))
	}
	return out, nil
}

// AppHoldings takes the app's holdings report (the partitions it holds,
// see POST /v1/app/holdings) on the agent side. It forgets, durably, what
// the app acknowledged for every partition it does not hold and for every
// copy it had not finished (a restarted app lost the copy it was making),
// so that the next delivery for each is a fresh assign (with its source
// when it is a copy); and it retries every undelivered event now, rather
// than after the backoff the app's refusals while it started earned them.
// An acknowledgement still being recorded is forgotten once recorded. It
// returns the partitions it forgot, in order.
//
// The caller should first commit the loss of the copies the cluster gave
// the node (failover.CmdCopiesLost) and give the Deliverer the desired
// state that follows, so that no assign is delivered for a copy the
// cluster is about to drop.
func (d *Deliverer) AppHoldings(held map[int]bool) ([]int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, ErrClosed
	}
	var forget []int
	for p, a := range d.acked {
		if !held[p] || a.Copying {
			forget = append(forget, p)
		}
	}
	slices.Sort(forget)
	if len(forget) > 0 {
		changes := make([]AckChange, len(forget))
		for i, p := range forget {
			changes[i] = AckChange{Partition: p, Delete: true}
		}
		if err := d.store.Apply(changes); err != nil {
			return nil, err
		}
		for _, c := range changes {
			d.setAckedLocked(c)
			delete(d.redeliver, c.Partition)
			d.markDirtyLocked(c.Partition)
		}
	}
	for p, st := range d.parts {
		if st.recording {
			// Acknowledged by the app before it restarted; forget it once
			// it is written unless the app still holds it.
			d.forgetOnRecord[p] = held[p]
		}
		if st.busy {
			continue
		}
		st.attempts, st.next = 0, time.Time{}
		if st.heapIdx >= 0 {
			heap.Remove(&d.retryQ, st.heapIdx)
		}
		d.markDirtyLocked(p)
	}
	for p := range d.pending {
		d.markDirtyLocked(p)
	}
	for _, o := range d.oneOffs {
		if !o.inFlight {
			o.next = time.Time{}
		}
	}
	d.poke()
	return forget, nil
}

// forgetRecordedLocked is the part of AppHoldings that waits for an
// acknowledgement being recorded: the deletions to apply after the batch
// that recorded changes.
func (d *Deliverer) forgetRecordedLocked(changes []AckChange) []AckChange {
	var out []AckChange
	for _, c := range changes {
		held, ok := d.forgetOnRecord[c.Partition]
		if !ok {
			continue
		}
		delete(d.forgetOnRecord, c.Partition)
		if !c.Delete && (!held || c.Acked.Copying) {
			out = append(out, AckChange{Partition: c.Partition, Delete: true})
		}
	}
	return out
}
