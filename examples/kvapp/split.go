package main

import (
	"context"
	"fmt"

	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/hooks"
)

// onSplit is partition.split: this node, the partition's primary, writes
// each child's keys (those whose failover.KeyHash is in the child's range)
// into the child, durably, and stops serving the parent, before it
// acknowledges. Every write it acknowledged is in the parent's data, so it
// is in a child: the agent then activates the children on this node (an
// assign without a source each: the app has them) and releases the
// parent, and the children's replicas are copied from here. Writes that
// come meanwhile are refused (errSplitting) and retried by their senders
// against the new table.
func (s *server) onSplit(ctx context.Context, ev hooks.Event) hooks.Response {
	s.seen(ev)
	s.store.mu.Lock()
	p := s.store.parts[ev.Partition]
	if p != nil && stale(p, ev) {
		s.store.mu.Unlock()
		return hooks.Ack()
	}
	if p == nil || p.role != hooks.RolePrimary || !p.complete {
		s.store.mu.Unlock()
		return hooks.Retry(fmt.Errorf("%w: told to split partition %d", errNotPrimary, ev.Partition))
	}
	p.epoch = ev.Epoch
	p.splitInto = nil
	var ops []diskOp
	moved := make([]int, len(ev.Children))
	for i, ch := range ev.Children {
		p.splitInto = append(p.splitInto, ch.Partition)
		c := s.store.get(ch.Partition)
		if c.complete {
			continue // split before this redelivery
		}
		for key, e := range p.data {
			if h := failover.KeyHash(key); h >= ch.KeyStart && h < ch.KeyEnd {
				c.data[key] = e
				ops = append(ops, diskOp{kind: opEntry, partition: ch.Partition, key: key, e: e})
				moved[i]++
			}
		}
		c.complete = true
		ops = append(ops, diskOp{kind: opState, partition: ch.Partition, state: c.state()})
	}
	children := append([]int(nil), p.splitInto...)
	p.leavePrimary()
	ops = append(ops, diskOp{kind: opState, partition: ev.Partition, state: p.state()})
	seq := s.store.disk.enqueue(ops...)
	s.store.mu.Unlock()
	if err := s.store.durable(ctx, seq); err != nil {
		return hooks.Retry(err)
	}
	s.log.Info("split", "partition", ev.Partition, "epoch", ev.Epoch, "children", children, "keys", moved)
	return hooks.Ack()
}
