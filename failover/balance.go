package failover

// NodeBalance is one node's load against its share.
type NodeBalance struct {
	// ID is the node ID.
	ID string `json:"id"`
	// Zone and Weight are the member's.
	Zone   string `json:"zone,omitempty"`
	Weight int    `json:"weight"`
	// Copies counts the partitions the node holds (primary or replica).
	Copies int `json:"copies"`
	// Primaries counts the partitions it leads.
	Primaries int `json:"primaries"`
	// CopyShare is the node's weighted share of copies (see quota.go): the
	// planner keeps Copies within floor..ceil of it.
	CopyShare float64 `json:"copy_share"`
	// PrimaryShare is its weighted share of primaries.
	PrimaryShare float64 `json:"primary_share"`
}

// LoadSummary summarises one kind of load over the nodes that take it.
type LoadSummary struct {
	// Total is the sum over nodes.
	Total int `json:"total"`
	// Mean is Total divided by the number of nodes that take this load.
	Mean float64 `json:"mean"`
	// Max is the largest count on one node.
	Max int `json:"max"`
	// MaxOverShare is the largest count/share over nodes with a share: 1 is
	// perfect; the planner's goal is at most 1 + 1/share.
	MaxOverShare float64 `json:"max_over_share"`
	// MaxOverMean is Max / Mean (for equal weights the same figure as
	// MaxOverShare).
	MaxOverMean float64 `json:"max_over_mean"`
}

// BalanceReport is what /v1/partitions shows about balance.
type BalanceReport struct {
	Nodes     []NodeBalance `json:"nodes"`
	Copies    LoadSummary   `json:"copies"`
	Primaries LoadSummary   `json:"primaries"`
}

// Balance reports copies and primaries per node (nodes in ID order) against
// their weighted shares. It counts actual holders (migrations in flight are
// not copies yet).
func Balance(c *Cluster) BalanceReport {
	var r BalanceReport
	p := newPlanner(c, Ages{}, 0, Limits{})
	if p == nil {
		return r
	}
	var takers, leaders int
	for i, nd := range p.nodes {
		m := c.Members[nd.id]
		nb := NodeBalance{ID: nd.id, Zone: m.Zone, Weight: nd.weight, Copies: p.held[i], Primaries: p.prims[i], CopyShare: p.copyShare[i], PrimaryShare: p.primShare[i]}
		r.Nodes = append(r.Nodes, nb)
		if nd.hold {
			takers++
			r.Copies.add(nb.Copies, nb.CopyShare)
		}
		if nd.lead {
			leaders++
			r.Primaries.add(nb.Primaries, nb.PrimaryShare)
		}
	}
	r.Copies.finish(takers)
	r.Primaries.finish(leaders)
	return r
}

func (s *LoadSummary) add(n int, share float64) {
	s.Total += n
	if n > s.Max {
		s.Max = n
	}
	if share > 0 {
		if v := float64(n) / share; v > s.MaxOverShare {
			s.MaxOverShare = v
		}
	}
}

func (s *LoadSummary) finish(nodes int) {
	if nodes > 0 {
		s.Mean = float64(s.Total) / float64(nodes)
	}
	if s.Mean > 0 {
		s.MaxOverMean = float64(s.Max) / s.Mean
	}
}
