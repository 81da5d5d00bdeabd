package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/hooks"
	"github.com/steward-dev/steward/raftctl"
)

// This file connects the replicated state to the app next to the agent:
// the desired assignment is recomputed on every change and handed to the
// hooks Deliverer, which delivers signed webhooks until the app has
// acknowledged them; copies the app finishes come back here and are
// committed through raft as migration completions.

// webhookSecretFile keeps a generated webhook secret across restarts.
const webhookSecretFile = "webhook-secret"

// loadWebhookSecret returns the configured secret, or the one kept in the
// data dir, generating and saving it (mode 0600) the first time.
func (a *Agent) loadWebhookSecret() ([]byte, error) {
	if a.cfg.WebhookSecret != "" {
		secret, err := hooks.ParseSecret(a.cfg.WebhookSecret)
		if err != nil {
			return nil, configErrorf("-webhook-secret: %v", err)
		}
		return secret, nil
	}
	path := filepath.Join(a.cfg.DataDir, webhookSecretFile)
	if b, err := os.ReadFile(path); err == nil {
		secret, err := hooks.ParseSecret(strings.TrimSpace(string(b)))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return secret, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	s, err := hooks.GenerateSecret()
	if err != nil {
		return nil, err
	}
	if err := raftctl.WriteFileDurably(path, []byte(s+"\n")); err != nil {
		return nil, err
	}
	a.log.Info("generated a webhook secret; give it to the app", "file", path)
	return hooks.ParseSecret(s)
}

// startWebhooks opens the acknowledged-state store and the Deliverer.
func (a *Agent) startWebhooks() error {
	secret, err := a.loadWebhookSecret()
	if err != nil {
		return err
	}
	if a.startIncarnation, err = readIncarnation(filepath.Join(a.cfg.DataDir, "incarnation")); err != nil {
		return err
	}
	store, err := hooks.OpenAckStore(filepath.Join(a.cfg.DataDir, "webhook-acks.log"))
	if err != nil {
		return fmt.Errorf("webhook acknowledgements: %w", err)
	}
	hc := hooks.DefaultConfig()
	hc.NodeID = a.cfg.NodeID
	hc.URL = a.cfg.WebhookURL
	hc.Secret = secret
	hc.Observer = a.metrics
	a.acks = store
	a.deliverer, err = hooks.NewDeliverer(hc, store, copyReporter{a}, a.log.Named("webhooks"))
	if err != nil {
		return fmt.Errorf("webhooks: %w", err)
	}
	a.goLoop("desired", a.desiredLoop)
	a.goLoop("copies", a.copyLoop)
	return nil
}

// desiredLoop hands the app's desired assignment to the Deliverer after
// every change of the state, once this agent has caught up (a stale state
// would tell the app to release what it still holds). It also tells the
// app when its node rejoined the cluster.
func (a *Agent) desiredLoop() {
	// The incarnation the app was last told about survives restarts, so
	// that a node that comes back (and is re-registered before this agent
	// has caught up) still tells its app it rejoined.
	incPath := filepath.Join(a.cfg.DataDir, "incarnation")
	lastIncarnation := a.startIncarnation
	// unsaved is an incarnation the app was told about but that is not
	// yet in incPath: it is saved only once no node.rejoin waits for the
	// app's acknowledgement. Saved at once, a crash before that
	// acknowledgement followed by a restart the cluster does not notice
	// (same incarnation) took the app for caught up: it was never told
	// again, led with what it had before and served stale reads.
	var unsaved uint64
	pendingPath := filepath.Join(a.cfg.DataDir, rejoinPendingFile)
	a.onChange(time.Second, func() {
		if !a.ready.Load() {
			return
		}
		var desired map[int]hooks.Assignment
		var me failover.Member
		var registered bool
		a.raft.Read(func(c *failover.Cluster) {
			desired = hooks.Desired(c, a.cfg.NodeID)
			me, registered = c.Members[a.cfg.NodeID]
		})
		if registered && me.Incarnation != lastIncarnation {
			// Incarnation 1 is the first life; any later one is a rejoin,
			// also when this data dir is new (its app may hold stale data).
			if me.Incarnation > 1 && me.Incarnation > lastIncarnation {
				// Durably first: a crash before the app acknowledges
				// leaves the next process catching up (loadPendingRejoin).
				if err := raftctl.WriteFileDurably(pendingPath, []byte(strconv.FormatUint(me.Incarnation, 10)+"\n")); err != nil {
					a.log.Warn("saving the pending node.rejoin", "error", err)
				}
				a.notifyRejoin(desired)
			}
			lastIncarnation = me.Incarnation
			unsaved = lastIncarnation
		}
		if unsaved != 0 && !a.deliverer.Rejoining() {
			if err := raftctl.WriteFileDurably(incPath, []byte(strconv.FormatUint(unsaved, 10)+"\n")); err != nil {
				a.log.Warn("saving the incarnation", "error", err)
			} else if err := os.Remove(pendingPath); err != nil && !errors.Is(err, os.ErrNotExist) {
				a.log.Warn("removing the pending node.rejoin", "error", err)
			} else {
				unsaved = 0
			}
		}
		if registered {
			// After the Notify above: a catching up that ends on this sees
			// the rejoin pending until the app acknowledges it.
			a.restart.toldIncarnation.Store(lastIncarnation)
		}
		a.deliverer.SetDesired(desired)
	})
}

// rejoinPendingFile, in the data dir, holds the incarnation of a node.rejoin
// sent to the app and not yet acknowledged; it is removed once it is.
const rejoinPendingFile = "rejoin-pending"

// loadPendingRejoin reads rejoinPendingFile: a node.rejoin the last process
// sent and the app never acknowledged (the agent crashed first). This
// process then announces its app not ready until the app has acknowledged
// a node.rejoin again: a restart the cluster did not notice keeps the
// incarnation, so nothing else would tell it the app is behind.
func (a *Agent) loadPendingRejoin() error {
	n, err := readIncarnation(filepath.Join(a.cfg.DataDir, rejoinPendingFile))
	if err != nil || n == 0 {
		return err
	}
	a.restart.rejoinAtStart = n
	a.restart.catchingUp.Store(true)
	a.log.Info("the app had not acknowledged node.rejoin when this agent last stopped: it is told again, and leads nothing until it acknowledges", "incarnation", n)
	return nil
}

// readIncarnation reads the incarnation saved in the data dir: 0 if there
// is none, an error naming the file if it does not hold a number.
func readIncarnation(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s holds %s, not an incarnation number (damaged?); remove it, and the app is told once more that its node rejoined", path, snippet(b))
	}
	return n, nil
}

// notifyRejoin sends node.rejoin listing the partitions the app may keep:
// those it acknowledged before and still holds in the cluster's view. The
// others get partition.release from the Deliverer.
func (a *Agent) notifyRejoin(desired map[int]hooks.Assignment) {
	var keep []int
	for p := range a.acks.Snapshot() {
		if _, ok := desired[p]; ok {
			keep = append(keep, p)
		}
	}
	sort.Ints(keep)
	if err := a.deliverer.Notify(hooks.Event{Type: hooks.TypeRejoin, NodeID: a.cfg.NodeID, Role: hooks.RoleNone, Partitions: keep}); err != nil {
		a.log.Warn("node.rejoin webhook", "error", err)
	}
	a.log.Info("told the app about the rejoin", "partitions_kept", len(keep))
}

// notifyQuorum tells the app that the cluster lost or regained its quorum.
func (a *Agent) notifyQuorum(lost bool) {
	if a.deliverer == nil {
		return
	}
	q := "ok"
	if lost {
		q = "lost"
	}
	if err := a.deliverer.Notify(hooks.Event{Type: hooks.TypeQuorum, NodeID: a.cfg.NodeID, Role: hooks.RoleNone, Quorum: q}); err != nil {
		a.log.Warn("cluster.quorum webhook", "error", err)
	}
}

// copyOutcome is a finished copy to commit through raft.
type copyOutcome struct {
	partition int
	migration string
	ok        bool
	reason    string
}

// copyReporter is the Deliverer's CopySink: it queues outcomes for
// copyLoop and returns at once.
type copyReporter struct{ a *Agent }

func (r copyReporter) CopyDone(p int, id string) { r.a.queueCopy(copyOutcome{p, id, true, ""}) }
func (r copyReporter) CopyFailed(p int, id, reason string) {
	r.a.queueCopy(copyOutcome{p, id, false, reason})
}

// copyQueue holds outcomes not yet committed.
type copyQueue struct {
	mu      sync.Mutex
	pending []copyOutcome
	wake    chan struct{}
}

func (a *Agent) queueCopy(o copyOutcome) {
	a.copies.mu.Lock()
	a.copies.pending = append(a.copies.pending, o)
	a.copies.mu.Unlock()
	select {
	case a.copies.wake <- struct{}{}:
	default:
	}
}

// copyLoop commits copy outcomes: a finished copy completes its migration
// (the target becomes a replica and the holder it replaces is released), a
// failed one cancels it so that the planner tries again. Each is retried
// until it applies or the migration is gone (completed, cancelled or
// re-planned by the leader).
//
// It wakes for a new outcome (queueCopy) and, while an outcome waits to be
// retried, every copyRetryInterval; with nothing pending it does not wake
// at all, since an idle agent's CPU is mostly its wake-ups.
func (a *Agent) copyLoop() {
	var retry <-chan time.Time // nil while nothing waits for a retry
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-a.copies.wake:
		case <-retry:
		}
		retry = nil
		a.copies.mu.Lock()
		work := a.copies.pending
		a.copies.pending = nil
		a.copies.mu.Unlock()
		var again []copyOutcome
		for _, o := range work {
			if !a.commitCopy(o) {
				again = append(again, o)
			}
		}
		if len(again) > 0 {
			a.copies.mu.Lock()
			a.copies.pending = append(again, a.copies.pending...)
			a.copies.mu.Unlock()
			retry = time.After(copyRetryInterval)
		}
	}
}

// copyRetryInterval is how soon an outcome that did not commit (no leader,
// an epoch that moved on meanwhile) is tried again.
const copyRetryInterval = 250 * time.Millisecond

// commitCopy tries once to commit o; true when there is nothing left to do.
func (a *Agent) commitCopy(o copyOutcome) bool {
	var epoch uint64
	found := false
	a.raft.Read(func(c *failover.Cluster) {
		if o.partition < 0 || o.partition >= len(c.Partitions) {
			return
		}
		p := c.Partitions[o.partition]
		for _, m := range p.Migrations {
			if m.ID == o.migration && m.Target == a.cfg.NodeID {
				found, epoch = true, p.Epoch
			}
		}
	})
	if !found {
		return true
	}
	took, timed := a.ctrl.Ages().MigrationAge(o.migration, a.clock.Elapsed())
	act := failover.Action{Kind: failover.ActionCompleteMigration, Partition: o.partition, Epoch: epoch, MigrationID: o.migration,
		Reasons: []string{"the app of " + a.cfg.NodeID + " acknowledged the copy"}}
	if !o.ok {
		act.Kind = failover.ActionCancelMigration
		act.CopyFailed = true // the planner backs off before this node gets the copy again
		act.Reasons = []string{"the app of " + a.cfg.NodeID + " failed the copy: " + o.reason}
	}
	res, err := a.apply(failover.Command{Kind: failover.CmdApplyActions, At: time.Now().UnixNano(), Actions: []failover.Action{act}})
	if err != nil {
		a.log.Debug("committing a copy outcome; will retry", "migration", o.migration, "error", err)
		return false
	}
	if res.Applied == 1 {
		if o.ok && timed {
			a.metrics.migrationSeconds.Observe(took.Seconds())
		}
		if o.ok {
			a.log.Info("copy complete", "partition", o.partition, "migration", o.migration)
		} else {
			a.metrics.copyFailures.WithLabelValues(a.cfg.NodeID, "app").Inc()
			a.log.Warn("copy failed; the planner will retry", "partition", o.partition, "migration", o.migration, "reason", o.reason)
		}
		return true
	}
	return false // the epoch moved on meanwhile: try again with the new one
}

// handleMigrationComplete is POST /v1/migrations/{id}/complete: the app
// finished a copy it answered 202 to.
func (a *Agent) handleMigrationComplete(w http.ResponseWriter, r *http.Request) {
	a.finishMigration(w, r.PathValue("id"), true, "")
}

// handleMigrationFail is POST /v1/migrations/{id}/fail with {"reason": ...}.
func (a *Agent) handleMigrationFail(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Reason string `json:"reason"`
	}
	if r.ContentLength != 0 {
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes)).Decode(&body); err != nil {
			writeError(w, http.StatusBadRequest, `body must be {"reason": "..."}`)
			return
		}
	}
	if body.Reason == "" {
		body.Reason = "no reason given"
	}
	a.finishMigration(w, r.PathValue("id"), false, body.Reason)
}

func (a *Agent) finishMigration(w http.ResponseWriter, id string, ok bool, reason string) {
	partition := -1
	a.raft.Read(func(c *failover.Cluster) {
		for _, p := range c.Partitions {
			if m, has := p.MigrationTo(a.cfg.NodeID); has && m.ID == id {
				partition = p.ID
			}
		}
	})
	if partition < 0 {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no migration %q to this node (finished, cancelled or unknown)", id))
		return
	}
	if a.deliverer != nil {
		var err error
		if ok {
			err = a.deliverer.MigrationCompleted(id)
		} else {
			err = a.deliverer.MigrationFailed(id, reason)
		}
		if err == nil {
			writeJSON(w, http.StatusAccepted, map[string]any{"migration": id, "partition": partition})
			return
		}
		if !errors.Is(err, hooks.ErrUnknownMigration) {
			writeError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		// The Deliverer did not know it (the agent restarted since the
		// 202): the cluster state does, so commit it directly.
	}
	a.queueCopy(copyOutcome{partition: partition, migration: id, ok: ok, reason: reason})
	writeJSON(w, http.StatusAccepted, map[string]any{"migration": id, "partition": partition})
}
