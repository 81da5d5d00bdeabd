package agent

import (
	"hash/fnv"
	"slices"
	"sync"
	"time"

	"github.com/steward-dev/steward/raftctl"
)

// Which server relays this agent's lease renewals (raftctl/relay.go).
//
// An agent sends its renewals to one of the voters that do not lead,
// other than itself, always the same one while the voters stay the same
// (spread by a hash of its raft ID), and that voter hands them to the
// leader in batches: the leader of 50 agents then reads a few batches per
// renewal period instead of 49 requests. The voters renew through each
// other too: the leader then reads nothing but batches.
// A relay that fails a renewal (down, cut off from the leader, an older
// version that does not relay) is avoided for relayAvoid, and the renewal
// goes to the leader directly at once if the time allows.

// relayConfigEvery is how often the agent rereads raft's configuration to
// choose its relay: the voters change rarely (a failure, a promotion),
// and a relay that fails is avoided at once anyway.
const relayConfigEvery = 5 * time.Second

// relayAvoid is how long a relay that failed a renewal is not used.
const relayAvoid = 10 * time.Second

// leaseRelays remembers the configuration the relay is chosen from and
// the relays that failed recently.
type leaseRelays struct {
	mu      sync.Mutex
	servers []raftctl.Server
	readAt  time.Time
	avoid   map[string]time.Time // relay's raft ID → until when
}

// pick returns the relay for this agent (raft ID self) now, leader being
// the leader's raft ID; ok is false when it should renew directly.
// configuration reads raft's configuration when the remembered one is old.
func (r *leaseRelays) pick(self, leader string, now time.Time, configuration func() ([]raftctl.Server, error)) (raftctl.Server, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.readAt.IsZero() || now.Sub(r.readAt) >= relayConfigEvery {
		if servers, err := configuration(); err == nil {
			r.servers, r.readAt = servers, now
		}
	}
	return chooseRelay(self, leader, r.servers, func(id string) bool { return now.Before(r.avoid[id]) })
}

// failed records that relay id failed a renewal at now.
func (r *leaseRelays) failed(id string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.avoid == nil {
		r.avoid = map[string]time.Time{}
	}
	for k, until := range r.avoid {
		if !now.Before(until) {
			delete(r.avoid, k)
		}
	}
	r.avoid[id] = now.Add(relayAvoid)
}

// chooseRelay is the relay of agent self among servers: none for the
// leader or a server not in the configuration; otherwise one of the voters
// that is neither leader, self nor avoided, by a hash of self, so that the
// agents spread evenly over them and each keeps its relay.
func chooseRelay(self, leader string, servers []raftctl.Server, avoided func(id string) bool) (raftctl.Server, bool) {
	var candidates []raftctl.Server
	member := false
	for _, s := range servers {
		if s.ID == self {
			member = true
			continue
		}
		if s.Voter && s.ID != leader && s.Address != "" && !avoided(s.ID) {
			candidates = append(candidates, s)
		}
	}
	if !member || len(candidates) == 0 || leader == "" || self == leader {
		return raftctl.Server{}, false
	}
	slices.SortFunc(candidates, func(a, b raftctl.Server) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	h := fnv.New32a()
	h.Write([]byte(self))
	return candidates[h.Sum32()%uint32(len(candidates))], true
}
