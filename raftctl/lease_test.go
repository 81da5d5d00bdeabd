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
	for _, body := range []string{`not json`, `{}`, `{"node_id":""}`} {
		payload := forwardRequest([]byte(body))
		payload[0] = kindLease
		status, answer := decodeAnswer(t, exchangeOn(t, authedConn(t, leader.Addr(), testSecret), payload, 2*time.Second))
		if status != statusOK || !strings.Contains(string(answer), "node_id") {
			t.Errorf("request %q answered %q, want a refusal naming node_id", body, answer)
		}
	}
	if err := leader.VerifyLeader(2 * time.Second); err != nil {
		t.Fatalf("VerifyLeader on a single-node leader: %v", err)
	}
}
