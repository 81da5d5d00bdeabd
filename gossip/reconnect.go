package gossip

import (
	"math/rand/v2"
	"sort"
	"sync"
	"time"
)

// Reconnecting after a partition.
//
// memberlist never merges again two sides of a partition that each
// declared the other dead: it probes, gossips to and push-pulls with live
// nodes only (dead ones still get gossip for GossipToTheDeadTime, which
// a longer cut outlasts, and memberlist forgets them after it). Serf solves
// this with a reconnect loop that periodically joins failed members'
// addresses; this is the same. Every ReconnectInterval the loop joins (one
// push-pull state exchange each) the nodes that went dead, not left, less
// than ReconnectTimeout ago, plus the caller's seeds the view does not
// hold alive. Both sides of a healed cut do it. The first exchange tells
// each side that the other thinks it dead, and each refutes with a higher
// incarnation; the next exchange, from either side, carries those
// refutations and each side sees the other alive again (EventJoin). While
// the cut lasts, an attempt costs one failed connection.

// maxReconnectsPerRound bounds the joins of one round (they run
// concurrently, each bounded by memberlist's TCPTimeout); the nodes tried
// least recently go first, so all are tried in turn.
const maxReconnectsPerRound = 4

// defaultReconnectTimeout is Config.ReconnectTimeout's default.
const defaultReconnectTimeout = 24 * time.Hour

// lostNode is a node that went dead (not left), for the reconnect loop.
type lostNode struct {
	addr  string
	since time.Time // when it was declared dead
}

// reconnector is the state of the reconnect loop.
type reconnector struct {
	interval time.Duration // <= 0: no loop
	timeout  time.Duration
	seeds    func() map[string]string
	done     chan struct{} // closed when the loop has returned

	// tried is when each address was last joined; only the loop touches
	// it.
	tried map[string]time.Time
}

// noteLostLocked records, under g.mu, that id went dead at addr.
func (g *Gossip) noteLostLocked(id, addr string) {
	if id == g.nodeID || addr == "" {
		return
	}
	g.lost[id] = lostNode{addr: addr, since: time.Now()}
}

// reconnectLoop runs reconnect rounds every interval (with up to 25 %
// jitter, so that both sides of a cut do not always collide) until
// Shutdown, or until Leave (a node that left must not join back).
func (g *Gossip) reconnectLoop() {
	defer close(g.reconnect.done)
	timer := time.NewTimer(jittered(g.reconnect.interval))
	defer timer.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-timer.C:
		}
		if g.usable() != nil {
			return
		}
		g.reconnectRound(time.Now())
		timer.Reset(jittered(g.reconnect.interval))
	}
}

func jittered(d time.Duration) time.Duration {
	return d + time.Duration(rand.Int64N(int64(d)/4+1))
}

// reconnectRound joins the nodes to reconnect to (see reconnectTargets)
// and waits for the attempts.
func (g *Gossip) reconnectRound(now time.Time) {
	targets := g.reconnectTargets(now)
	var wg sync.WaitGroup
	for id, addr := range targets {
		g.reconnect.tried[addr] = now
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := g.ml.Join([]string{addr})
			if n > 0 {
				g.logger.Info("reconnected to a node this one held dead", "node", id, "addr", addr)
				return
			}
			g.logger.Debug("reconnect attempt failed", "node", id, "addr", addr, "error", err)
		}()
	}
	wg.Wait()
}

// reconnectTargets returns, by node ID, the addresses to join this round:
// lost nodes still within ReconnectTimeout and seeds, minus those the view
// now holds alive or suspect, at most maxReconnectsPerRound, least
// recently tried first. It forgets lost nodes past the timeout.
func (g *Gossip) reconnectTargets(now time.Time) map[string]string {
	var seeds map[string]string
	if g.reconnect.seeds != nil {
		seeds = g.reconnect.seeds()
	}
	candidates := map[string]string{}
	g.mu.Lock()
	for id, l := range g.lost {
		if now.Sub(l.since) > g.reconnect.timeout {
			delete(g.lost, id)
			continue
		}
		candidates[id] = l.addr
	}
	for id, addr := range seeds {
		if _, ok := candidates[id]; !ok && id != g.nodeID && addr != "" {
			candidates[id] = addr
		}
	}
	for id := range candidates {
		if n, ok := g.view[id]; ok && (n.State == StateAlive || n.State == StateSuspect) {
			delete(candidates, id)
		}
	}
	g.mu.Unlock()

	ids := make([]string, 0, len(candidates))
	for id := range candidates {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		ti, tj := g.reconnect.tried[candidates[ids[i]]], g.reconnect.tried[candidates[ids[j]]]
		if !ti.Equal(tj) {
			return ti.Before(tj)
		}
		return ids[i] < ids[j]
	})
	if len(ids) > maxReconnectsPerRound {
		ids = ids[:maxReconnectsPerRound]
	}
	out := make(map[string]string, len(ids))
	for _, id := range ids {
		out[id] = candidates[id]
	}
	// Forget attempt times of addresses no longer wanted.
	wanted := map[string]bool{}
	for _, addr := range candidates {
		wanted[addr] = true
	}
	for addr := range g.reconnect.tried {
		if !wanted[addr] {
			delete(g.reconnect.tried, addr)
		}
	}
	return out
}
