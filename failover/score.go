package failover

// lessLoaded: further below quota first, then lower copies per weight,
// then the seeded tie-break, then ID.
func (p *planner) lessLoaded(i, j, part int) bool {
	di := p.copyQuota[i] - p.copies[i]
	dj := p.copyQuota[j] - p.copies[j]
	if di != dj {
		return di > dj
	}
	li := p.copies[i] * p.nodes[j].weight
	lj := p.copies[j] * p.nodes[i].weight
	if li != lj {
		return li < lj
	}
	ti, tj := mix(p.nodes[i].tie, uint64(part)), mix(p.nodes[j].tie, uint64(part))
	if ti != tj {
		return ti < tj
	}
	return p.nodes[i].id < p.nodes[j].id
}

func (p *planner) betterLeader(i, j, part int) bool {
	di := p.prims[i] - p.primQuota[i]
	dj := p.prims[j] - p.primQuota[j]
	if di != dj {
		return di < dj
	}
	ti, tj := mix(p.nodes[i].tie, uint64(part)), mix(p.nodes[j].tie, uint64(part))
	if ti != tj {
		return ti < tj
	}
	return p.nodes[i].id < p.nodes[j].id
}
