package core

import (
	"sort"

	"github.com/herd-cluster/herd/ring/wire"
)

// frameRec describes one stream frame of the session: a data chunk by its
// place (item, chunk number, offset, length), or a control frame (item end,
// end) by its message. It is what a node or the source needs to rebuild a
// frame it no longer holds in memory.
type frameRec struct {
	msg  wire.Msg // ItemEnd or End; nil for data
	item int
	seq  uint64
	off  int64
	n    int
}

// frameRun is a run of consecutive data frames of one item whose chunks
// follow each other without holes and have the same length (the last may
// be shorter), or a single control frame. A contiguous image is one run per
// item, so the index stays small whatever the size.
type frameRun struct {
	num   uint64 // number of the first frame
	count uint64
	msg   wire.Msg
	item  int
	seq   uint64
	off   int64
	clen  int // length of every chunk but the last
	last  int // length of the last chunk
}

// frameIndex records the layout of every stream frame a node saw, in
// order, as runs.
type frameIndex struct {
	runs []frameRun
	next uint64 // number of the next frame
	// limit bounds the runs (0: no bound). A frame that needs one more
	// is not recorded, nor any after it: they cannot be rebuilt.
	limit int
}

// maxIndexRuns bounds a node's frame index: about 18 MiB. A stream needs
// a run per item and control frame and one per hole in an item (a sparse
// item of a quarter million extents fits); a peer sending tiny chunks
// with holes would otherwise grow it by 72 bytes per frame. The source's
// index, made of its own reads, is not bounded.
const maxIndexRuns = 1 << 18

// add records frame num (frames are added in order without gaps).
func (x *frameIndex) add(num uint64, m wire.Msg) {
	if num != x.next {
		return
	}
	d, ok := m.(*wire.Data)
	if ok {
		n := len(d.Payload)
		if k := len(x.runs) - 1; k >= 0 {
			r := &x.runs[k]
			if r.msg == nil && r.item == int(d.Item) && r.last == r.clen && r.seq+r.count == d.Seq &&
				r.off+int64(r.count)*int64(r.clen) == d.Off && n <= r.clen {
				r.count++
				r.last = n
				x.next++
				return
			}
		}
	}
	if x.limit > 0 && len(x.runs) >= x.limit {
		return
	}
	x.next++
	if !ok {
		x.runs = append(x.runs, frameRun{num: num, count: 1, msg: m})
		return
	}
	x.runs = append(x.runs, frameRun{num: num, count: 1, item: int(d.Item), seq: d.Seq, off: d.Off, clen: len(d.Payload), last: len(d.Payload)})
}

// at returns the record of frame num.
func (x *frameIndex) at(num uint64) (frameRec, bool) {
	if num >= x.next {
		return frameRec{}, false
	}
	k := sort.Search(len(x.runs), func(i int) bool { return x.runs[i].num+x.runs[i].count > num })
	if k == len(x.runs) {
		return frameRec{}, false
	}
	r := &x.runs[k]
	if r.msg != nil {
		return frameRec{msg: r.msg}, true
	}
	i := num - r.num
	n := r.clen
	if i == r.count-1 {
		n = r.last
	}
	return frameRec{item: r.item, seq: r.seq + i, off: r.off + int64(i)*int64(r.clen), n: n}, true
}

// clone returns a copy that grows apart from x.
func (x *frameIndex) clone() frameIndex {
	return frameIndex{runs: append([]frameRun(nil), x.runs...), next: x.next, limit: x.limit}
}
