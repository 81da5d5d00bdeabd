package failover

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Candidate scoring.
//
// When the planner chooses a node for a role (where a new copy goes, which
// node receives a moved copy, which replica leads, which replica drops a
// surplus copy, where the initial table deals a copy and which holder leads
// it) it compares candidates. A candidate is one node's standing for one
// partition, measured on named criteria; a decision weighs some of them,
// strongest first. compare says which of two
// candidates is better and which criterion decided, and what an action says
// of the node it chose is worded from the chosen candidate, here and nowhere
// else. Hard constraints (the node takes copies, does not hold the partition
// yet, has a free migration slot) are not criteria: they decide who is a
// candidate at all. The source of a copy (sourceFor) and the copy a
// zone-spread move takes out are fixed orders of preference, not scores.
// The model is CockroachDB's allocator scorer
// (allocatorimpl/allocator_scorer.go): a candidate value per store, and a
// compare that ranks the criteria and tells which one decided.

// criterion is one thing a decision weighs.
type criterion uint8

const (
	// byZoneSpread: a copy on the node keeps the partition within the zone
	// spread rule (see zoneRule).
	byZoneSpread criterion = iota + 1
	// byZoneRoom: the node's zone lacks more of its zone quota (the initial
	// table deals copies to zones, then to nodes).
	byZoneRoom
	// byRoom: the choice takes the node further towards its quota: how far
	// below its quota a node that gains is, or how far above it a node that
	// gives up load is.
	byRoom
	// byLoadPerWeight: fewer copies per unit of weight.
	byLoadPerWeight
	// bySeed: the seeded tie-break mixed with the partition, so that equal
	// nodes share the partitions evenly and each node's partners spread
	// over the cluster.
	bySeed
	// byID: the lowest node ID, so that a decision with it is a total order.
	byID
)

var criterionNames = [...]string{
	byZoneSpread:    "zone spread",
	byZoneRoom:      "room in the zone's quota",
	byRoom:          "room in the node's quota",
	byLoadPerWeight: "load per weight",
	bySeed:          "seeded tie-break",
	byID:            "node ID",
}

func (k criterion) String() string {
	if int(k) < len(criterionNames) && criterionNames[k] != "" {
		return criterionNames[k]
	}
	return "no criterion"
}

// decision is one kind of node choice: the criteria it weighs, strongest
// first, whether the chosen node gives up load (rather than gains it), and
// how its reasons word the chosen node's load.
type decision struct {
	criteria []criterion
	gives    bool
	wording  wording
}

// The planner's decisions.
var (
	// placing: where a new copy goes, to repair a partition or to spread
	// it over more zones.
	placing = decision{criteria: []criterion{byZoneSpread, byRoom, byLoadPerWeight, bySeed, byID}, wording: holdsOfShare}
	// rebalancing: which node below its band receives a copy moved from one
	// above it (the zone spread is a hard constraint there).
	rebalancing = decision{criteria: []criterion{byRoom, byLoadPerWeight, bySeed, byID}, wording: holdsCopiesOfShare}
	// leading: which replica becomes a partition's primary.
	leading = decision{criteria: []criterion{byRoom, bySeed, byID}, wording: leadsOfShare}
	// dropping: which replica gives up a copy above the replication factor.
	dropping = decision{criteria: []criterion{byRoom, byID}, gives: true, wording: holdsOfQuota}
	// initialCopy: where the initial table deals each copy.
	initialCopy = decision{criteria: []criterion{byZoneSpread, byZoneRoom, byRoom, bySeed, byID}}
	// initialPrimary: which holder leads a partition of the initial table;
	// equal holders keep the first.
	initialPrimary = decision{criteria: []criterion{byRoom}}
)

// candidate is one node considered for one partition.
type candidate struct {
	node   int    // index into planner.nodes
	id     string // the node's ID
	part   int    // the partition, mixed into the seeded tie-break
	tie    uint64 // the node's seeded tie-break
	weight int
	// load is the copies or primaries the node has now, quota and share
	// its quota and share of them (see quota.go).
	load  int
	quota int
	share float64
	// zoneOK: a copy on the node keeps the zone spread rule; zoneRoom: its
	// zone's quota minus the zone's copies (initial table); zone: the zone's
	// name; zoned: the cluster has several zones, so a placement says how
	// the spread went.
	zoneOK   bool
	zoneRoom int
	zone     string
	zoned    bool
	// lastResort: the node's app is unhealthy, and it takes the copy for
	// want of a node whose app is healthy.
	lastResort bool
	// failures: copies of the partition to the node that failed in a row;
	// retryWait: the planner still waits before it tries the node again
	// (copyfailure.go). avoided says which node a copy did not go to
	// because copies to it kept failing.
	failures  int
	retryWait bool
	avoided   string
}

// copyCandidate is node i as a holder of copies, for partition part. The
// caller fills in what depends on the decision (zoneOK, lastResort).
func (p *planner) copyCandidate(i, part int) candidate {
	nd := &p.nodes[i]
	c := candidate{node: i, id: nd.id, part: part, tie: nd.tie, weight: nd.weight,
		load: p.copies[i], quota: p.copyQuota[i], share: p.copyShare[i], zoned: len(p.zoneNames) > 1}
	if nd.zone < len(p.zoneNames) {
		c.zone = p.zoneNames[nd.zone]
	}
	return c
}

// leaderCandidate is node i as a leader, for partition part (-1 when only
// its standing is wanted).
func (p *planner) leaderCandidate(i, part int) candidate {
	nd := &p.nodes[i]
	return candidate{node: i, id: nd.id, part: part, tie: nd.tie, weight: nd.weight,
		load: p.prims[i], quota: p.primQuota[i], share: p.primShare[i]}
}

// room is how far the choice takes the node towards its quota.
func (c *candidate) room(gives bool) int {
	if gives {
		return c.load - c.quota
	}
	return c.quota - c.load
}

// compare returns a positive number when c is the better candidate for d,
// a negative one when o is, 0 when d's criteria do not tell them apart; and
// the criterion that decided (0 when none did).
func (c *candidate) compare(o *candidate, d *decision) (int, criterion) {
	for _, k := range d.criteria {
		var s int
		switch k {
		case byZoneSpread:
			s = boolCompare(c.zoneOK, o.zoneOK)
		case byZoneRoom:
			s = cmp.Compare(c.zoneRoom, o.zoneRoom)
		case byRoom:
			s = cmp.Compare(c.room(d.gives), o.room(d.gives))
		case byLoadPerWeight:
			// c.load/c.weight < o.load/o.weight, without division.
			s = cmp.Compare(o.load*c.weight, c.load*o.weight)
		case bySeed:
			s = cmp.Compare(mix(o.tie, uint64(o.part)), mix(c.tie, uint64(c.part)))
		case byID:
			s = strings.Compare(o.id, c.id)
		}
		if s != 0 {
			return s, k
		}
	}
	return 0, 0
}

// choice keeps the best candidate offered so far for one decision; among
// candidates the decision cannot tell apart, the first offered stays.
type choice struct {
	d    *decision
	best candidate
	ok   bool // some candidate was offered
}

func (ch *choice) offer(c *candidate) {
	if !ch.ok || c.beats(&ch.best, ch.d) {
		ch.best, ch.ok = *c, true
	}
}

// beats reports whether c is the better candidate for d.
func (c *candidate) beats(o *candidate, d *decision) bool {
	s, _ := c.compare(o, d)
	return s > 0
}

func boolCompare(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// wording is how reasons word a node's load. The forms differ by history
// (a repair target "holds 9", the two ends of a rebalancing move "hold 9
// copies"); the golden transcripts pin them.
type wording uint8

const (
	holdsOfShare       wording = iota // "n05 holds 9 (share 18.0)"
	holdsCopiesOfShare                // "n05 holds 9 copies (share 18.0)"
	holdsOfQuota                      // "n05 holds 9 (quota 9)"
	leadsOfShare                      // "n06 leads 3 (share 3.6)"
)

// standing words c's load.
func (c candidate) standing(w wording) string {
	switch w {
	case holdsCopiesOfShare:
		return fmt.Sprintf("%s holds %d copies (share %.1f)", c.id, c.load, c.share)
	case holdsOfQuota:
		return fmt.Sprintf("%s holds %d (quota %d)", c.id, c.load, c.quota)
	case leadsOfShare:
		return fmt.Sprintf("%s leads %d (share %.1f)", c.id, c.load, c.share)
	}
	return fmt.Sprintf("%s holds %d (share %.1f)", c.id, c.load, c.share)
}

// appendReasons appends to out what an action says of the node chosen for
// d: its load against its share; that it is a last resort, if it is; and,
// when d weighs the zone spread in a cluster of several zones, how the
// spread went.
func (c candidate) appendReasons(out []string, d decision) []string {
	out = append(out, c.standing(d.wording))
	if c.lastResort {
		out = append(out, "no app-healthy node can take it: "+c.id+" (app-unhealthy) keeps the data")
	}
	if c.zoned && slices.Contains(d.criteria, byZoneSpread) {
		if c.zoneOK {
			out = append(out, fmt.Sprintf("zone spread: zone %q", c.zone))
		} else {
			out = append(out, "zone spread impossible")
		}
	}
	return out
}

// moveReasons are what a move of load from one node to another says: both
// ends' load against their shares.
func moveReasons(from, to candidate, d decision) []string {
	return []string{from.standing(d.wording), to.standing(d.wording)}
}
