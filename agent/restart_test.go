package agent

import "testing"

// A node back from a planned restart announces its return, and its app as
// not ready until the app has acknowledged node.rejoin: the leader records
// both from one gossip update, so that the planner hands no primary back
// to a copy that has not caught up.
func TestABackNodeAnnouncesItsAppNotReadyUntilTheRejoinIsAcknowledged(t *testing.T) {
	steps := []struct {
		name                  string
		view                  returnView
		returning, catchingUp bool
	}{
		{"in service", returnView{hasApp: true, incarnation: 1, told: 1}, false, false},
		{"going away", returnView{awayInState: true, goingAway: true, hasApp: true, incarnation: 1, told: 1}, false, false},
		{"the new process, still marked restarting", returnView{awayInState: true, hasApp: true, incarnation: 1, told: 1}, true, true},
		{"taken back, the webhooks have not seen the new incarnation", returnView{hasApp: true, incarnation: 2, told: 1, catchingUp: true}, false, true},
		{"node.rejoin sent, not acknowledged", returnView{hasApp: true, incarnation: 2, told: 2, rejoinPending: true, catchingUp: true}, false, true},
		{"node.rejoin acknowledged", returnView{hasApp: true, incarnation: 2, told: 2, catchingUp: true}, false, false},
		{"no app to catch up", returnView{awayInState: true, incarnation: 1, told: 1}, true, false},
		{"a rejoin after a failure, not acknowledged", returnView{hasApp: true, incarnation: 3, told: 3, rejoinPending: true}, false, true},
		{"that rejoin acknowledged", returnView{hasApp: true, incarnation: 3, told: 3, catchingUp: true}, false, false},
	}
	for _, s := range steps {
		returning, catchingUp := returnAnnouncement(s.view)
		if returning != s.returning || catchingUp != s.catchingUp {
			t.Errorf("%s: returning %v, catching up %v; want %v, %v", s.name, returning, catchingUp, s.returning, s.catchingUp)
		}
	}
}
