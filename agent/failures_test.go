package agent

import (
	"reflect"
	"testing"
	"time"

	"github.com/steward-dev/steward/failover"
)

// raftCluster is a state whose members are raft servers named "<id>-r".
func raftCluster(statuses map[string]failover.MemberStatus) (*failover.Cluster, map[string]bool) {
	c := &failover.Cluster{Bootstrapped: true, Members: map[string]failover.Member{}}
	inConfig := map[string]bool{}
	for id, st := range statuses {
		c.Members[id] = failover.Member{ID: id, RaftID: id + "-r", Status: st}
		inConfig[id+"-r"] = true
	}
	return c, inConfig
}

func TestDeadVotersLeaveRaftWithinTheQuorumRuleEvenWhenFrozen(t *testing.T) {
	const alive, failed = failover.StatusAlive, failover.StatusFailed
	tests := []struct {
		name           string
		statuses       map[string]failover.MemberStatus
		voters         []string
		frozen         bool
		self           string
		inStatus       map[string]time.Duration
		detectorFailed map[string]time.Duration
		want           []string
	}{
		{
			name:     "a failed voter and a failed non-voter",
			statuses: map[string]failover.MemberStatus{"a": alive, "b": alive, "c": failed, "d": alive, "e": alive, "f": failed},
			voters:   []string{"a-r", "b-r", "c-r", "d-r", "e-r"},
			want:     []string{"c-r", "f-r"},
		},
		{
			name:     "frozen: the dead voter still goes, and the dead non-voter too (the quorum does not depend on it)",
			statuses: map[string]failover.MemberStatus{"a": alive, "b": alive, "c": failed, "d": alive, "e": alive, "f": failed},
			voters:   []string{"a-r", "b-r", "c-r", "d-r", "e-r"},
			frozen:   true,
			want:     []string{"c-r", "f-r"},
		},
		{
			name: "frozen before marking: voters the detector holds failed go, two of five at most, oldest first; a non-voter it holds failed goes",
			statuses: map[string]failover.MemberStatus{
				"a": alive, "b": alive, "c": alive, "d": alive, "e": alive, "f": alive,
			},
			voters:         []string{"a-r", "b-r", "c-r", "d-r", "e-r"},
			frozen:         true,
			detectorFailed: map[string]time.Duration{"c": 3 * time.Second, "d": 9 * time.Second, "e": 5 * time.Second, "f": time.Minute},
			want:           []string{"d-r", "e-r", "f-r"},
		},
		{
			name:     "two dead of three voters: one at a time (a quorum of the old three remains)",
			statuses: map[string]failover.MemberStatus{"a": alive, "b": failed, "c": failed, "d": alive},
			voters:   []string{"a-r", "b-r", "c-r"},
			inStatus: map[string]time.Duration{"b": time.Minute, "c": time.Hour},
			want:     []string{"c-r"},
		},
		{
			name:           "this agent and departed members are not removed here",
			statuses:       map[string]failover.MemberStatus{"a": failed, "b": failover.StatusLeft, "c": alive},
			voters:         []string{"a-r", "b-r", "c-r"},
			self:           "a-r",
			detectorFailed: map[string]time.Duration{"b": time.Minute},
			want:           []string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state, inConfig := raftCluster(tt.statuses)
			got := deadServersToRemove(state, tt.voters, inConfig, tt.frozen, tt.self, tt.inStatus, tt.detectorFailed)
			if got == nil {
				got = []string{}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("removed %v, want %v", got, tt.want)
			}
		})
	}
}
