package raftctl

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// startRelayCluster is startCluster with every server relaying lease
// requests, gathered for wait.
func startRelayCluster(t *testing.T, wait time.Duration, ids ...string) (*Node, []*Node) {
	t.Helper()
	return startClusterWith(t, func(cfg *Config) { cfg.LeaseRelay = LeaseRelay{Wait: wait, Timeout: time.Second} }, ids...)
}

func TestAFollowerRelaysLeaseRequestsToTheLeaderInBatches(t *testing.T) {
	leader, nodes := startRelayCluster(t, 50*time.Millisecond, "r1", "r2", "r3")
	relay := followers(leader, nodes...)[0]
	asker := followers(leader, nodes...)[1]

	if _, err := asker.RequestLease(ctxTimeout(t, 5*time.Second), relay.Addr(), LeaseRequest{NodeID: "a"}); !errors.Is(err, ErrNoLease) || !strings.Contains(err.Error(), "grants no leases") {
		t.Fatalf("relayed to a leader without a granter: %v, want the leader's refusal", err)
	}

	var mu sync.Mutex
	granted := map[string]int{}
	leader.SetLeaseGranter(func(req LeaseRequest) (LeaseGrant, error) {
		mu.Lock()
		granted[req.NodeID]++
		mu.Unlock()
		if req.NodeID == "stranger" {
			return LeaseGrant{}, errors.New("not a member")
		}
		return LeaseGrant{Duration: 450 * time.Millisecond, Primaries: map[int]uint64{len(req.NodeID): 7}}, nil
	})

	// Twenty agents renew at once through the relay: each gets its own
	// grant, and the leader reads a few batches, not twenty requests.
	// Each agent keeps its own connection to the relay, opened (and
	// authenticated) by a first renewal, so that the twenty renewals that
	// count leave together.
	const agents = 20
	conns := make([]keptConn, agents)
	renew := func(i int) error {
		id := strings.Repeat("x", i+1)
		answer, err := conns[i].exchange(ctxTimeout(t, 5*time.Second), asker, kindLease, relay.Addr(), []byte(fmt.Sprintf(`{"node_id":%q}`, id)))
		if err != nil {
			return err
		}
		if !strings.Contains(string(answer), fmt.Sprintf(`"%d":7`, i+1)) {
			return fmt.Errorf("agent %s got %s, not its own grant", id, answer)
		}
		return nil
	}
	for i := range agents {
		defer conns[i].close()
		if err := renew(i); err != nil {
			t.Fatal(err)
		}
	}
	before := leader.batchesServed.Load()
	var wg sync.WaitGroup
	errs := make([]error, agents)
	for i := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = renew(i)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if batches := leader.batchesServed.Load() - before; batches == 0 || batches > agents/2 {
		t.Fatalf("the leader served %d batches for %d renewals sent together", batches, agents)
	}

	// The granter's refusal reaches the agent with its reason.
	_, err := asker.RequestLease(ctxTimeout(t, 5*time.Second), relay.Addr(), LeaseRequest{NodeID: "stranger"})
	if !errors.Is(err, ErrLeaderRefused) || !strings.Contains(err.Error(), "not a member") {
		t.Fatalf("refused relayed grant: %v, want ErrLeaderRefused with the granter's reason", err)
	}

	// The leader itself answers a lease request as before.
	if _, err := asker.RequestLease(ctxTimeout(t, 5*time.Second), leader.Addr(), LeaseRequest{NodeID: "direct"}); err != nil {
		t.Fatalf("direct request to the leader: %v", err)
	}
}

func TestARelayCutOffFromTheLeaderRefusesWithinItsTimeout(t *testing.T) {
	leader, nodes := startRelayCluster(t, 20*time.Millisecond, "c1", "c2", "c3")
	leader.SetLeaseGranter(func(req LeaseRequest) (LeaseGrant, error) {
		return LeaseGrant{Duration: time.Second}, nil
	})
	relay := followers(leader, nodes...)[0]
	asker := followers(leader, nodes...)[1]
	if _, err := asker.RequestLease(ctxTimeout(t, 5*time.Second), relay.Addr(), LeaseRequest{NodeID: "a"}); err != nil {
		t.Fatalf("relayed renewal: %v", err)
	}
	// The leader goes away; the relay still names it for a while.
	if err := leader.Shutdown(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := asker.RequestLease(ctxTimeout(t, 5*time.Second), relay.Addr(), LeaseRequest{NodeID: "a"})
	if !errors.Is(err, ErrNoLease) || errors.Is(err, ErrLeaderRefused) {
		t.Fatalf("a relay without a leader answered %v, want ErrNoLease, not ErrLeaderRefused", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("the relay took %s to refuse (its Timeout is 1 s)", took)
	}
}

func TestAServerThatDoesNotRelayRefusesLeaseRequests(t *testing.T) {
	leader, nodes := startCluster(t, nil, "n1", "n2")
	leader.SetLeaseGranter(func(req LeaseRequest) (LeaseGrant, error) { return LeaseGrant{Duration: time.Second}, nil })
	follower := followers(leader, nodes...)[0]
	_, err := leader.RequestLease(ctxTimeout(t, 5*time.Second), follower.Addr(), LeaseRequest{NodeID: "n1"})
	if !errors.Is(err, ErrNoLease) || !strings.Contains(err.Error(), "not leader") {
		t.Fatalf("lease from a follower that does not relay: %v, want ErrNoLease naming the leader", err)
	}
}
