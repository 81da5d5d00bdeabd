package main

import "context"

// A new primary's sync.
//
// A node that becomes a partition's primary (promoted, assigned, or
// restarted as one) may hold writes the previous primary never confirmed:
// they reached this node but not every copy. Serving them would let a read
// see a write that the loss of this node could take back. So before it
// serves anything, the new primary sends everything it holds to every
// current copy (the holders and migration targets of its agent's table, as
// for a write), each of which merges it by version and has it on disk
// before it answers. Then every key it holds is on every copy, and it
// serves. Reads and writes meanwhile get errSyncing, which the node that
// took the request retries within its budget.

// syncChunkBytes is roughly how many bytes of values one replicated batch
// of a sync carries.
const syncChunkBytes = maxValueBytes / 2

// startSync starts the sync of partition id unless one runs or none is
// needed.
func (s *server) startSync(id int) {
	s.store.mu.Lock()
	p := s.store.parts[id]
	if p == nil || p.syncing || p.synced {
		s.store.mu.Unlock()
		return
	}
	p.syncing = true
	s.store.mu.Unlock()
	s.goBackground(func() { s.runSync(id) })
}

// runSync pushes the partition to its copies until they all have it, or
// until the node no longer needs to (it stopped being primary) or shuts
// down. Each round takes a fresh snapshot and a fresh table.
func (s *server) runSync(id int) {
	for attempt := 0; ; attempt++ {
		msg, gen, ok := s.store.syncSnapshot(id)
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.RetryBudget)
		err := s.pushSync(ctx, msg)
		cancel()
		if err == nil && s.store.syncDone(msg, gen) {
			s.log.Info("serving as primary: every copy has what this node holds", "partition", id, "epoch", msg.Epoch, "keys", len(msg.Entries))
			return
		}
		if err != nil {
			s.log.Warn("primary not serving yet: cannot bring a copy up to date", "partition", id, "attempt", attempt+1, "err", err)
		}
		if !sleepCtx(s.ctx, backoff(attempt)) {
			return
		}
	}
}

// pushSync sends msg's entries to every current copy of the partition, in
// chunks, each one to all copies in parallel.
func (s *server) pushSync(ctx context.Context, msg replicateMsg) error {
	if len(msg.Entries) == 0 {
		return nil
	}
	v, err := s.agent.get(ctx, true)
	if err != nil {
		return err
	}
	dests := s.writeDests(v, msg.Partition, nil)
	if len(dests) == 0 {
		return nil
	}
	msg.From = s.agent.self()
	msg.Via = []string{msg.From}
	for _, chunk := range chunks(msg) {
		if err := s.replicateAll(ctx, chunk, dests, true); err != nil {
			return err
		}
	}
	return nil
}

// chunks splits msg into batches of about syncChunkBytes of values, each
// of at least one entry.
func chunks(msg replicateMsg) []replicateMsg {
	var out []replicateMsg
	cur := msg
	cur.Entries = nil
	size := 0
	for _, e := range msg.Entries {
		if len(cur.Entries) > 0 && size+len(e.Value) > syncChunkBytes {
			out = append(out, cur)
			cur.Entries, size = nil, 0
		}
		cur.Entries = append(cur.Entries, e)
		size += len(e.Value) + len(e.Key)
	}
	if len(cur.Entries) > 0 {
		out = append(out, cur)
	}
	return out
}
