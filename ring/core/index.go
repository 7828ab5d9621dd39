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
}

// add records frame num (frames are added in order without gaps).
func (x *frameIndex) add(num uint64, m wire.Msg) {
	if num != x.next {
		return
	}
	x.next++
	d, ok := m.(*wire.Data)
	if !ok {
		x.runs = append(x.runs, frameRun{num: num, count: 1, msg: m})
		return
	}
	n := len(d.Payload)
	if k := len(x.runs) - 1; k >= 0 {
		r := &x.runs[k]
		if r.msg == nil && r.item == int(d.Item) && r.last == r.clen && r.seq+r.count == d.Seq &&
			r.off+int64(r.count)*int64(r.clen) == d.Off && n <= r.clen {
			r.count++
			r.last = n
			return
		}
	}
	x.runs = append(x.runs, frameRun{num: num, count: 1, item: int(d.Item), seq: d.Seq, off: d.Off, clen: n, last: n})
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
	return frameIndex{runs: append([]frameRun(nil), x.runs...), next: x.next}
}
