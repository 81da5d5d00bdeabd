package hooks

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// The load report.
//
// An app tells its agent what its copies cost and how full its disk is:
// POST /v1/app/load with a LoadReport, with the agent's API token, every
// few seconds (PublishLoadEvery). The agent checks it (a bad report is
// refused with 400, counted, and changes nothing: the last good one
// stays), keeps the latest, and passes it on to the raft leader with its
// lease renewals; the leader's planner moves copies off a node whose disk
// is over -disk-full, gives none to one over -disk-high, and balances the
// nodes' load. A report the leader has not heard again for 30 s no longer
// counts. See docs/operations.md, "Load and disk reports".

// LoadPath is the agent's endpoint for the load report.
const LoadPath = "/v1/app/load"

// LoadReport is the body of POST /v1/app/load.
type LoadReport struct {
	// Disk is the disk holding the app's data; nil when the app does not
	// know it (then only load is balanced).
	Disk *DiskUsage `json:"disk,omitempty"`
	// Partitions are the figures of every partition the app holds, each
	// once. Required: an app that holds nothing sends [].
	Partitions []PartitionLoad `json:"partitions"`
}

// DiskUsage is a disk's capacity and use in bytes.
type DiskUsage struct {
	CapacityBytes int64 `json:"capacity_bytes"`
	UsedBytes     int64 `json:"used_bytes"`
}

// PartitionLoad is the figures of one partition the app holds.
type PartitionLoad struct {
	Partition int `json:"partition"`
	// SizeBytes is the partition's size on this node.
	SizeBytes int64 `json:"size_bytes"`
	// Load is what serving it costs here, in a unit of the app's choosing
	// per second (requests per second, say), the same on every node.
	Load float64 `json:"load"`
}

// LoadResult is the agent's answer to a load report.
type LoadResult struct {
	// Node is the agent's -node-id.
	Node string `json:"node"`
	// Partitions counts the figures accepted.
	Partitions int `json:"partitions"`
}

// PublishLoad sends report to the agent at agentURL (its HTTP API, e.g.
// "http://127.0.0.1:8500"): POST /v1/app/load. token is the agent's API
// token, sent as a bearer token when not empty; a nil client means
// http.DefaultClient. An error wrapping ErrLoadRefused means the report
// itself was refused (fix it rather than send it again).
func PublishLoad(ctx context.Context, client *http.Client, agentURL, token string, report LoadReport) (LoadResult, error) {
	if report.Partitions == nil {
		report.Partitions = []PartitionLoad{}
	}
	var out LoadResult
	if err := postToAgent(ctx, client, agentURL, LoadPath, token, report, &out); err != nil {
		return LoadResult{}, fmt.Errorf("hooks: publish load: %w", refusedAs(err, ErrLoadRefused))
	}
	return out, nil
}

// ErrLoadRefused is wrapped by PublishLoad's error when the agent refused
// the report (a 4xx: a bad figure, an unknown partition, a wrong token).
var ErrLoadRefused = errors.New("hooks: load report refused")

// PublishLoadEvery calls measure and publishes its report every interval
// until ctx is done, starting at once; it returns when ctx is done. A
// failed publication is passed to onError (when not nil) and tried again
// at the next tick: the agent keeps the last good report meanwhile.
func PublishLoadEvery(ctx context.Context, client *http.Client, agentURL, token string, interval time.Duration, measure func() LoadReport, onError func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := PublishLoad(ctx, client, agentURL, token, measure()); err != nil && onError != nil && ctx.Err() == nil {
			onError(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
