package ring

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/herd-cluster/herd/ring/core"
	"github.com/herd-cluster/herd/ring/seal"
	"github.com/herd-cluster/herd/ring/wire"
)

// A journal records, in ReceiverConfig.StateDir, what a node wrote in its
// session, so that a restarted Receive can take the session up again
// without receiving it all: the session, the node's index and the manifest
// (with the source's MAC), then one record per chunk written (item,
// offset, length, and a sum of the bytes: keyed BLAKE3 under a key derived
// from the session key, the session and the node's index, see
// seal.JournalKey; xxh3 without key) and one per item synced and verified
// (its ItemEnd, with the source's MAC). On restart the manifest and item
// ends must carry the source's MAC, and the chunks are read back from the
// sinks and checked against their sums; the first one that differs (or
// cannot be read) ends what the node keeps: a journal that was tampered
// with, or that no longer matches the disk, costs a resend, never a false
// "verified". At the end the source compares the node's digests with its
// own anyway.
//
//	"HERDJNL2" session[16] index u32  manifest frame
//	'D' item u32 off u64 len u32 sum[16]        (a chunk written)
//	'E' item-end frame                          (an item synced)
//
// The file is 0600: it holds the session's data key (in the manifest).

const (
	journalMagic = "HERDJNL2"
	journalName  = "herd-recv.journal"
	recData      = 'D'
	recEnd       = 'E'
	dataRecSize  = 1 + 4 + 8 + 4 + seal.TagSize
)

// ErrJournal is wrapped by every error reading a journal.
var ErrJournal = errors.New("ring: bad journal")

// journalRec is one record: a chunk written, or an item end.
type journalRec struct {
	item int
	off  int64
	n    int
	sum  [seal.TagSize]byte
	end  *wire.ItemEnd
	at   int64 // file offset just after the record
}

// journal is what a journal file holds.
type journal struct {
	session wire.SessionID
	index   uint32
	man     *wire.Manifest
	recs    []journalRec
	head    int64 // file offset after the header
}

// parseJournal reads a journal. A torn last record (a crash while writing
// it) is ignored; anything else malformed is an error naming the offset.
func parseJournal(b []byte) (*journal, error) {
	if len(b) < len(journalMagic)+16+4 || string(b[:len(journalMagic)]) != journalMagic {
		return nil, fmt.Errorf("%w: no journal header", ErrJournal)
	}
	j := &journal{}
	p := len(journalMagic)
	copy(j.session[:], b[p:p+16])
	j.index = binary.LittleEndian.Uint32(b[p+16:])
	p += 20
	m, rest, err := wire.Decode(b[p:])
	if err != nil {
		return nil, fmt.Errorf("%w: manifest at offset %d: %v", ErrJournal, p, err)
	}
	man, ok := m.(*wire.Manifest)
	if !ok || man.Session != j.session || int(j.index) >= len(man.Nodes) {
		return nil, fmt.Errorf("%w: manifest at offset %d does not match the header", ErrJournal, p)
	}
	j.man = man
	p = len(b) - len(rest)
	j.head = int64(p)
	for p < len(b) {
		switch b[p] {
		case recData:
			if len(b)-p < dataRecSize {
				return j, nil // torn
			}
			r := journalRec{
				item: int(binary.LittleEndian.Uint32(b[p+1:])),
				off:  int64(binary.LittleEndian.Uint64(b[p+5:])),
				n:    int(binary.LittleEndian.Uint32(b[p+13:])),
			}
			copy(r.sum[:], b[p+17:p+dataRecSize])
			if r.item >= len(man.Items) || r.off < 0 || r.n <= 0 || r.n > int(man.ChunkSize) {
				return nil, fmt.Errorf("%w: bad chunk record at offset %d", ErrJournal, p)
			}
			p += dataRecSize
			r.at = int64(p)
			j.recs = append(j.recs, r)
		case recEnd:
			m, rest, err := wire.Decode(b[p+1:])
			if errors.Is(err, wire.ErrShort) {
				return j, nil // torn
			}
			ie, ok := m.(*wire.ItemEnd)
			if err != nil || !ok || int(ie.Item) >= len(man.Items) {
				return nil, fmt.Errorf("%w: bad item-end record at offset %d", ErrJournal, p)
			}
			p = len(b) - len(rest)
			j.recs = append(j.recs, journalRec{item: int(ie.Item), end: ie, at: int64(p)})
		default:
			return nil, fmt.Errorf("%w: unknown record %#x at offset %d", ErrJournal, b[p], p)
		}
	}
	return j, nil
}

// journalWriter appends records; used by the sink worker only.
type journalWriter struct {
	f       *os.File
	w       *bufio.Writer
	sums    *seal.Journal
	pending int
	err     error
}

// createJournal starts a new journal for session m as node index.
func createJournal(dir string, index uint32, m *wire.Manifest, sums *seal.Journal) (*journalWriter, error) {
	f, err := os.OpenFile(filepath.Join(dir, journalName), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create journal: %w", err)
	}
	jw := &journalWriter{f: f, w: bufio.NewWriterSize(f, 64<<10), sums: sums}
	var h bytes.Buffer
	h.WriteString(journalMagic)
	h.Write(m.Session[:])
	h.Write(binary.LittleEndian.AppendUint32(nil, index))
	h.Write(wire.Encode(m))
	jw.w.Write(h.Bytes())
	jw.flush()
	return jw, jw.err
}

// reopenJournal appends to an existing journal after its first size bytes.
func reopenJournal(dir string, size int64, sums *seal.Journal) (*journalWriter, error) {
	f, err := os.OpenFile(filepath.Join(dir, journalName), os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return nil, fmt.Errorf("truncate journal: %w", err)
	}
	if _, err := f.Seek(size, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("seek journal: %w", err)
	}
	return &journalWriter{f: f, w: bufio.NewWriterSize(f, 64<<10), sums: sums}, nil
}

func (jw *journalWriter) chunk(item int, off int64, p []byte) {
	var b [dataRecSize]byte
	b[0] = recData
	binary.LittleEndian.PutUint32(b[1:], uint32(item))
	binary.LittleEndian.PutUint64(b[5:], uint64(off))
	binary.LittleEndian.PutUint32(b[13:], uint32(len(p)))
	sum := jw.sums.Sum(uint32(item), off, p)
	copy(b[17:], sum[:])
	jw.w.Write(b[:])
	if jw.pending++; jw.pending >= 16 {
		jw.flush()
	}
}

func (jw *journalWriter) itemEnd(m *wire.ItemEnd) {
	jw.w.WriteByte(recEnd)
	jw.w.Write(wire.Encode(m))
	jw.flush()
}

func (jw *journalWriter) flush() {
	jw.pending = 0
	if err := jw.w.Flush(); err != nil && jw.err == nil {
		jw.err = err
	}
}

func (jw *journalWriter) close() {
	jw.flush()
	jw.f.Close()
}

// restoreNode takes up the session of j again: it opens the sinks, reads
// back every chunk the journal lists and checks it, and feeds the node. It
// returns the node, the open sinks and where the journal's good part ends.
// ok is false when nothing could be restored (start afresh).
func restoreNode(j *journal, cfg ReceiverConfig, nodeCfg core.NodeConfig, items []Item, logf func(string, ...any)) (node *core.Node, sinks []Sink, end int64, ok bool) {
	node = core.NewNode(nodeCfg)
	if err := node.RestoreStart(int(j.index), j.man); err != nil {
		return nil, nil, 0, false
	}
	sinks = make([]Sink, len(items))
	closeAll := func() {
		for _, s := range sinks {
			if s != nil {
				s.Close()
			}
		}
	}
	for i, it := range items {
		it.Keep = true
		s, err := cfg.Open(it)
		if err != nil || s == nil {
			logf("ring: restore: open item %d (%s): %v", i, it.Dest, err)
			closeAll()
			return nil, nil, 0, false
		}
		sinks[i] = s
	}
	end = j.head
	buf := make([]byte, j.man.ChunkSize)
	sums := seal.JournalKey(cfg.Key, j.session, j.index)
	word := seal.SourceKey(cfg.Key, j.session)
	var seq uint64
	for _, r := range j.recs {
		var m wire.Msg
		if r.end != nil {
			if !word.CheckItemEnd(j.session, r.end) {
				logf("ring: restore: the end of item %d in the journal is not the source's; keeping what is before it", r.item)
				break
			}
			m = r.end
		} else {
			ra, isRA := sinks[r.item].(io.ReaderAt)
			if !isRA {
				break
			}
			p := buf[:r.n]
			if n, _ := ra.ReadAt(p, r.off); n < r.n || sums.Sum(uint32(r.item), r.off, p) != r.sum {
				logf("ring: restore: chunk %d (item %d at %d) differs on disk or in the journal; keeping what is before it", seq, r.item, r.off)
				break
			}
			m = &wire.Data{Session: j.session, Item: uint32(r.item), Seq: seq, Off: r.off, Payload: p}
			seq++
		}
		if err := node.RestoreFrame(m); err != nil {
			logf("ring: %v; starting afresh", err)
			closeAll()
			return nil, nil, 0, false
		}
		end = r.at
	}
	return node, sinks, end, true
}
