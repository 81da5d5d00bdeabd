package raftctl

import (
	"sort"
	"time"
)

// ServerHealth is what the leader knows about one server of the raft
// configuration when it plans voters. Gathering it is the agent's job (I/O);
// PlanVoters only computes (pure), as raft-autopilot splits them.
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
	for _, s := range servers {
		if s.InService {
			inService++
		}
		if s.Voter {
			voters++
		}
	}
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

	sorted := append([]ServerHealth(nil), servers...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].ID < sorted[j].ID })

	if voters < effective {
		for _, s := range sorted {
			if voters >= effective {
				break
			}
			if !s.Voter && s.Healthy && s.CaughtUp && s.StableFor >= stabilization {
				promote = append(promote, s.ID)
				voters++
			}
		}
		return promote, nil
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
			if s.Voter && !s.Leader {
				demote = append(demote, s.ID)
				voters--
			}
		}
	}
	return nil, demote
}
