package raftctl

import (
	"encoding/binary"
	"fmt"
	"os"
)

// bbolt reads its pages straight out of a memory map and trusts them: a
// page whose header or offsets are damaged makes it panic, sometimes in a
// goroutine of its own where nothing can recover (the freelist rebuild that
// NoFreelistSync implies spawns one), or read past the map and die of
// SIGBUS. So before bbolt opens raft.db, walkBolt follows the B+tree itself,
// from the root the meta page names, through every reachable page, with
// every offset bounds-checked, on plain reads of the file. What bbolt does
// afterwards only touches pages this walk found sound.
//
// The page format, from go.etcd.io/bbolt v1.5.0 (internal/common/page.go),
// in the machine's byte order:
//
//	page header (16 bytes): id uint64, flags uint16, count uint16, overflow uint32
//	branch element (16):    pos uint32, ksize uint32, pgid uint64
//	leaf element (16):      flags uint32, pos uint32, ksize uint32, vsize uint32
//
// An element's key starts pos bytes after the element itself; a leaf's
// value follows its key. A leaf element with flag 1 is a bucket: its value
// starts with the bucket's root page ID and sequence (8 bytes each); a root
// of 0 means an inline bucket, whose leaf page follows within the value.
const (
	boltPageHeaderSize = 16
	boltElementSize    = 16
	boltBranchPage     = 0x01
	boltLeafPage       = 0x02
	boltBucketElement  = 0x01
	boltBucketHeader   = 16
)

type boltWalker struct {
	f        *os.File
	pageSize uint64
	pages    uint64 // the high-water mark: valid page IDs are below it
	seen     map[uint64]bool
}

// walkBolt checks every page reachable from root; the first problem is the
// error.
func walkBolt(path string, metas boltMetas) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := &boltWalker{f: f, pageSize: metas.pageSize, pages: metas.pages, seen: map[uint64]bool{}}
	return w.tree(metas.root, "the root bucket")
}

// tree checks the page id and everything below it.
func (w *boltWalker) tree(id uint64, what string) error {
	if id < 2 || id >= w.pages {
		return fmt.Errorf("%s points to page %d, outside 2..%d", what, id, w.pages-1)
	}
	if w.seen[id] {
		return fmt.Errorf("page %d is reached twice", id)
	}
	w.seen[id] = true
	head := make([]byte, boltPageHeaderSize)
	if _, err := w.f.ReadAt(head, int64(id*w.pageSize)); err != nil {
		return fmt.Errorf("page %d: %w", id, err)
	}
	if got := binary.NativeEndian.Uint64(head); got != id {
		return fmt.Errorf("page %d identifies itself as page %d", id, got)
	}
	overflow := uint64(binary.NativeEndian.Uint32(head[12:]))
	if id+overflow >= w.pages {
		return fmt.Errorf("page %d runs %d pages past the end of the file's %d", id, overflow, w.pages)
	}
	page := make([]byte, (1+overflow)*w.pageSize)
	if _, err := w.f.ReadAt(page, int64(id*w.pageSize)); err != nil {
		return fmt.Errorf("page %d: %w", id, err)
	}
	children, err := w.elements(page, fmt.Sprintf("page %d", id), false)
	if err != nil {
		return err
	}
	for _, c := range children {
		if err := w.tree(c.id, c.what); err != nil {
			return err
		}
	}
	return nil
}

type boltChild struct {
	id   uint64
	what string
}

// elements bounds-checks a branch or leaf page held in page (header
// included) and returns the pages it points to. An inline bucket's page
// must be a leaf.
func (w *boltWalker) elements(page []byte, name string, inline bool) ([]boltChild, error) {
	flags := binary.NativeEndian.Uint16(page[8:])
	count := int(binary.NativeEndian.Uint16(page[10:]))
	if flags != boltBranchPage && flags != boltLeafPage || inline && flags != boltLeafPage {
		return nil, fmt.Errorf("%s has page flags %#x, not a branch or leaf page", name, flags)
	}
	if boltPageHeaderSize+count*boltElementSize > len(page) {
		return nil, fmt.Errorf("%s claims %d elements, more than fit", name, count)
	}
	var children []boltChild
	for i := range count {
		at := boltPageHeaderSize + i*boltElementSize
		el := page[at : at+boltElementSize]
		if flags == boltBranchPage {
			pos, ksize := binary.NativeEndian.Uint32(el), binary.NativeEndian.Uint32(el[4:])
			if uint64(at)+uint64(pos)+uint64(ksize) > uint64(len(page)) {
				return nil, fmt.Errorf("%s: element %d's key runs past the page", name, i)
			}
			children = append(children, boltChild{binary.NativeEndian.Uint64(el[8:]), fmt.Sprintf("%s element %d", name, i)})
			continue
		}
		elFlags := binary.NativeEndian.Uint32(el)
		pos, ksize, vsize := uint64(binary.NativeEndian.Uint32(el[4:])), uint64(binary.NativeEndian.Uint32(el[8:])), uint64(binary.NativeEndian.Uint32(el[12:]))
		start := uint64(at) + pos
		end := start + ksize + vsize
		if end > uint64(len(page)) {
			return nil, fmt.Errorf("%s: element %d's key and value run past the page", name, i)
		}
		if elFlags&boltBucketElement == 0 {
			continue
		}
		value := page[start+ksize : end]
		if len(value) < boltBucketHeader {
			return nil, fmt.Errorf("%s: element %d is a bucket of %d bytes", name, i, len(value))
		}
		root := binary.NativeEndian.Uint64(value)
		bucket := fmt.Sprintf("bucket %q", page[start:start+ksize])
		if root != 0 {
			children = append(children, boltChild{root, bucket})
			continue
		}
		inlinePage := value[boltBucketHeader:]
		if len(inlinePage) < boltPageHeaderSize {
			return nil, fmt.Errorf("%s: inline %s has no page", name, bucket)
		}
		nested, err := w.elements(inlinePage, "inline "+bucket, true)
		if err != nil {
			return nil, err
		}
		children = append(children, nested...)
	}
	return children, nil
}
