package control

import (
	"sort"
	"time"
)

// The voter arithmetic of the whole agent is in this file: the quorum of a
// configuration, how many voters may go at once, how many there should be
// (PlanVoters), which dead ones go first (RemovableVoters). The reconcile
// steps (raftconfig.go, promotion.go) and the leave's safety check
// (leave.go) call it.

// Quorum is the number of voters of a configuration of voters voters that
// must agree for raft to commit or elect: a majority.
func Quorum(voters int) int {
	if voters < 1 {
		return 0
	}
	return voters/2 + 1
}

// MaxRemovableVoters is how many failed voters may be removed from a raft
// configuration of voters voters in one go: (voters-1)/2, raft-autopilot's
// rule, which is what is left once a quorum stays. It never removes a
// majority at once: if the failure view is wrong (a partition seen from
// one side), the nodes removed by mistake are still a minority of the old
// configuration and cannot have formed a quorum of their own.
func MaxRemovableVoters(voters int) int {
	if voters < 1 {
		return 0
	}
	return voters - Quorum(voters)
}

// targetVoters is how many voters a cluster with inService servers in
// service should have for a configured target: the largest odd number not
// above inService, at most target, and at least 1. With four members in
// service, three voters tolerate one failure just as four would, and a
// smaller quorum is faster.
func targetVoters(target, inService int) int {
	effective := inService
	if effective%2 == 0 {
		effective--
	}
	if target < effective {
		effective = target
	}
	if effective < 1 {
		effective = 1
	}
	return effective
}

// ServerHealth is what the leader knows about one server of the raft
// configuration when it plans voters. Gathering it is reconcileVoters' job
// (I/O); PlanVoters only computes (pure), as raft-autopilot splits them.
type ServerHealth struct {
	// ID is the raft server ID.
	ID string
	// Voter is the server's current suffrage.
	Voter bool
	// Leader marks the current leader, which is never demoted (it must
	// transfer leadership first).
	Leader bool
	// InService: the server is the current raft ID of a member that the
	// cluster state holds in service (alive or suspect: neither failed,
	// leaving nor left). Only a committed change of membership changes it,
	// never a momentary view of gossip, so the voter target does not move
	// on mere suspicion.
	InService bool
	// Healthy: the server is alive as far as gossip and health probes tell
	// right now. It decides who may be promoted and who is demoted first,
	// never how many voters there should be.
	Healthy bool
	// Restarting: the server is the raft ID of a member away for a planned
	// restart. It is demoted (unless it leads: it hands leadership over
	// first) and promoted by no one, but counts as in service for the
	// target: it is coming back, and the target must not fall meanwhile.
	Restarting bool
	// CaughtUp: the server has applied (nearly) everything the leader has.
	// Raft's public API does not expose the leader's per-follower match
	// index, so the agent decides it from what each server reports about
	// itself: its Stats().AppliedIndex (served as applied_index by its
	// /v1/status) against the leader's, e.g. with IsCaughtUp.
	CaughtUp bool
	// StableFor is how long the server has been Healthy without interruption
	// (0 if it is not healthy now).
	StableFor time.Duration
}

// IsCaughtUp reports whether a server whose FSM has applied serverApplied is
// within maxLag entries of the leader's leaderApplied.
func IsCaughtUp(leaderApplied, serverApplied, maxLag uint64) bool {
	return serverApplied >= leaderApplied || leaderApplied-serverApplied <= maxLag
}

// PlanVoters decides which servers to promote to voter and which to demote,
// for one round of voter management:
//
//   - The effective target is min(target, the largest odd number not above
//     the number of servers in service), and at least 1: with four members
//     in service, three voters tolerate one failure just as four would, and
//     a smaller quorum is faster. Servers in service, not healthy ones:
//     a voter that gossip merely suspects (a pause, a short cut, a lost
//     packet) keeps the target where it is, so suspicion never demotes
//     anyone; the target drops only once the cluster state says a member
//     failed or left, and rises again when it is back (a rejoin after a
//     heal).
//   - A voter away for a planned restart is demoted first (not the
//     leader), and counts as in service, not as a voter: so a replacement
//     is promoted in the same round if one qualifies, and the target does
//     not drop while it is away.
//   - While the voters are fewer than that, healthy, caught-up non-voters
//     that have been stable for at least stabilization are promoted, in
//     order of ID.
//   - While the voters are more than that, voters are demoted: those out
//     of service first, then unhealthy ones, then those not caught up, then
//     the rest, each group in order of ID; the leader never. Nothing is
//     demoted below the effective target.
//
// Every voter counts towards the target, healthy or not: a failed voter is
// taken out of the configuration by the leader (Remove), after which the
// next round promotes its replacement. This keeps the voter count odd in
// between rather than adding a voter beside a dead one.
//
// Callers should pass an odd target (the -voters flag is odd); an even one is
// used as given when enough servers are healthy.
func PlanVoters(servers []ServerHealth, target int, stabilization time.Duration) (promote, demote []string) {
	inService := 0
	voters := 0
	sorted := append([]ServerHealth(nil), servers...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].ID < sorted[j].ID })
	for _, s := range sorted {
		if s.InService || s.Restarting {
			inService++
		}
		switch {
		case s.Voter && s.Restarting && !s.Leader:
			demote = append(demote, s.ID)
		case s.Voter:
			voters++
		}
	}
	effective := targetVoters(target, inService)

	if voters < effective {
		for _, s := range sorted {
			if voters >= effective {
				break
			}
			if !s.Voter && !s.Restarting && s.Healthy && s.CaughtUp && s.StableFor >= stabilization {
				promote = append(promote, s.ID)
				voters++
			}
		}
		return promote, demote
	}

	if voters > effective {
		rank := func(s ServerHealth) int {
			switch {
			case !s.InService:
				return 0
			case !s.Healthy:
				return 1
			case !s.CaughtUp:
				return 2
			default:
				return 3
			}
		}
		sort.SliceStable(sorted, func(i, j int) bool { return rank(sorted[i]) < rank(sorted[j]) })
		for _, s := range sorted {
			if voters <= effective {
				break
			}
			if s.Voter && !s.Leader && !s.Restarting {
				demote = append(demote, s.ID)
				voters--
			}
		}
	}
	return promote, demote
}

// PromotionCandidates lists, in order of ID, the non-voters whose progress
// the leader must ask for before it plans voters: none while the voters
// are at least the effective target (PlanVoters then promotes nobody,
// whoever is caught up), otherwise the healthy non-voters stable for at
// least stabilization, the only ones PlanVoters may promote. CaughtUp of
// the servers is not read. An idle cluster with its voters in place thus
// asks nobody anything.
func PromotionCandidates(servers []ServerHealth, target int, stabilization time.Duration) []string {
	inService, voters := 0, 0
	for _, s := range servers {
		if s.InService {
			inService++
		}
		if s.Voter {
			voters++
		}
	}
	if voters >= targetVoters(target, inService) {
		return nil
	}
	var out []string
	for _, s := range servers {
		if !s.Voter && s.Healthy && s.StableFor >= stabilization {
			out = append(out, s.ID)
		}
	}
	sort.Strings(out)
	return out
}

// FailedVoter is a voter held failed, with how long it has been.
type FailedVoter struct {
	// ID is the node ID as it appears in voters.
	ID string
	// FailedFor is how long the node has been failed, on the leader's
	// monotonic clock; the oldest failure is removed first.
	FailedFor time.Duration
}

// RemovableVoters returns which of the failed voters may be removed now, in
// the order to remove them: oldest failure first, ties broken by ID. voters
// is the current raft configuration's voter IDs. A failed node that is not
// among voters is ignored (it is not a voter, or already removed). At most
// MaxRemovableVoters(len(voters)) are returned, and never so many that fewer
// than minVoters voters would remain (minVoters ≤ 0: no minimum).
func RemovableVoters(voters []string, failed []FailedVoter, minVoters int) []string {
	isVoter := make(map[string]bool, len(voters))
	for _, v := range voters {
		isVoter[v] = true
	}
	candidates := make([]FailedVoter, 0, len(failed))
	seen := make(map[string]bool, len(failed))
	for _, f := range failed {
		if isVoter[f.ID] && !seen[f.ID] {
			seen[f.ID] = true
			candidates = append(candidates, f)
		}
	}
	sort.Slice(candidates, func(i, j int) bool {
		if candidates[i].FailedFor != candidates[j].FailedFor {
			return candidates[i].FailedFor > candidates[j].FailedFor
		}
		return candidates[i].ID < candidates[j].ID
	})
	limit := MaxRemovableVoters(len(isVoter))
	if minVoters > 0 && len(isVoter)-minVoters < limit {
		limit = len(isVoter) - minVoters
	}
	if limit < 0 {
		limit = 0
	}
	if len(candidates) > limit {
		candidates = candidates[:limit]
	}
	out := make([]string, 0, len(candidates))
	for _, c := range candidates {
		out = append(out, c.ID)
	}
	return out
}
