package control

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/steward-dev/steward/failover"
)

func TestMembersToForget(t *testing.T) {
	const reapAfter = 72 * time.Hour
	members := map[string]failover.Member{
		"alive":        {ID: "alive", Status: failover.StatusAlive},
		"self":         {ID: "self", Status: failover.StatusFailed},
		"failed-old":   {ID: "failed-old", Status: failover.StatusFailed},
		"failed-new":   {ID: "failed-new", Status: failover.StatusFailed},
		"left-old":     {ID: "left-old", Status: failover.StatusLeft},
		"leaving-old":  {ID: "leaving-old", Status: failover.StatusLeaving},
		"forget-done":  {ID: "forget-done", Status: failover.StatusLeft, Forget: true},
		"forget-busy":  {ID: "forget-busy", Status: failover.StatusLeft, Forget: true},
		"failed-never": {ID: "failed-never", Status: failover.StatusFailed}, // not yet seen by this leader
	}
	inStatus := map[string]time.Duration{
		"alive": 100 * time.Hour, "self": 100 * time.Hour, "failed-old": reapAfter, "failed-new": reapAfter - time.Second,
		"left-old": 80 * time.Hour, "leaving-old": 100 * time.Hour, "forget-done": time.Second, "forget-busy": 100 * time.Hour,
	}
	involved := map[string]bool{"forget-busy": true, "failed-old": true}

	state := &failover.Cluster{Bootstrapped: true, Members: members}
	got := membersToForget(state, inStatus, involved, reapAfter, "self")
	var ids []string
	for _, f := range got {
		ids = append(ids, f.node)
		if f.node == "failed-old" && !strings.Contains(f.why, "failed for 72h0m0s, longer than -reap-after 72h0m0s") {
			t.Errorf("reason for failed-old: %q", f.why)
		}
	}
	// failed-old still holds copies: forgetting it marks it left and has
	// them re-created; forget-busy waits for that.
	if want := []string{"failed-old", "forget-done", "left-old"}; !reflect.DeepEqual(ids, want) {
		t.Fatalf("forgotten %v, want %v", ids, want)
	}

	state.Maintenance = true
	got = membersToForget(state, inStatus, involved, reapAfter, "self")
	if len(got) != 1 || got[0].node != "forget-done" {
		t.Fatalf("in maintenance mode: %v, want only what an operator forgot (forget-done)", got)
	}
}
