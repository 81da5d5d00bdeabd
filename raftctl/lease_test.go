package raftctl

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestAFollowerRenewsItsLeaseWithTheLeadersGranter(t *testing.T) {
	leader, nodes := startCluster(t, nil, "l1", "l2", "l3")
	follower := followers(leader, nodes...)[0]
	_, addr := follower.Leader()

	if _, err := follower.RequestLease(ctxTimeout(t, 5*time.Second), addr, LeaseRequest{NodeID: "l2"}); !errors.Is(err, ErrNoLease) {
		t.Fatalf("lease from a leader without a granter: %v, want ErrNoLease", err)
	}

	var asked []string
	leader.SetLeaseGranter(func(req LeaseRequest) (LeaseGrant, error) {
		asked = append(asked, req.NodeID)
		if req.NodeID == "stranger" {
			return LeaseGrant{}, errors.New("not a member")
		}
		return LeaseGrant{Duration: 450 * time.Millisecond, Primaries: map[int]uint64{3: 7}, AppliedIndex: 9}, nil
	})
	g, err := follower.RequestLease(ctxTimeout(t, 5*time.Second), addr, LeaseRequest{NodeID: "l2"})
	if err != nil {
		t.Fatal(err)
	}
	if g.Duration != 450*time.Millisecond || g.Primaries[3] != 7 || g.AppliedIndex != 9 {
		t.Fatalf("grant %+v", g)
	}
	_, err = follower.RequestLease(ctxTimeout(t, 5*time.Second), addr, LeaseRequest{NodeID: "stranger"})
	if !errors.Is(err, ErrNoLease) || !strings.Contains(err.Error(), "not a member") {
		t.Fatalf("refused grant: %v, want ErrNoLease with the granter's reason", err)
	}
	if len(asked) != 2 {
		t.Fatalf("the granter was asked %v", asked)
	}

	// A follower grants nothing, even with a granter installed.
	follower.SetLeaseGranter(leader.leaseGranter)
	if _, err := leader.RequestLease(ctxTimeout(t, 5*time.Second), follower.Addr(), LeaseRequest{NodeID: "l1"}); !errors.Is(err, ErrNoLease) {
		t.Fatalf("lease from a follower: %v, want ErrNoLease", err)
	}
	if _, err := follower.GrantLocal(LeaseRequest{NodeID: "l2"}); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("local grant on a follower: %v, want ErrNotLeader", err)
	}
}

func TestMalformedLeaseRequestsAreRefusedWithAReason(t *testing.T) {
	leader, _ := startCluster(t, nil, "m1")
	leader.SetLeaseGranter(func(req LeaseRequest) (LeaseGrant, error) {
		t.Errorf("granter called for a malformed request %+v", req)
		return LeaseGrant{}, nil
	})
	// The lease connection stays open for the next renewal: one answer
	// frame is read, not everything until the server closes.
	for _, body := range []string{`not json`, `{}`, `{"node_id":""}`} {
		payload := forwardRequest([]byte(body))
		payload[0] = kindLease
		conn := authedConn(t, leader.Addr(), testSecret)
		if _, err := conn.Write(payload); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		frame, err := readFrame(conn, maxLeaseAnswer)
		if err != nil || len(frame) == 0 {
			t.Fatalf("request %q: no answer frame (%v)", body, err)
		}
		if status, answer := frame[0], frame[1:]; status != statusOK || !strings.Contains(string(answer), "node_id") {
			t.Errorf("request %q answered %q, want a refusal naming node_id", body, answer)
		}
	}
	if _, err := leader.ConfirmLeadership(leader.Term(), 0, 2*time.Second); err != nil {
		t.Fatalf("ConfirmLeadership on a single-node leader: %v", err)
	}
}

// An agent renews its lease several times a second: its renewals share one
// connection to the leader, which serves them one after another; a
// connection the leader dropped (here after its idle timeout) is replaced
// on the next renewal, and a client that sends one request and closes
// still gets its answer.
func TestLeaseRenewalsShareOneConnectionToTheLeader(t *testing.T) {
	leader, nodes := startCluster(t, nil, "r1", "r2")
	follower := followers(leader, nodes...)[0]
	_, addr := follower.Leader()
	grants := 0
	leader.SetLeaseGranter(func(req LeaseRequest) (LeaseGrant, error) {
		grants++
		return LeaseGrant{Duration: time.Second, AppliedIndex: uint64(grants)}, nil
	})
	liveConns := func() int {
		leader.controlMu.Lock()
		defer leader.controlMu.Unlock()
		return len(leader.controlConns)
	}
	renew := func() LeaseGrant {
		t.Helper()
		g, err := follower.RequestLease(ctxTimeout(t, 5*time.Second), addr, LeaseRequest{NodeID: "r2"})
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	for i := 1; i <= 5; i++ {
		if g := renew(); g.AppliedIndex != uint64(i) {
			t.Fatalf("renewal %d got the answer of grant %d", i, g.AppliedIndex)
		}
	}
	if n := liveConns(); n != 1 {
		t.Fatalf("after 5 renewals the leader holds %d lease connections, want 1", n)
	}

	// The leader drops the connection (as after TransportTimeout of
	// silence): the next renewal opens another.
	leader.controlMu.Lock()
	for c := range leader.controlConns {
		c.Close()
	}
	leader.controlMu.Unlock()
	eventually(t, 5*time.Second, "the leader's handler to end", func() bool { return liveConns() == 0 })
	if g := renew(); g.AppliedIndex != 6 {
		t.Fatalf("the renewal after a dropped connection got grant %d, want 6", g.AppliedIndex)
	}

	// One request per connection, as agents before the reuse sent them.
	body := []byte(`{"node_id":"r2"}`)
	answer, err := follower.exchange(ctxTimeout(t, 5*time.Second), addr, kindLease, body, time.Second)
	if err != nil || !strings.Contains(string(answer), `"applied_index":7`) {
		t.Fatalf("a one-shot lease exchange: %s, %v", answer, err)
	}
}
