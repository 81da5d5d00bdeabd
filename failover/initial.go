package failover

// InitialTable lays out s.Partitions partitions over the members that can
// hold data. Copies are dealt round-robin over the members in ID order, so
// copies per node differ by at most one and no node holds two copies of one
// partition; each partition's primary is the holder with the fewest
// primaries so far, which keeps primaries per node within one as well.
func InitialTable(s Settings, members map[string]Member) []Partition {
	var nodes []string
	tmp := &Cluster{Members: members}
	for _, id := range tmp.MemberIDs() {
		if members[id].CanHold() {
			nodes = append(nodes, id)
		}
	}
	table := make([]Partition, s.Partitions)
	n := len(nodes)
	rf := s.ReplicationFactor
	if rf > n {
		rf = n
	}
	primaries := make(map[string]int, n)
	for p := range table {
		table[p] = Partition{ID: p, Epoch: 1, Replicas: []string{}}
		if n == 0 {
			continue
		}
		holders := make([]string, rf)
		for j := 0; j < rf; j++ {
			holders[j] = nodes[(p*rf+j)%n]
		}
		best := 0
		for j := 1; j < rf; j++ {
			if primaries[holders[j]] < primaries[holders[best]] {
				best = j
			}
		}
		primaries[holders[best]]++
		table[p].Primary = holders[best]
		for j, h := range holders {
			if j != best {
				table[p].Replicas = append(table[p].Replicas, h)
			}
		}
	}
	return table
}
