package failover

import (
	"fmt"
	"math"
	"sort"
)

// Disk: what the apps' disk figures stop and start (see load.go): no new
// copy past DiskHigh, shedding past DiskFull, and every copy weighed
// against its target's room.

// diskHigh reports whether node id reported a disk use over DiskHigh.
func diskHigh(f *Figures, pol LoadPolicy, id string) bool {
	if f == nil {
		return false
	}
	if pol.Validate() != nil {
		pol = DefaultLoadPolicy()
	}
	fig, ok := f.Nodes[id]
	return ok && fig.DiskCapacity > 0 && fig.DiskRatio() > pol.DiskHigh
}

// hasRoom reports whether node i stays at or below DiskHigh once it holds
// size more bytes (always, for a node that reported no disk).
func (ls *loadState) hasRoom(i int, size float64) bool {
	return ls.diskUsed[i]+size <= ls.diskLimit(i, ls.pol.DiskHigh)
}

// shortNote is what a copy of size bytes placed on node i, short of disk
// room, says of it.
func (ls *loadState) shortNote(i int, size float64) string {
	pct := 100 * (ls.diskUsed[i] + size) / ls.diskLimit(i, 1)
	return fmt.Sprintf("disk: no node has room for a copy of %s under -disk-high %.1f%%; it restores the replication factor at %.1f%%", bytesText(size), 100*ls.pol.DiskHigh, pct)
}

// copySize is the size of a copy of partition pi: the largest its live
// holders reported (0 when none did).
func (ls *loadState) copySize(pi int) float64 {
	var size int64
	for s := ls.off[pi]; s < ls.off[pi+1]; s++ {
		size = max(size, ls.hs[s])
	}
	return float64(size)
}

// roomFor reports whether a copy of partition pi fits on node i below
// DiskHigh (always without figures).
func (p *planner) roomFor(i, pi int) bool {
	return p.ls == nil || p.ls.hasRoom(i, p.ls.copySize(pi))
}

// diskLimit is the bytes node i may use below fraction f of its disk; +Inf
// when it reported no disk.
func (ls *loadState) diskLimit(i int, f float64) float64 {
	if ls.figs[i] == nil || ls.figs[i].DiskCapacity <= 0 {
		return math.Inf(1)
	}
	return f * float64(ls.figs[i].DiskCapacity)
}

func (ls *loadState) diskPct(i int) float64 {
	if ls.figs[i] == nil || ls.figs[i].DiskCapacity <= 0 {
		return 0
	}
	return 100 * ls.diskUsed[i] / float64(ls.figs[i].DiskCapacity)
}

// shedFullDisks moves copies off every node over DiskFull, the largest
// copies first, until its projected use is under it (all of them, empty
// ones last, when even that leaves it over).
func (p *planner) shedFullDisks() {
	ls := p.ls
	for a := range p.nodes {
		if !p.nodes[a].hold || ls.diskUsed[a] <= ls.diskLimit(a, ls.pol.DiskFull) {
			continue
		}
		var mine []heldCopy
		for _, hc := range ls.held[a] {
			// Empty copies too, last: they free nothing now, but would
			// grow on a disk that is full.
			if p.movable(hc.part) {
				mine = append(mine, hc)
			}
		}
		sort.SliceStable(mine, func(x, y int) bool { return ls.hs[mine[x].slot] > ls.hs[mine[y].slot] })
		for _, hc := range mine {
			if ls.diskUsed[a] <= ls.diskLimit(a, ls.pol.DiskFull) || !p.budgetLeft() {
				break
			}
			part := &p.c.Partitions[hc.part]
			size := float64(ls.hs[hc.slot])
			src, srcID := p.sourceFor(part)
			copies, covered := p.zoneCounts(part, p.nodes[a].id)
			best, bestPct := -1, 0.0
			for b, nd := range p.nodes {
				if !nd.take || part.Holds(nd.id) || !p.budget(b, src) || !p.zoneOK(b, copies, covered) {
					continue
				}
				if !ls.hasRoom(b, size) {
					continue
				}
				pct := ls.pol.DiskHigh // a node that reported no disk comes last
				if lim := ls.diskLimit(b, 1); !math.IsInf(lim, 1) {
					pct = (ls.diskUsed[b] + size) / lim
				}
				if best < 0 || pct < bestPct {
					best, bestPct = b, pct
				}
			}
			if best < 0 {
				continue
			}
			why := []string{
				fmt.Sprintf("disk: %s uses %.1f%% of its disk, over -disk-full %.1f%%: sheds a copy of %s", p.nodes[a].id, ls.diskPct(a), 100*ls.pol.DiskFull, bytesText(size)),
				fmt.Sprintf("disk: %s uses %.1f%% before it (at most -disk-high %.1f%% after)", p.nodes[best].id, ls.diskPct(best), 100*ls.pol.DiskHigh),
			}
			p.moveCopyForLoad(hc, a, best, src, srcID, PriorityShedDisk, why)
		}
	}
}

// bytesText prints a size in bytes with a binary unit.
func bytesText(v float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	u := 0
	for v >= 1024 && u < len(units)-1 {
		v /= 1024
		u++
	}
	if u == 0 {
		return fmt.Sprintf("%.0f B", v)
	}
	return fmt.Sprintf("%.1f %s", v, units[u])
}
