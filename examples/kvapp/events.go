package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/steward-dev/steward/hooks"
)

// The webhook callbacks. Each is idempotent and keyed by (partition,
// epoch): an event older than the epoch held for its partition is
// acknowledged and ignored. Every webhook also invalidates the cached
// partition table, since it means the cluster changed.

// stale reports (under the store lock) whether ev is older than what is
// held for its partition.
func stale(p *partition, ev hooks.Event) bool { return ev.Epoch < p.epoch }

func (s *server) seen(ev hooks.Event) {
	s.agent.setNodeID(ev.NodeID)
	s.agent.invalidate()
}

func (s *server) onAssign(ctx context.Context, ev hooks.Event) hooks.Response {
	s.seen(ev)
	if ev.Source != nil {
		return s.assignWithCopy(ctx, ev)
	}
	return s.hold(ctx, ev, "holding partition")
}

// hold takes an assign without a source or a promote: the partition in
// ev's role at ev's epoch, on disk before the event is acknowledged. A new
// primary serves once its copies have what it holds (sync.go).
func (s *server) hold(ctx context.Context, ev hooks.Event, what string) hooks.Response {
	s.store.mu.Lock()
	p := s.store.get(ev.Partition)
	if stale(p, ev) {
		s.store.mu.Unlock()
		return hooks.Ack()
	}
	complete := p.complete
	if !complete {
		// The role first, as a copy with a source does (startCopy): the
		// recovery below registers this node with a holder for the
		// writes after its snapshot, and a node with no role would refuse
		// them as not held, and the holder then drops it. Incomplete, the
		// partition serves nothing yet.
		s.setRole(p, ev)
		s.store.saveState(ev.Partition, p)
	}
	s.store.mu.Unlock()
	if !complete {
		// Told to hold a partition this app has no full copy of. On a fresh
		// cluster nobody has data and an empty partition is right. An app
		// that lost its data reports it at start-up, and the agent then
		// sends a copy with a source instead; this is the safety net for
		// an agent that still believes it (one whose own data dir was
		// wiped): the other holders may have the data, so take it from
		// them.
		if err := s.recoverFromHolders(ctx, ev.Partition); err != nil {
			s.log.Warn("cannot get the partition from its other holders yet", "partition", ev.Partition, "epoch", ev.Epoch, "type", ev.Type, "err", err)
			return hooks.Retry(err)
		}
	}
	s.store.mu.Lock()
	p = s.store.get(ev.Partition)
	if stale(p, ev) {
		s.store.mu.Unlock()
		return hooks.Ack()
	}
	s.setRole(p, ev)
	p.complete = true
	s.readyAsPrimary(p)
	seq := s.store.saveState(ev.Partition, p)
	keys := len(p.data)
	s.store.mu.Unlock()
	if err := s.store.durable(ctx, seq); err != nil {
		return hooks.Retry(err)
	}
	s.log.Info(what, "partition", ev.Partition, "role", ev.Role, "epoch", ev.Epoch, "keys", keys)
	if ev.Role == hooks.RolePrimary {
		s.startSync(ev.Partition)
	}
	return hooks.Ack()
}

// setRole applies ev's role and epoch. A node that becomes primary, or
// stops being it, serves nothing as primary until it has synced again.
// Callers hold the store lock.
func (s *server) setRole(p *partition, ev hooks.Event) {
	// Any event after a split is a release (the split finished) or means
	// the split was called off: the partition is whole again.
	p.splitInto = nil
	wasPrimary := p.role == hooks.RolePrimary
	p.role = ev.Role
	p.epoch = ev.Epoch
	p.raiseFence(ev.Epoch)
	if ev.Role == hooks.RolePrimary && ev.Epoch > p.writeEpoch {
		p.writeEpoch = ev.Epoch
	}
	if wasPrimary != (ev.Role == hooks.RolePrimary) {
		p.leavePrimary()
	}
}

// readyAsPrimary lets a complete primary that holds no key serve at once:
// there is nothing it could show that its copies lack. Callers hold the
// store lock.
func (s *server) readyAsPrimary(p *partition) {
	if p.role == hooks.RolePrimary && p.complete && !p.synced && len(p.data) == 0 {
		p.synced = true
	}
}

func (s *server) onPromote(ctx context.Context, ev hooks.Event) hooks.Response {
	s.seen(ev)
	return s.hold(ctx, ev, "promoted")
}

func (s *server) onDemote(ctx context.Context, ev hooks.Event) hooks.Response {
	return s.changeRole(ctx, ev, "demoted", s.store.saveState)
}

func (s *server) onRelease(ctx context.Context, ev hooks.Event) hooks.Response {
	s.cancelCopy(ev.Partition, "")
	return s.changeRole(ctx, ev, "released", s.store.clear)
}

// changeRole takes in a demote or a release: unless it is older than what
// this node holds, the new role and epoch, with persist's change of the
// data (keep it, or clear it), on disk before the event is acknowledged.
func (s *server) changeRole(ctx context.Context, ev hooks.Event, verb string, persist func(int, *partition) uint64) hooks.Response {
	s.seen(ev)
	s.store.mu.Lock()
	p := s.store.get(ev.Partition)
	if stale(p, ev) {
		s.store.mu.Unlock()
		return hooks.Ack()
	}
	s.setRole(p, ev)
	seq := persist(ev.Partition, p)
	s.store.mu.Unlock()
	if err := s.store.durable(ctx, seq); err != nil {
		return hooks.Retry(err)
	}
	s.log.Info(verb, "partition", ev.Partition, "epoch", ev.Epoch)
	return hooks.Ack()
}

// onRejoin drops every partition the cluster does not give this node now
// (neither holder nor migration target in the agent's fresh table): the
// node was away, and what it kept from before may be stale. The event
// lists the partitions the agent lets it keep; the fresh table is used
// instead of the list so that an assign delivered just before the rejoin
// is not undone, and anything newly given is copied by its assign anyway.
//
// The partitions it keeps missed the writes made while it was away
// (primaries skip failed and restarting members), so they are merged again
// from their other holders, primary first, before the event is
// acknowledged. That includes a partition the fresh table already makes
// this node primary of: after a planned restart the planner hands the
// primaries back as soon as the node is back, and its agent sends the
// promotion only once this event is acknowledged; a primary that had not
// caught up would answer 404 for writes it missed.
func (s *server) onRejoin(ctx context.Context, ev hooks.Event) hooks.Response {
	s.seen(ev)
	v, err := s.agent.get(ctx, true)
	if err != nil {
		return hooks.Retry(err)
	}
	self := s.agent.self()
	var dropped, resync []int
	s.store.mu.Lock()
	for id, p := range s.store.parts {
		pv := v.partition(id)
		switch {
		case pv.holds(self):
			if p.complete {
				resync = append(resync, id)
			}
		case len(p.data) > 0 || p.complete:
			s.store.clear(id, p)
			dropped = append(dropped, id)
		}
	}
	s.store.mu.Unlock()
	for _, id := range dropped {
		s.cancelCopy(id, "")
	}
	for _, id := range resync {
		if err := s.recoverFromHolders(ctx, id); err != nil {
			return hooks.Retry(fmt.Errorf("kvapp: re-sync partition %d after the rejoin: %w", id, err))
		}
	}
	s.store.mu.Lock()
	seq := s.store.tail()
	s.store.mu.Unlock()
	if err := s.store.durable(ctx, seq); err != nil {
		return hooks.Retry(err)
	}
	s.log.Info("rejoined", "dropped", dropped, "resynced", resync, "listed", ev.Partitions)
	return hooks.Ack()
}

func (s *server) onQuorum(ctx context.Context, ev hooks.Event) hooks.Response {
	s.seen(ev)
	s.log.Info("cluster quorum", "quorum", ev.Quorum)
	return hooks.Ack()
}

// recoverFromHolders fills an incomplete partition from another holder in
// the agent's table. It succeeds empty-handed only when every other holder
// answers that it has no complete copy either (a fresh partition); a
// holder that cannot be reached might have the data, so that is an error.
func (s *server) recoverFromHolders(ctx context.Context, id int) error {
	v, err := s.agent.get(ctx, true)
	if err != nil {
		return err
	}
	p := v.partition(id)
	var errs []error
	for _, n := range p.copies(s.agent.self()) {
		if n != p.Primary && !contains(p.Replicas, n) {
			continue // a migration target is not a source
		}
		if m, ok := v.members[n]; ok && m.gone() {
			continue
		}
		addr := v.appAddr(n)
		if addr == "" {
			errs = append(errs, fmt.Errorf("kvapp: no app address for %s", n))
			continue
		}
		err := s.copyFrom(ctx, id, addr, v.index)
		if err == nil {
			return nil
		}
		if !errors.Is(err, errNotHeld) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// copyFrom fetches partition id from the app at addr, registering this
// node there as a copy target, and merges it in. index is the state index
// of this node's table, read fresh by the caller: its agent sent the event
// this copy answers, so the table is at least as new as this node's return
// from any failure (the source lets the registration go when a table at
// least that new shows this node failed, isStale).
func (s *server) copyFrom(ctx context.Context, id int, addr string, index uint64) error {
	q := url.Values{"node": {s.agent.self()}, "addr": {s.cfg.Addr}, "index": {strconv.FormatUint(index, 10)}}
	rctx, cancel := context.WithTimeout(ctx, 4*s.cfg.PeerTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, "http://"+addr+"/internal/partitions/"+strconv.Itoa(id)+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("kvapp: copy partition %d from %s: %w", id, addr, errNotHeld)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("kvapp: copy partition %d from %s: %s: %s", id, addr, resp.Status, b)
	}
	var d partitionDump
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		return fmt.Errorf("kvapp: copy partition %d from %s: decode: %w", id, addr, err)
	}
	if d.Partition != id {
		return fmt.Errorf("kvapp: copy partition %d from %s: got partition %d", id, addr, d.Partition)
	}
	s.store.merge(d) // made durable by the state change that follows
	return nil
}

// copyJob is a background copy answering one assign with a source.
type copyJob struct {
	migrationID string
	epoch       uint64
	cancel      context.CancelFunc
}

// assignWithCopy starts (or finds) the background copy for ev and answers
// 202 once the partition's new state (not complete) is on disk; the copy
// then acknowledges the migration to the agent.
func (s *server) assignWithCopy(ctx context.Context, ev hooks.Event) hooks.Response {
	resp, seq := s.startCopy(ev)
	if resp.Status != http.StatusAccepted {
		return resp
	}
	if err := s.store.durable(ctx, seq); err != nil {
		return hooks.Retry(err)
	}
	return resp
}

func (s *server) startCopy(ev hooks.Event) (hooks.Response, uint64) {
	s.store.mu.Lock()
	p := s.store.get(ev.Partition)
	if stale(p, ev) {
		s.store.mu.Unlock()
		return hooks.Ack(), 0
	}
	s.copyMu.Lock()
	defer s.copyMu.Unlock()
	if s.copied[ev.MigrationID] && p.complete {
		s.store.mu.Unlock()
		return hooks.Ack(), 0 // the copy is done; the agent asks again
	}
	if j := s.copies[ev.Partition]; j != nil && j.migrationID == ev.MigrationID {
		// The same copy, delivered again (perhaps at a newer epoch, as
		// other holders of the partition changed): it goes on.
		p.epoch = ev.Epoch
		p.raiseFence(ev.Epoch)
		seq := s.store.saveState(ev.Partition, p)
		s.store.mu.Unlock()
		return hooks.Copying(), seq
	}
	// Always copy, even over data held from before: the merge keeps the
	// newest version of every key, and old data here may be stale.
	s.setRole(p, ev)
	p.complete = false
	seq := s.store.saveState(ev.Partition, p)
	s.store.mu.Unlock()
	if old := s.copies[ev.Partition]; old != nil {
		old.cancel()
	}
	if s.ctx.Err() != nil {
		return hooks.Retry(errors.New("kvapp: shutting down")), 0
	}
	ctx, cancel := context.WithCancel(s.ctx)
	j := &copyJob{migrationID: ev.MigrationID, epoch: ev.Epoch, cancel: cancel}
	s.copies[ev.Partition] = j
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer cancel()
		s.runCopy(ctx, j, ev)
	}()
	s.log.Info("copying partition", "partition", ev.Partition, "epoch", ev.Epoch, "from", ev.Source.NodeID, "migration", ev.MigrationID)
	return hooks.Copying(), seq
}

// cancelCopy stops the partition's copy, if any (only the one for
// migrationID when it is not empty).
func (s *server) cancelCopy(id int, migrationID string) {
	s.copyMu.Lock()
	defer s.copyMu.Unlock()
	if j := s.copies[id]; j != nil && (migrationID == "" || j.migrationID == migrationID) {
		j.cancel()
		delete(s.copies, id)
	}
}

func (s *server) runCopy(ctx context.Context, j *copyJob, ev hooks.Event) {
	var err error
	for attempt := 0; attempt < s.cfg.CopyAttempts; attempt++ {
		// The table's index of the registration, fresh for each attempt
		// (err is the loop's: a failure after the last attempt is told).
		var v *clusterView
		v, err = s.agent.get(ctx, true)
		if err == nil {
			err = s.copyFrom(ctx, ev.Partition, ev.Source.AppAddr, v.index)
		}
		if err == nil {
			break
		}
		s.log.Warn("copy failed", "partition", ev.Partition, "from", ev.Source.AppAddr, "attempt", attempt+1, "err", err)
		if !sleepCtx(ctx, 200*time.Millisecond<<attempt) {
			break
		}
	}
	if ctx.Err() != nil {
		return // released, superseded or shutting down: nobody wants the answer
	}
	if err != nil {
		s.finishCopy(j, ev, false)
		s.tellAgent(ctx, ev, err)
		return
	}
	seq, ok := s.finishCopy(j, ev, true)
	if !ok {
		return
	}
	if err := s.store.durable(ctx, seq); err != nil {
		// Not on disk: not complete. The agent times the copy out, or this
		// app restarts, reports the partition missing, and copies again.
		s.log.Error("a finished copy cannot be written", "partition", ev.Partition, "err", err)
		return
	}
	s.tellAgent(ctx, ev, nil)
}

// finishCopy records the copy's end unless a newer event has superseded it;
// it reports whether the agent should be told, and the sequence number of
// the partition's new state on disk, to wait for before telling it.
func (s *server) finishCopy(j *copyJob, ev hooks.Event, ok bool) (uint64, bool) {
	s.store.mu.Lock()
	defer s.store.mu.Unlock()
	s.copyMu.Lock()
	defer s.copyMu.Unlock()
	if s.copies[ev.Partition] != j {
		return 0, false
	}
	delete(s.copies, ev.Partition)
	p := s.store.get(ev.Partition)
	if p.epoch < ev.Epoch || p.role == hooks.RoleNone {
		return 0, false // released meanwhile
	}
	if !ok {
		return 0, true
	}
	p.complete = true
	s.copied[ev.MigrationID] = true
	s.log.Info("copy complete", "partition", ev.Partition, "epoch", ev.Epoch, "keys", len(p.data), "migration", ev.MigrationID)
	return s.store.saveState(ev.Partition, p), true
}

// tellAgent acknowledges (copyErr nil) or fails the migration, retrying
// briefly: if it never gets through, the agent times the copy out and
// delivers the assign again, which is answered from the finished copy.
func (s *server) tellAgent(ctx context.Context, ev hooks.Event, copyErr error) {
	for attempt := 0; attempt < 8; attempt++ {
		rctx, cancel := context.WithTimeout(ctx, s.cfg.PeerTimeout)
		var err error
		if copyErr == nil {
			err = hooks.AckMigration(rctx, s.client, s.cfg.AgentURL, ev.MigrationID, s.cfg.APIToken)
		} else {
			err = hooks.FailMigration(rctx, s.client, s.cfg.AgentURL, ev.MigrationID, s.cfg.APIToken, copyErr.Error())
		}
		cancel()
		if err == nil {
			return
		}
		s.log.Warn("cannot tell the agent about a copy", "migration", ev.MigrationID, "err", err)
		if !sleepCtx(ctx, backoff(attempt+2)) {
			return
		}
	}
}
