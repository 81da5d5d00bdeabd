package failover

// Replication health of the table, for metrics and the page: how many
// partitions have fewer live copies than the replication factor.

// liveCopy reports whether a holder's copy counts towards the replication
// factor: its member is alive, suspect (not confirmed gone) or leaving (it
// serves until its copies have moved: add before remove). A member away
// for a planned restart keeps its copies but serves none of them until it
// is back: its partitions are under-replicated meanwhile, which they are.
func (c *Cluster) liveCopy(node string) bool {
	m, ok := c.Members[node]
	return ok && (m.CanHold() || m.Status == StatusLeaving)
}

// LiveCopies is how many holders of p (primary included) are live members.
func (c *Cluster) LiveCopies(p Partition) int {
	n := 0
	for _, h := range p.Holders() {
		if c.liveCopy(h) {
			n++
		}
	}
	return n
}

// UnderReplicated returns, in ID order, the partitions with fewer live
// copies than their resource's replication factor (never a retired one): after a failure, until the missing
// copies are re-created elsewhere (or the failed node comes back), and for
// as long as there are fewer live members than the factor. Copies in
// flight do not count until they complete.
func (c *Cluster) UnderReplicated() []int {
	if c == nil || !c.Bootstrapped {
		return nil
	}
	var out []int
	for i := range c.Partitions {
		p := c.Partitions[i]
		if c.LiveCopies(p) < c.replicationFactorOf(&c.Partitions[i]) {
			out = append(out, p.ID)
		}
	}
	return out
}
