package failover

import "hash/fnv"

// Keys to partitions: every key of a resource hashes to a point of the key
// space [0, KeySpace), and each active partition of the resource owns one
// range [KeyStart, KeyEnd) of it; the ranges of a resource tile the space.
// A resource with N partitions starts with even ranges (EvenKeyRange), and
// a split cuts one range in two, so the mapping of every other key stays
// where it was.
//
// The app, the client library and every router use PartitionForKey, the
// one implementation of this mapping, on the rows GET /v1/partitions
// serves (which always carry explicit ranges).

// KeySpace is the size of the key space: KeyHash's values are below it.
const KeySpace uint64 = 1 << 32

// KeyHash is the point of the key space a key maps to: FNV-1a 32-bit of
// the key's bytes.
func KeyHash(key string) uint64 {
	h := fnv.New32a()
	h.Write([]byte(key))
	return uint64(h.Sum32())
}

// EvenKeyRange is the key range of partition i (0-based, within its
// resource) of a resource made with n partitions: [i·KeySpace/n,
// (i+1)·KeySpace/n).
func EvenKeyRange(i, n int) (start, end uint64) {
	return uint64(i) * KeySpace / uint64(n), uint64(i+1) * KeySpace / uint64(n)
}

// EvenKeyIndex is the i whose even range EvenKeyRange(i, n) holds point h
// (below KeySpace): what PartitionForKey answers, as an index within the
// resource, for a resource made with n partitions that never split.
func EvenKeyIndex(h uint64, n int) int {
	i := int(h * uint64(n) / KeySpace)
	for i+1 < n {
		if start, _ := EvenKeyRange(i+1, n); start > h {
			break
		}
		i++
	}
	return i
}

// KeyRange returns the key range p owns. A partition written before key
// ranges existed has none stored (KeyEnd 0): it is one of the default
// resource's bootstrap partitions, whose ID is its index, with an even
// range.
func (c *Cluster) KeyRange(p *Partition) (start, end uint64) {
	if p.KeyEnd != 0 {
		return p.KeyStart, p.KeyEnd
	}
	if c.Settings.Partitions < 1 {
		return 0, 0
	}
	return EvenKeyRange(p.ID, c.Settings.Partitions)
}

// WithKeyRanges returns a copy of the partitions with every row's key
// range explicit (what the API serves, so that routers need nothing but
// the rows).
func (c *Cluster) WithKeyRanges() []Partition {
	out := make([]Partition, len(c.Partitions))
	for i := range c.Partitions {
		out[i] = c.Partitions[i].Clone()
		out[i].KeyStart, out[i].KeyEnd = c.KeyRange(&c.Partitions[i])
	}
	return out
}

// PartitionForKey returns the active partition of resource that owns key,
// among rows with explicit key ranges (as GET /v1/partitions serves them;
// see WithKeyRanges). A row without a resource name belongs to the default
// resource. It reports false when no row owns the key (an unknown
// resource).
func PartitionForKey(rows []Partition, resource, key string) (Partition, bool) {
	h := KeyHash(key)
	for i := range rows {
		p := &rows[i]
		if p.Retired || p.SplitPending || p.ResourceName() != resource {
			continue
		}
		if p.KeyStart <= h && h < p.KeyEnd {
			return *p, true
		}
	}
	return Partition{}, false
}
