package raftctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Lease renewals relayed in batches.
//
// Every agent renews its lease three times a lease, and at 50 agents the
// leader's answers to those renewals, and the thread wake-ups of their
// messages, were the largest part of its idle CPU. So a server that does
// not lead accepts lease requests too (LeaseRelay): it gathers those that
// arrive within LeaseRelay.Wait and sends them to the leader as one batch
// (kind 0xF5), then hands each agent its own answer. The leader grants each
// request of a batch exactly as if it had come alone (GrantLocal), so the
// ledger and the safety argument (control/lease.go) do not change: an
// agent counts its lease from the moment its own request left, and the
// relay's wait and hop only make the grant arrive later, never last
// longer.
//
// Which agents send through which server is the agent's choice
// (agent/leaserelay.go). A relay that cannot reach the leader, or whose
// leader does not know this kind (an older version during an upgrade),
// answers every request of the batch with a refusal, and the agent asks
// the leader directly. The leader's own refusals (no leadership confirmed
// yet, after an election) are passed on marked LeaderRefused: asking the
// leader directly would get the same answer.
//
//	relay → leader: request: [LeaseRequest...] JSON
//	                answer:  [leaseResponse...] JSON, in the same order
const kindLeaseBatch byte = 0xF5

// LeaseRelay configures the relaying of lease requests on a server that
// does not lead.
type LeaseRelay struct {
	// Wait is how long the first request of a batch waits for others
	// before the batch leaves. 0: this server relays nothing (it refuses
	// lease requests unless it leads, as before relaying existed).
	Wait time.Duration
	// Timeout bounds a batch's exchange with the leader.
	Timeout time.Duration
}

// maxRelayBatch bounds the requests of one batch; a relay with more
// pending sends several batches.
const maxRelayBatch = 64

// maxRelayQueue bounds the requests waiting at a relay; one more is
// refused (the agent then asks the leader directly).
const maxRelayQueue = 4 * maxRelayBatch

// relayedLease is a request waiting at the relay, and where its answer
// goes (buffered 1: the relay never blocks on it).
type relayedLease struct {
	req    LeaseRequest
	answer chan leaseResponse
}

// relayLoop gathers the lease requests handed to the relay and sends
// them to the leader in batches. It is owned by the Node (loops) and
// stops on Shutdown, refusing what is still waiting.
func (n *Node) relayLoop() {
	var pending []relayedLease
	var due <-chan time.Time
	for {
		select {
		case r := <-n.relayIn:
			pending = append(pending, r)
			if due == nil {
				due = time.After(n.cfg.LeaseRelay.Wait)
			}
		case <-due:
			due = nil
			for len(pending) > 0 {
				k := min(len(pending), maxRelayBatch)
				n.sendRelayed(pending[:k])
				pending = pending[k:]
			}
			pending = nil
		case <-n.shutdownCh:
			for _, r := range pending {
				r.answer <- leaseResponse{Error: ErrShutdown.Error()}
			}
			return
		}
	}
}

// sendRelayed asks the leader to grant batch, and answers each request.
func (n *Node) sendRelayed(batch []relayedLease) {
	answers, err := n.grantBatch(batch)
	for i, r := range batch {
		switch {
		case err != nil:
			r.answer <- leaseResponse{Error: fmt.Sprintf("relayed by %s: %v", n.cfg.ServerID, err)}
		default:
			r.answer <- answers[i]
		}
	}
}

// grantBatch is the batch's exchange with the leader (or this server's own
// granter, if it has become the leader meanwhile).
func (n *Node) grantBatch(batch []relayedLease) ([]leaseResponse, error) {
	reqs := make([]LeaseRequest, len(batch))
	for i, r := range batch {
		reqs[i] = r.req
	}
	if n.IsLeader() {
		return n.grantEach(reqs), nil
	}
	_, addr := n.Leader()
	if addr == "" {
		return nil, errors.New("no known leader")
	}
	body, err := json.Marshal(reqs)
	if err != nil {
		return nil, err
	}
	// Bounded by Timeout alone: Shutdown waits for the relay loop, then
	// closes relayConn.
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.LeaseRelay.Timeout)
	defer cancel()
	raw, err := n.relayConn.exchange(ctx, n, kindLeaseBatch, addr, body)
	if err != nil {
		return nil, fmt.Errorf("batch to the leader at %s: %w", addr, err)
	}
	var answers []leaseResponse
	if err := json.Unmarshal(raw, &answers); err != nil {
		return nil, fmt.Errorf("batch to the leader at %s: bad answer: %w", addr, err)
	}
	if len(answers) != len(reqs) {
		return nil, fmt.Errorf("batch to the leader at %s: %d answers to %d requests", addr, len(answers), len(reqs))
	}
	return answers, nil
}

// grantEach asks this server's granter for each request, as serveLease
// does for one.
func (n *Node) grantEach(reqs []LeaseRequest) []leaseResponse {
	out := make([]leaseResponse, len(reqs))
	for i, req := range reqs {
		if req.NodeID == "" {
			out[i].Error = "lease request without a node_id"
			continue
		}
		out[i] = n.grantResponse(req)
	}
	return out
}

// relay hands req to the relay loop and waits for its answer: the
// answer to a lease request that reached a server that relays and does
// not lead.
func (n *Node) relay(req LeaseRequest) leaseResponse {
	r := relayedLease{req: req, answer: make(chan leaseResponse, 1)}
	select {
	case n.relayIn <- r:
		n.relayed.Add(1)
	default:
		return leaseResponse{Error: fmt.Sprintf("%s: the relay at %s has %d requests waiting", ErrNoLease, n.cfg.ServerID, maxRelayQueue)}
	}
	select {
	case resp := <-r.answer:
		return resp
	case <-n.shutdownCh:
		return leaseResponse{Error: ErrShutdown.Error()}
	}
}

// serveLeaseBatch answers a relay's batch on the leader.
func (n *Node) serveLeaseBatch(remote string, data []byte) ([]byte, error) {
	n.batchesServed.Add(1)
	var reqs []LeaseRequest
	if err := json.Unmarshal(data, &reqs); err != nil || len(reqs) > maxRelayBatch {
		return nil, fmt.Errorf("a lease batch must be a list of at most %d lease requests", maxRelayBatch)
	}
	body, err := json.Marshal(n.grantEach(reqs))
	if err != nil {
		n.logger.Error("cannot encode a lease batch answer", "remote", remote, "error", err)
		return nil, fmt.Errorf("cannot encode the answer: %w", err)
	}
	return body, nil
}

// RelayedLeases is how many lease requests this server relayed to the
// leader.
func (n *Node) RelayedLeases() uint64 { return n.relayed.Load() }
