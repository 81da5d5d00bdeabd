package agent

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/steward-dev/steward/failover"
)

// Splits through the agent: POST /v1/partitions/{id}/split starts one
// (agent split RESOURCE P); splitLoop finishes the splits this node's app
// has done (see failover/split.go).

// handleSplit is POST /v1/partitions/{id}/split with {"resource": NAME}:
// the resource is named so that a typo in the partition ID cannot split a
// partition of another resource.
func (a *Agent) handleSplit(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil || id < 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("partition %q is not a partition ID", r.PathValue("id")))
		return
	}
	var body struct {
		Resource string `json:"resource"`
	}
	if err := decodeStrict(w, r, &body); err != nil || body.Resource == "" {
		writeError(w, http.StatusBadRequest, `body must be {"resource": "NAME"}`)
		return
	}
	var refused error
	var epoch uint64
	code := http.StatusConflict
	a.raft.Read(func(c *failover.Cluster) {
		if _, ok := c.Resource(body.Resource); !ok {
			refused, code = fmt.Errorf("no resource %q", body.Resource), http.StatusNotFound
			return
		}
		if id >= len(c.Partitions) || c.Partitions[id].ResourceName() != body.Resource {
			refused, code = fmt.Errorf("resource %q has no partition %d", body.Resource, id), http.StatusNotFound
			return
		}
		epoch = c.Partitions[id].Epoch
		refused = c.CheckSplit(id, epoch)
	})
	if refused != nil {
		writeError(w, code, refused.Error())
		return
	}
	changes, unsubscribe := a.raft.Subscribe()
	defer unsubscribe()
	if _, err := a.apply(failover.Command{Kind: failover.CmdSplitPartition, At: time.Now().UnixNano(), Split: &failover.SplitRequest{Partition: id, Epoch: epoch}}); err != nil {
		writeError(w, http.StatusConflict, "split not started: "+err.Error())
		return
	}
	// The split committed; this agent's copy of the table may apply it a
	// moment later (the leader committed it): wait for it to name the
	// children.
	children := a.splitChildren(id, epoch)
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	for children == nil {
		select {
		case <-changes:
		case <-deadline.C:
			writeError(w, http.StatusGatewayTimeout, fmt.Sprintf("the split of partition %d committed, but this agent has not applied it yet; see agent partitions", id))
			return
		case <-r.Context().Done():
			return
		}
		children = a.splitChildren(id, epoch)
	}
	a.log.Info("split started", "resource", body.Resource, "partition", id, "children", children)
	writeJSON(w, http.StatusAccepted, map[string]any{"resource": body.Resource, "partition": id, "children": children})
}

// splitChildren are the children of partition id's split started at
// epoch, once this agent's table has it (nil before).
func (a *Agent) splitChildren(id int, epoch uint64) []failover.SplitChild {
	var out []failover.SplitChild
	a.raft.Read(func(c *failover.Cluster) {
		if id < len(c.Partitions) && c.Partitions[id].Epoch > epoch && len(c.Partitions[id].SplitInto) > 0 {
			p := c.Partitions[id]
			out = c.SplitChildren(&p)
		}
	})
	return out
}

// splitLoop finishes the splits this node is to do: once its app has
// acknowledged the partition.split at the parent's epoch (at once when no
// app is attached: there is no data to split), it commits CmdFinishSplit.
func (a *Agent) splitLoop() { a.onChange(250*time.Millisecond, a.finishSplits) }

// finishSplits commits CmdFinishSplit for every split this node's app
// has done.
func (a *Agent) finishSplits() {
	if !a.ready.Load() {
		return
	}
	var done []failover.SplitRequest
	a.raft.Read(func(c *failover.Cluster) {
		for i := range c.Partitions {
			p := &c.Partitions[i]
			if !p.Splitting() || p.SplitBy != a.cfg.NodeID || p.Primary != a.cfg.NodeID {
				continue
			}
			if a.deliverer != nil {
				if acked, ok := a.deliverer.AckedEpoch(p.ID); !ok || acked < p.Epoch {
					continue
				}
			}
			done = append(done, failover.SplitRequest{Partition: p.ID, Epoch: p.Epoch})
		}
	})
	for _, s := range done {
		if _, err := a.apply(failover.Command{Kind: failover.CmdFinishSplit, At: time.Now().UnixNano(), Node: a.cfg.NodeID, Split: &s}); err != nil {
			a.log.Warn("finishing a split", "partition", s.Partition, "epoch", s.Epoch, "error", err)
			continue
		}
		a.log.Info("split finished: the children are active", "partition", s.Partition)
	}
}
