package failover

import "fmt"

// The planner's side of per-resource placement (placement.go): each
// partition belongs to a placement class, the zones rule and node selector
// its resource has (resources with equal settings share one). A class
// says which nodes may hold the partition's copies and which zone rule
// applies; the shares are computed per class and summed per node, so that
// a node's load still counts every resource.

// placementClass is one placement (zones rule, node selector) as the
// planner applies it.
type placementClass struct {
	zonesRule ZonesRule
	selector  string
	// eligible, by node index, says which nodes the selector matches; nil
	// when it matches every node.
	eligible []bool
	// holders counts the eligible nodes that can hold copies, and
	// holderZones their distinct zones: a partition wants no more copies
	// than that (and, with ZonesStrict, than holderZones).
	holders, holderZones int
	// zoneOf maps a node to its zone among the eligible takers (all 0 with
	// ZonesNone), zones counts them; rules is the zone rule per copy count.
	zoneOf     []int
	takerZones int
	rules      [MaxReplicationFactor + 1]zoneRule
}

// mayHold reports whether the class lets node i hold a copy.
func (cl *placementClass) mayHold(i int) bool { return cl.eligible == nil || cl.eligible[i] }

// buildClasses sorts the partitions into placement classes. Class 0 is the
// default placement (spread, every node); a cluster whose resources all
// have it gets no per-partition slice at all.
func (p *planner) buildClasses() {
	c := p.c
	def := placementClass{zonesRule: ZonesSpread, zoneOf: make([]int, len(p.nodes)), takerZones: len(p.zoneNames), rules: p.rules}
	for i, n := range p.nodes {
		def.zoneOf[i] = n.zone
	}
	for _, n := range p.nodes {
		if n.hold {
			def.holders++
		}
	}
	def.holderZones = distinctZones(c.Members)
	p.classes = []placementClass{def}
	p.pclass = &p.classes[0]
	special := c.DefaultZones.orSpread() != ZonesSpread || c.DefaultNodes != ""
	for _, r := range c.Resources {
		special = special || r.Zones.orSpread() != ZonesSpread || r.Nodes != ""
	}
	if !special {
		return
	}
	byPlacement := map[Placement]int32{{Zones: ZonesSpread}: 0}
	byResource := map[string]int32{}
	for _, r := range c.ResourceList() {
		pl := Placement{Zones: r.Zones.orSpread(), Nodes: r.Nodes}
		ci, ok := byPlacement[pl]
		if !ok {
			ci = int32(len(p.classes))
			byPlacement[pl] = ci
			p.classes = append(p.classes, p.newClass(pl))
		}
		byResource[r.Name] = ci
	}
	p.pclass = &p.classes[0]
	p.class = make([]int32, len(c.Partitions))
	last, lastClass := "", int32(0)
	for i := range c.Partitions {
		name := c.Partitions[i].ResourceName()
		if name != last {
			last, lastClass = name, byResource[name]
		}
		p.class[i] = lastClass
	}
}

// newClass computes the class of placement pl over the planner's nodes.
func (p *planner) newClass(pl Placement) placementClass {
	cl := placementClass{zonesRule: pl.Zones, selector: pl.Nodes}
	sel, _ := ParseNodeSelector(pl.Nodes) // checked when it was set
	if len(sel) > 0 {
		cl.eligible = make([]bool, len(p.nodes))
	}
	holderZones := map[string]bool{}
	zoneIndex := map[string]int{}
	cl.zoneOf = make([]int, len(p.nodes))
	for i, n := range p.nodes {
		m := p.c.Members[n.id]
		ok := sel.Matches(m.Tags)
		if cl.eligible != nil {
			cl.eligible[i] = ok
		}
		if !ok {
			continue
		}
		zone := m.Zone
		if pl.Zones == ZonesNone {
			zone = ""
		}
		if n.hold {
			cl.holders++
			holderZones[zone] = true
		}
		if n.take {
			z, seen := zoneIndex[zone]
			if !seen {
				z = len(zoneIndex)
				zoneIndex[zone] = z
			}
			cl.zoneOf[i] = z
		}
	}
	cl.holderZones = len(holderZones)
	cl.takerZones = len(zoneIndex)
	for k := range cl.rules {
		cl.rules[k] = newZoneRule(k, cl.takerZones)
	}
	return cl
}

// classOf is the placement class of partition pi.
func (p *planner) classOf(pi int) *placementClass {
	if p.class == nil {
		return &p.classes[0]
	}
	return &p.classes[p.class[pi]]
}

// wantOf caps a partition's replication factor k by what its class
// allows: the nodes that may hold it and, with ZonesStrict, their zones.
func (cl *placementClass) wantOf(k int) int {
	if cl.holders < k {
		k = cl.holders
	}
	if cl.zonesRule == ZonesStrict && cl.holderZones < k {
		k = cl.holderZones
	}
	return k
}

// classShares adds one class's share of the copies of its partitions with
// k copies each (count of them) to share and quota.
func (p *planner) classShares(cl *placementClass, count, k int, takers, weight []int, frozen int, tie []uint64, share []float64, quota []int) {
	mine := takers
	if cl.eligible != nil {
		mine = make([]int, 0, len(takers))
		for _, i := range takers {
			if cl.eligible[i] {
				mine = append(mine, i)
			}
		}
	}
	s, q := copyShares(count, k, mine, weight, cl.zoneOf, cl.takerZones, frozen, p.copies, tie)
	for i := range share {
		share[i] += s[i]
		quota[i] += q[i]
	}
}

// misplacedHolder returns a live copy of part that its placement does not
// allow (not one already being replaced): on a node the selector does not
// match, or, with ZonesStrict, a replica in a zone that holds an earlier
// copy. "" when there is none.
func (p *planner) misplacedHolder(part *Partition) string {
	cl := p.classOf(part.ID)
	if cl.eligible == nil && cl.zonesRule != ZonesStrict {
		return ""
	}
	var zones []int
	for _, h := range p.holders(part) {
		i, st := p.state(h)
		if st != holderLive || len(part.Migrations) > 0 && p.replaced(part, h) {
			continue
		}
		if !cl.mayHold(i) {
			return h
		}
		if cl.zonesRule == ZonesStrict {
			z := p.nodes[i].zone
			for _, seen := range zones {
				if seen == z {
					return h
				}
			}
			zones = append(zones, z)
		}
	}
	return ""
}

// planMisplaced moves the misplaced copy h of part (misplacedHolder) to a
// node the placement allows, add before remove; live and k are the
// partition's live copies and wanted copies. A primary hands its role to
// an allowed replica first; a surplus copy is simply removed.
func (p *planner) planMisplaced(part *Partition, h string, live, k int, needs *[]need) {
	cl := p.classOf(part.ID)
	i := p.idx[h]
	why := fmt.Sprintf("%s does not match the node selector %q of resource %s", h, cl.selector, part.ResourceName())
	if cl.mayHold(i) {
		why = fmt.Sprintf("%s shares zone %q with another copy (resource %s: zones %s)", h, p.c.Members[h].Zone, part.ResourceName(), ZonesStrict)
	}
	if h == part.Primary {
		leader := choice{d: &leading}
		for _, r := range part.Replicas {
			if j, ok := p.idx[r]; ok && p.nodes[j].lead && cl.mayHold(j) {
				c := p.leaderCandidate(j, part.ID)
				leader.offer(&c)
			}
		}
		if leader.ok {
			p.promote(part, leader.best.node, PriorityZoneSpread, why, "the primary moves to a copy that fits first")
			return
		}
		*needs = append(*needs, need{part: part.ID, priority: PriorityZoneSpread, replaces: h, lead: true,
			reasons: []string{why, "no copy that fits can lead: a new copy becomes primary"}})
		return
	}
	if live > k {
		p.copies[i]--
		p.copyWork = true
		p.emit(Action{Kind: ActionRemoveReplica, Partition: part.ID, Epoch: part.Epoch, Node: h, Priority: PriorityRemoveSurplus,
			Reasons: []string{why, fmt.Sprintf("surplus copy: %d live of %d", live, k)}})
		return
	}
	*needs = append(*needs, need{part: part.ID, priority: PriorityZoneSpread, replaces: h, reasons: []string{why}})
}
