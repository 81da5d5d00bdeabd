package control

import (
	"sort"
	"time"

	"github.com/steward-dev/steward/failover"
)

// Desired size (-desired-nodes, -provision-url): when fewer members than
// desired are in service for a grace period, the leader asks a provisioner
// for hosts, and keeps asking, less and less often, until they join. The
// decision (how many, which zones) and the schedule (when to ask) are here,
// pure; the agent does the asking (signed HTTP POST) from a loop it owns.

// ClusterSize is desired versus alive: cluster.size of GET /v1/status.
type ClusterSize struct {
	// Desired is -desired-nodes (0: no desired size).
	Desired int `json:"desired"`
	// Alive counts the members in service: alive or suspect, and planned
	// restarts (they come back by themselves); failed, leaving and left
	// members are not.
	Alive int `json:"alive"`
	// Missing is Desired minus Alive, at least 0.
	Missing int `json:"missing"`
	// Zones are the hosts to ask for per zone (see SizeOf).
	Zones map[string]int `json:"zones,omitempty"`
}

// inService reports whether a member counts towards the desired size.
func inService(m failover.Member) bool {
	switch m.Status {
	case failover.StatusFailed, failover.StatusLeaving, failover.StatusLeft:
		return false
	}
	return true
}

// SizeOf compares the members of c in service with desired, and says in
// which zones the missing hosts belong: first the zones of the members
// that are out of service (they are what is missing), then the zones with
// the fewest members in service, so that the zones stay even. Without
// zones (every member's zone empty) Zones is nil.
func SizeOf(c *failover.Cluster, desired int) ClusterSize {
	size := ClusterSize{Desired: desired}
	inZone := map[string]int{}
	var gone []string
	zoned := false
	for _, id := range c.MemberIDs() {
		m := c.Members[id]
		zoned = zoned || m.Zone != ""
		if _, ok := inZone[m.Zone]; !ok {
			inZone[m.Zone] = 0
		}
		if inService(m) {
			size.Alive++
			inZone[m.Zone]++
		} else if !m.Forget && m.ReplacedBy == "" {
			gone = append(gone, m.Zone)
		}
	}
	if desired <= size.Alive {
		return size
	}
	size.Missing = desired - size.Alive
	if !zoned {
		return size
	}
	size.Zones = map[string]int{}
	left := size.Missing
	for _, z := range gone {
		if left == 0 {
			break
		}
		size.Zones[z]++
		inZone[z]++
		left--
	}
	zones := make([]string, 0, len(inZone))
	for z := range inZone {
		if z != "" {
			zones = append(zones, z)
		}
	}
	sort.Strings(zones)
	for ; left > 0 && len(zones) > 0; left-- {
		best := zones[0]
		for _, z := range zones[1:] {
			if inZone[z] < inZone[best] {
				best = z
			}
		}
		size.Zones[best]++
		inZone[best]++
	}
	return size
}

// ProvisionSchedule decides when the leader asks the provisioner: once the
// cluster has been short for Grace, then again after Backoff, doubled after
// every request up to MaxBackoff, until it is not short any more. Times are
// readings of a monotonic clock (Clock.Elapsed).
type ProvisionSchedule struct {
	Grace      time.Duration
	Backoff    time.Duration
	MaxBackoff time.Duration

	short      bool
	shortSince time.Duration
	next       time.Duration
	attempts   int
}

// Observe records whether the cluster is short at now and reports whether
// to ask the provisioner now; when it does, the attempt number (from 1) is
// returned and the next request is scheduled.
func (s *ProvisionSchedule) Observe(short bool, now time.Duration) (ask bool, attempt int) {
	if !short {
		s.short, s.attempts = false, 0
		return false, 0
	}
	if !s.short {
		s.short, s.shortSince, s.attempts = true, now, 0
		s.next = now + s.Grace
	}
	if now < s.next {
		return false, 0
	}
	s.attempts++
	wait := s.Backoff
	for i := 1; i < s.attempts && (s.MaxBackoff <= 0 || wait < s.MaxBackoff); i++ {
		wait *= 2
	}
	if s.MaxBackoff > 0 && wait > s.MaxBackoff {
		wait = s.MaxBackoff
	}
	s.next = now + wait
	return true, s.attempts
}

// Attempts is how many requests this shortage has made so far.
func (s *ProvisionSchedule) Attempts() int { return s.attempts }
