package localcluster

import (
	"fmt"
	"reflect"
)

// The conditions below are what a caller polls (with Poll or Eventually)
// until a cluster is ready: each returns nil once it holds, or an error
// saying what is still missing.

// SameTableAndLeader holds when every agent names the same leader and
// serves the same, non-empty partition table, which it returns.
func SameTableAndLeader(agents []*Agent) (PartitionTable, error) {
	var leader string
	var table PartitionTable
	for i, a := range agents {
		st, err := a.Status()
		if err != nil {
			return table, err
		}
		if st.LeaderID == "" {
			return table, fmt.Errorf("%s knows no leader", a.ID)
		}
		pt, err := a.Partitions()
		if err != nil {
			return table, err
		}
		if len(pt.Partitions) == 0 {
			return table, fmt.Errorf("%s serves no partitions", a.ID)
		}
		if i == 0 {
			leader, table = st.LeaderID, pt
			continue
		}
		if st.LeaderID != leader {
			return table, fmt.Errorf("%s says leader %s, %s says %s", agents[0].ID, leader, a.ID, st.LeaderID)
		}
		if !reflect.DeepEqual(pt.Partitions, table.Partitions) {
			return table, fmt.Errorf("%s's table differs from %s's", a.ID, agents[0].ID)
		}
	}
	return table, nil
}

// Settled returns the leader once every agent lists every other as
// registered and alive (cluster status and gossip state), the raft
// configuration has wantVoters voters, each named by its node ID (so
// registered too), and all agree on a leader. A kill before registration
// would act on a cluster still forming.
func Settled(agents []*Agent, wantVoters int) (*Agent, error) {
	leaderID := ""
	for _, a := range agents {
		ms, err := a.MembersByID()
		if err != nil {
			return nil, err
		}
		for _, o := range agents {
			m, ok := ms[o.ID]
			if !ok || !m.Registered || m.Status != "alive" || m.GossipState != "alive" {
				return nil, fmt.Errorf("%s sees %s as %+v", a.ID, o.ID, m)
			}
		}
		st, err := a.Status()
		if err != nil {
			return nil, err
		}
		if st.LeaderID == "" || (leaderID != "" && st.LeaderID != leaderID) {
			return nil, fmt.Errorf("%s names leader %q, others %q", a.ID, st.LeaderID, leaderID)
		}
		leaderID = st.LeaderID
	}
	servers, err := agents[0].RaftServers()
	if err != nil {
		return nil, err
	}
	voters := 0
	for _, s := range servers {
		if s.NodeID == "" {
			return nil, fmt.Errorf("raft server %s has no registered member", s.RaftID)
		}
		if s.Voter {
			voters++
		}
	}
	if voters != wantVoters {
		return nil, fmt.Errorf("%d voters, want %d: %+v", voters, wantVoters, servers)
	}
	for _, a := range agents {
		if a.ID == leaderID {
			return a, nil
		}
	}
	return nil, fmt.Errorf("leader %q is none of the agents", leaderID)
}

// TableSettled holds when every partition of the first agent's table has
// a primary and rf copies with no migration in flight, and no agent has a
// webhook its app has not acknowledged.
func TableSettled(agents []*Agent, rf int) error {
	pt, err := agents[0].Partitions()
	if err != nil {
		return err
	}
	for _, p := range pt.Partitions {
		if p.Primary == "" || 1+len(p.Replicas) != rf || len(p.Migrations) != 0 {
			return fmt.Errorf("partition %d: primary %q replicas %v migrations %d", p.ID, p.Primary, p.Replicas, len(p.Migrations))
		}
	}
	return AllDelivered(agents)
}

// AllDelivered is nil once every agent's app has acknowledged every
// webhook it was sent.
func AllDelivered(agents []*Agent) error {
	for _, a := range agents {
		st, err := a.Status()
		if err != nil {
			return err
		}
		if st.Undelivered != 0 {
			return fmt.Errorf("%s has %d undelivered events", a.ID, st.Undelivered)
		}
	}
	return nil
}
