package failover

import (
	"fmt"
	"time"
)

// Copies that keep failing.
//
// A copy the app refuses (POST /v1/migrations/{id}/fail, or an error
// answer to the copy's webhook) or that times out is cancelled with
// Action.CopyFailed set, and the partition records the failure against the
// target (CopyFailure). The planner then waits before it tries that target
// again, twice as long after every failure (Limits.CopyRetryBackoff,
// doubled per failure up to Limits.CopyRetryBackoffMax), and after
// Limits.MaxCopyFailures failures it places the copy on another node. A
// node that failed as often is tried again only when no other node can
// take the copy (a copy that may succeed beats a partition left short of
// copies). The record is cleared when a copy to that node completes, and
// when the node is removed.
//
// The waits are measured on the caller's monotonic clock (Ages.CopyFailures:
// the time since it saw the latest failure of each record), never from the
// wall-clock stamp CopyFailure.Last.

// CopyFailure counts the failed copies of one partition to one node.
type CopyFailure struct {
	// Node is the target the copies failed on.
	Node string `json:"node"`
	// Count is how many copies to Node failed in a row.
	Count int `json:"count"`
	// Last is when the latest one failed, unix nanoseconds of the proposer's
	// wall clock, for display only.
	Last int64 `json:"last"`
}

// CopyFailureKey is the key of Ages.CopyFailures for a partition and node.
func CopyFailureKey(partition int, node string) string {
	return fmt.Sprintf("%d/%s", partition, node)
}

// recordCopyFailure counts one more failed copy of p to node.
func recordCopyFailure(p *Partition, node string, at int64) {
	out := make([]CopyFailure, 0, len(p.CopyFailures)+1)
	found := false
	for _, f := range p.CopyFailures {
		if f.Node == node {
			f.Count++
			f.Last = at
			found = true
		}
		out = append(out, f)
	}
	if !found {
		out = append(out, CopyFailure{Node: node, Count: 1, Last: at})
	}
	p.CopyFailures = out
}

// dropCopyFailure returns fs without node's record (nil when empty), never
// sharing memory with fs.
func dropCopyFailure(fs []CopyFailure, node string) []CopyFailure {
	var out []CopyFailure
	for _, f := range fs {
		if f.Node != node {
			out = append(out, f)
		}
	}
	return out
}

// copyFailures returns the record of p's failed copies to node.
func copyFailures(p *Partition, node string) (CopyFailure, bool) {
	for _, f := range p.CopyFailures {
		if f.Node == node {
			return f, true
		}
	}
	return CopyFailure{}, false
}

// CopyRetryWait is how long the planner waits after the count-th failed
// copy to a node before it tries that node again: base doubled per failure
// after the first, at most max (max 0: no cap).
func CopyRetryWait(count int, base, max time.Duration) time.Duration {
	if count < 1 || base <= 0 {
		return 0
	}
	w := base
	for i := 1; i < count; i++ {
		if max > 0 && w >= max {
			break
		}
		w *= 2
	}
	if max > 0 && w > max {
		w = max
	}
	return w
}

// copyTarget is how the copy-failure record of a partition judges one
// target: how many copies to it failed in a row, whether the planner is
// still waiting before it tries it again, and whether it failed
// Limits.MaxCopyFailures times (then another node goes first).
type copyTarget struct {
	failures  int
	waiting   bool
	exhausted bool
}

// judgeCopyTarget applies the backoff and the failure limit to node as a
// target of part.
func (p *planner) judgeCopyTarget(part *Partition, node string) copyTarget {
	if len(part.CopyFailures) == 0 {
		return copyTarget{}
	}
	f, ok := copyFailures(part, node)
	if !ok {
		return copyTarget{}
	}
	wait := CopyRetryWait(f.Count, time.Duration(p.lim.CopyRetryBackoff), time.Duration(p.lim.CopyRetryBackoffMax))
	return copyTarget{
		failures:  f.Count,
		waiting:   p.ages.copyFailure(part.ID, node) < wait,
		exhausted: p.lim.MaxCopyFailures > 0 && f.Count >= p.lim.MaxCopyFailures,
	}
}
