// Package tarstream reads tar archives (V7, ustar, star, GNU and PAX, as
// GNU tar, bsdtar and Go's archive/tar write them) as a stream of headers
// and data, and hands the sparse map of a sparse file to the caller instead
// of expanding its holes: a hole costs nothing to read, whatever its size.
// archive/tar reads holes back as zeros, so a 512-byte header declaring a
// 1 PiB sparse file would cost a petabyte of zeros; here it costs one
// Header.
//
// All four GNU sparse formats are read: the old GNU 'S' entries (with
// extension blocks) and the PAX formats 0.0, 0.1 and 1.0. The reader
// never touches the filesystem and bounds what it keeps in memory (see the
// Max constants).
//
// Usage:
//
//	tr := tarstream.NewReader(r)
//	for {
//		h, err := tr.Next()
//		if err == io.EOF { break }
//		if err != nil { return err }
//		// Regular file: Data() bytes follow, to be placed at
//		// h.Fragments() offsets; the rest of the Size bytes are holes.
//		for _, f := range h.Fragments() {
//			io.Copy(io.NewOffsetWriter(out, f.Off), io.LimitReader(tr, f.Len))
//		}
//		out.Truncate(h.Size)
//	}
//
// Public: a streaming tar reader that keeps sparse maps, used by cooking
// and the file-level method.
package tarstream

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// Type flags (Header.Typeflag), as in archive/tar.
const (
	TypeReg     = '0'
	TypeRegA    = '\x00' // V7 regular file (a directory if the name ends in /)
	TypeLink    = '1'    // hard link
	TypeSymlink = '2'
	TypeChar    = '3'
	TypeBlock   = '4'
	TypeDir     = '5'
	TypeFifo    = '6'
	TypeCont    = '7' // contiguous file: a regular file
	TypeXHeader = 'x' // PAX records for the next entry
	TypeXGlobal = 'g' // PAX records for every following entry
	TypeGNULong = 'L' // GNU long name of the next entry
	TypeGNULink = 'K' // GNU long link name of the next entry
	TypeGNUSp   = 'S' // old GNU sparse file
)

// Limits that keep a hostile archive from exhausting memory.
const (
	// MaxMetaSize bounds a PAX record block or a GNU long name.
	MaxMetaSize = 1 << 20
	// MaxFragments bounds the data fragments of one sparse file.
	MaxFragments = 1 << 18
)

// ErrHeader means a header is malformed; the message says what and at
// which archive offset.
var ErrHeader = errors.New("tarstream: invalid header")

// Fragment is a run of data in a file; what lies between fragments (and
// after the last one, up to Header.Size) is a hole that reads as zeros.
type Fragment struct {
	Off, Len int64
}

// Header describes one archive entry.
type Header struct {
	Name       string
	Linkname   string
	Typeflag   byte
	Mode       int64 // permission and setuid/setgid/sticky bits
	Uid, Gid   int
	Size       int64 // logical size of a regular file (a sparse file's real size)
	ModTime    time.Time
	AccessTime time.Time // zero when the archive has none
	Devmajor   int64
	Devminor   int64
	// PAXRecords holds the PAX records that applied to this entry
	// (global and local), e.g. "SCHILY.xattr.user.k".
	PAXRecords map[string]string
	// Sparse is the data map of a sparse file; nil for any other entry
	// (then its data is Size bytes from offset 0).
	Sparse []Fragment
	// Offset is the archive offset of the entry's first header block.
	Offset int64
}

// Fragments returns where the entry's data goes: the sparse map, or one
// fragment [0, Size) for a dense regular file.
func (h *Header) Fragments() []Fragment {
	if h.Sparse != nil {
		return h.Sparse
	}
	if h.Size == 0 {
		return nil
	}
	return []Fragment{{0, h.Size}}
}

// DataSize is how many data bytes the archive holds for the entry: the sum
// of its fragments. It is what unpacking the entry really writes.
func (h *Header) DataSize() int64 {
	var n int64
	for _, f := range h.Fragments() {
		n += f.Len
	}
	return n
}

// Reader reads entries one after the other. It is not safe for concurrent
// use.
type Reader struct {
	r      io.Reader
	off    int64 // bytes consumed from r
	remain int64 // data bytes of the current entry not yet read
	pad    int64 // padding after the current entry's data
	global map[string]string
	blk    [512]byte
	err    error
}

// NewReader returns a Reader over r.
func NewReader(r io.Reader) *Reader { return &Reader{r: r} }

func (tr *Reader) readFull(p []byte) error {
	n, err := io.ReadFull(tr.r, p)
	tr.off += int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

func (tr *Reader) skip(n int64) error {
	m, err := io.CopyN(io.Discard, tr.r, n)
	tr.off += m
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// Read reads the current entry's data: for a sparse file, the bytes of
// its fragments one after the other (Header.DataSize bytes in all).
func (tr *Reader) Read(p []byte) (int, error) {
	if tr.remain <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > tr.remain {
		p = p[:tr.remain]
	}
	n, err := tr.r.Read(p)
	tr.off += int64(n)
	tr.remain -= int64(n)
	if err == io.EOF {
		if tr.remain > 0 {
			return n, io.ErrUnexpectedEOF
		}
		err = nil
	}
	return n, err
}

// Next advances to the next entry, skipping the unread data of the
// current one. It returns io.EOF at the end of the archive (two zero
// blocks, or the end of the stream where a header would start).
func (tr *Reader) Next() (*Header, error) {
	if tr.err != nil {
		return nil, tr.err
	}
	h, err := tr.next()
	if err != nil {
		tr.err = err
	}
	return h, err
}

func (tr *Reader) errf(at int64, format string, args ...any) error {
	return fmt.Errorf("%w at offset %d: %s", ErrHeader, at, fmt.Sprintf(format, args...))
}

func (tr *Reader) next() (*Header, error) {
	var local map[string]string
	var sp0 []Fragment // PAX 0.0 offset/numbytes pairs, in record order
	var longName, longLink string
	var haveLongName, haveLongLink bool
	start := int64(-1)
	for {
		if err := tr.skip(tr.remain + tr.pad); err != nil {
			return nil, fmt.Errorf("tarstream: skip entry data: %w", err)
		}
		tr.remain, tr.pad = 0, 0
		at := tr.off
		if start < 0 {
			start = at
		}
		n, err := io.ReadFull(tr.r, tr.blk[:])
		tr.off += int64(n)
		if err == io.EOF && start == at {
			return nil, io.EOF
		}
		if err != nil {
			return nil, fmt.Errorf("tarstream: read header at offset %d: %w", at, unexpected(err))
		}
		if tr.blk == [512]byte{} {
			if start != at {
				return nil, tr.errf(at, "end of archive after an extended header")
			}
			// A second zero block, or the end of the stream, ends it.
			n, err := io.ReadFull(tr.r, tr.blk[:])
			tr.off += int64(n)
			if err == io.EOF || (err == nil && tr.blk == [512]byte{}) {
				return nil, io.EOF
			}
			if err != nil {
				return nil, fmt.Errorf("tarstream: read header at offset %d: %w", at+512, unexpected(err))
			}
			return nil, tr.errf(at, "a zero block followed by a header")
		}
		h, size, sp, err := tr.parseBlock(at)
		if err != nil {
			return nil, err
		}
		switch h.Typeflag {
		case TypeXHeader, TypeXGlobal:
			recs, pairs, err := tr.readPAX(at, size)
			if err != nil {
				return nil, err
			}
			if h.Typeflag == TypeXGlobal {
				if tr.global == nil {
					tr.global = map[string]string{}
				}
				for k, v := range recs {
					if len(tr.global) > 1024 {
						return nil, tr.errf(at, "more than 1024 global PAX records")
					}
					tr.global[k] = v
				}
				start = -1 // a global header stands alone
			} else {
				local, sp0 = recs, pairs
			}
			continue
		case TypeGNULong, TypeGNULink:
			if size > MaxMetaSize {
				return nil, tr.errf(at, "GNU long name of %d bytes", size)
			}
			b := make([]byte, size)
			if err := tr.readFull(b); err != nil {
				return nil, fmt.Errorf("tarstream: read GNU long name at offset %d: %w", at, err)
			}
			if err := tr.skip(blockPad(size)); err != nil {
				return nil, fmt.Errorf("tarstream: read GNU long name at offset %d: %w", at, err)
			}
			if h.Typeflag == TypeGNULong {
				longName, haveLongName = cstring(b), true
			} else {
				longLink, haveLongLink = cstring(b), true
			}
			continue
		}
		h.Offset = start
		if haveLongName {
			h.Name = longName
		}
		if haveLongLink {
			h.Linkname = longLink
		}
		recs := merge(tr.global, local)
		if err := h.applyPAX(recs); err != nil {
			return nil, tr.errf(at, "%v", err)
		}
		if v, ok := recs["size"]; ok {
			if size, err = strconv.ParseInt(v, 10, 64); err != nil || size < 0 {
				return nil, tr.errf(at, "PAX size %q", v)
			}
		}
		if h.Typeflag == TypeRegA {
			h.Typeflag = TypeReg
			if strings.HasSuffix(h.Name, "/") {
				h.Typeflag = TypeDir
			}
		}
		if h.Typeflag == TypeCont {
			h.Typeflag = TypeReg
		}
		data := size // bytes of data in the archive
		switch h.Typeflag {
		case TypeLink, TypeSymlink, TypeChar, TypeBlock, TypeDir, TypeFifo:
			data = 0 // header-only: a size field means nothing
		}
		h.Size = data
		tr.remain, tr.pad = data, blockPad(data)
		if sp != nil { // old GNU sparse: parseBlock set the real size
			h.Sparse, h.Size = sp.frags, sp.real
		} else if err := tr.paxSparse(h, recs, sp0, at); err != nil {
			return nil, err
		}
		if h.Sparse != nil {
			if err := checkFragments(h.Sparse, h.Size, tr.remain); err != nil {
				return nil, tr.errf(at, "sparse map of %q: %v", h.Name, err)
			}
		}
		return h, nil
	}
}

// oldSparse is the map and real size of an old GNU sparse file.
type oldSparse struct {
	frags []Fragment
	real  int64
}

// parseBlock decodes the header in tr.blk and returns it with the size
// field. sp is the sparse map of an old GNU sparse file (read with its
// extension blocks, which reuse tr.blk), nil otherwise.
func (tr *Reader) parseBlock(at int64) (h *Header, size int64, sp *oldSparse, err error) {
	b := &tr.blk
	if err := checksum(b); err != nil {
		return nil, 0, nil, tr.errf(at, "%v", err)
	}
	size, err = octalOrBinary(b[124:136])
	if err != nil || size < 0 {
		return nil, 0, nil, tr.errf(at, "size field %q", b[124:136])
	}
	magic, version := string(b[257:263]), string(b[263:265])
	gnu := magic == "ustar " && version == " \x00"
	ustar := magic == "ustar\x00"
	star := ustar && string(b[508:512]) == "tar\x00"
	h = &Header{Name: cstring(b[0:100]), Linkname: cstring(b[157:257]), Typeflag: b[156]}
	fields := []struct {
		name string
		f    []byte
		v    *int64
	}{{"mode", b[100:108], &h.Mode}, {"devmajor", b[329:337], &h.Devmajor}, {"devminor", b[337:345], &h.Devminor}}
	if !ustar && !gnu {
		fields = fields[:1] // V7: no device numbers
	}
	for _, fd := range fields {
		v, err := octalOrBinary(fd.f)
		if err != nil {
			return nil, 0, nil, tr.errf(at, "%s field %q", fd.name, fd.f)
		}
		*fd.v = v
	}
	for _, fd := range []struct {
		name string
		f    []byte
		v    *int
	}{{"uid", b[108:116], &h.Uid}, {"gid", b[116:124], &h.Gid}} {
		v, err := octalOrBinary(fd.f)
		if err != nil || v < 0 || v > math.MaxInt32 {
			return nil, 0, nil, tr.errf(at, "%s field %q", fd.name, fd.f)
		}
		*fd.v = int(v)
	}
	mt, err := octalOrBinary(b[136:148])
	if err != nil {
		return nil, 0, nil, tr.errf(at, "mtime field %q", b[136:148])
	}
	h.ModTime = time.Unix(mt, 0)
	switch {
	case star:
		if p := cstring(b[345:476]); p != "" {
			h.Name = p + "/" + h.Name
		}
	case ustar:
		if p := cstring(b[345:500]); p != "" {
			h.Name = p + "/" + h.Name
		}
	case gnu:
		if b[345] != 0 {
			if t, err := octalOrBinary(b[345:357]); err == nil && t > 0 {
				h.AccessTime = time.Unix(t, 0)
			}
		}
		if h.Typeflag == TypeGNUSp {
			real, err := octalOrBinary(b[483:495])
			if err != nil || real < 0 {
				return nil, 0, nil, tr.errf(at, "sparse real size %q", b[483:495])
			}
			frags, err := tr.oldGNUSparse(at)
			if err != nil {
				return nil, 0, nil, err
			}
			h.Typeflag = TypeReg
			return h, size, &oldSparse{frags, real}, nil
		}
	}
	return h, size, nil, nil
}

// oldGNUSparse reads the sparse map of an old GNU 'S' entry: four
// entries in the header, then 21 per extension block while the
// "isextended" flag is set.
func (tr *Reader) oldGNUSparse(at int64) ([]Fragment, error) {
	sp := []Fragment{} // non-nil: the entry is sparse even without data
	add := func(b []byte, n int) error {
		for i := 0; i < n; i++ {
			e := b[i*24 : i*24+24]
			if e[0] == 0 {
				return nil
			}
			off, err1 := octalOrBinary(e[:12])
			ln, err2 := octalOrBinary(e[12:])
			if err1 != nil || err2 != nil {
				return tr.errf(at, "sparse entry %q", e)
			}
			if len(sp) >= MaxFragments {
				return tr.errf(at, "more than %d sparse fragments", MaxFragments)
			}
			sp = append(sp, Fragment{off, ln})
		}
		return nil
	}
	if err := add(tr.blk[386:482], 4); err != nil {
		return nil, err
	}
	ext := tr.blk[482] != 0
	for ext {
		if err := tr.readFull(tr.blk[:]); err != nil {
			return nil, fmt.Errorf("tarstream: read sparse extension at offset %d: %w", at, err)
		}
		if err := add(tr.blk[:504], 21); err != nil {
			return nil, err
		}
		ext = tr.blk[504] != 0
	}
	return sp, nil
}

// paxSparse recognises the GNU PAX sparse formats 0.0, 0.1 and 1.0 and
// sets h.Sparse, h.Size and h.Name; for 1.0 it reads the map at the start
// of the data.
func (tr *Reader) paxSparse(h *Header, recs map[string]string, sp0 []Fragment, at int64) error {
	major, minor := recs["GNU.sparse.major"], recs["GNU.sparse.minor"]
	var v10 bool
	switch {
	case major == "1" && minor == "0":
		v10 = true
	case major == "0" && (minor == "0" || minor == "1"):
	case major != "" || minor != "":
		return nil // a version nobody writes: leave the entry as it is
	case recs["GNU.sparse.map"] == "" && sp0 == nil:
		return nil // not sparse
	}
	if h.Typeflag != TypeReg {
		return tr.errf(at, "sparse records on a %q entry", h.Typeflag)
	}
	if n := recs["GNU.sparse.name"]; n != "" {
		h.Name = n
	}
	real := recs["GNU.sparse.realsize"]
	if real == "" {
		real = recs["GNU.sparse.size"]
	}
	if real != "" {
		v, err := strconv.ParseInt(real, 10, 64)
		if err != nil || v < 0 {
			return tr.errf(at, "sparse real size %q", real)
		}
		h.Size = v
	}
	switch {
	case v10:
		sp, err := tr.readMap10(at)
		if err != nil {
			return err
		}
		h.Sparse = sp
	case recs["GNU.sparse.map"] != "":
		sp, err := parseMap01(recs["GNU.sparse.map"])
		if err != nil {
			return tr.errf(at, "GNU.sparse.map: %v", err)
		}
		h.Sparse = sp
	default:
		h.Sparse = append([]Fragment{}, sp0...)
	}
	return nil
}

// readMap10 reads a PAX 1.0 sparse map from the entry's data: decimal
// numbers, one per line (a count, then offset and length pairs), padded
// to a block.
func (tr *Reader) readMap10(at int64) ([]Fragment, error) {
	var line []byte
	var nums []int64
	want := int64(-1)
	read := int64(0)
	var b [1]byte
	for want < 0 || int64(len(nums)) < 2*want {
		if tr.remain == 0 {
			return nil, tr.errf(at, "sparse map runs past the entry's data")
		}
		if err := tr.readFull(b[:]); err != nil {
			return nil, fmt.Errorf("tarstream: read sparse map at offset %d: %w", at, err)
		}
		tr.remain--
		read++
		if b[0] != '\n' {
			if len(line) >= 20 || b[0] < '0' || b[0] > '9' {
				return nil, tr.errf(at, "sparse map holds %q", append(line, b[0]))
			}
			line = append(line, b[0])
			continue
		}
		v, err := strconv.ParseInt(string(line), 10, 64)
		if err != nil || v < 0 {
			return nil, tr.errf(at, "sparse map number %q", line)
		}
		line = line[:0]
		if want < 0 {
			if v > MaxFragments {
				return nil, tr.errf(at, "sparse map of %d fragments (at most %d)", v, MaxFragments)
			}
			want = v
			continue
		}
		nums = append(nums, v)
	}
	pad := blockPad(read)
	if pad > tr.remain {
		return nil, tr.errf(at, "sparse map padding runs past the entry's data")
	}
	if err := tr.skip(pad); err != nil {
		return nil, fmt.Errorf("tarstream: read sparse map at offset %d: %w", at, err)
	}
	tr.remain -= pad
	sp := make([]Fragment, 0, want)
	for i := 0; i < len(nums); i += 2 {
		sp = append(sp, Fragment{nums[i], nums[i+1]})
	}
	return sp, nil
}

// parseMap01 parses GNU.sparse.map: "off,len,off,len,...".
func parseMap01(s string) ([]Fragment, error) {
	parts := strings.Split(s, ",")
	if len(parts)%2 != 0 {
		return nil, fmt.Errorf("odd number of values")
	}
	if len(parts)/2 > MaxFragments {
		return nil, fmt.Errorf("%d fragments (at most %d)", len(parts)/2, MaxFragments)
	}
	sp := make([]Fragment, 0, len(parts)/2)
	for i := 0; i < len(parts); i += 2 {
		off, err1 := strconv.ParseInt(parts[i], 10, 64)
		ln, err2 := strconv.ParseInt(parts[i+1], 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("value %q,%q", parts[i], parts[i+1])
		}
		sp = append(sp, Fragment{off, ln})
	}
	return sp, nil
}

// checkFragments checks that fragments are in order, do not overlap, lie
// within size, and hold exactly the data bytes the archive carries.
func checkFragments(sp []Fragment, size, data int64) error {
	var end, sum int64
	for i, f := range sp {
		if f.Off < 0 || f.Len < 0 || f.Off > math.MaxInt64-f.Len {
			return fmt.Errorf("fragment %d (%d+%d) is invalid", i, f.Off, f.Len)
		}
		if f.Off < end {
			return fmt.Errorf("fragment %d at %d overlaps or precedes the one before (ends at %d)", i, f.Off, end)
		}
		if f.Off+f.Len > size {
			return fmt.Errorf("fragment %d (%d+%d) ends past the file's %d bytes", i, f.Off, f.Len, size)
		}
		end = f.Off + f.Len
		sum += f.Len
	}
	if sum != data {
		return fmt.Errorf("fragments hold %d bytes, the archive %d", sum, data)
	}
	return nil
}

// readPAX reads a PAX record block of size bytes. Records are "LEN
// KEY=VALUE\n"; GNU.sparse.offset/numbytes pairs (format 0.0) repeat, so
// they are returned in order apart from the map.
func (tr *Reader) readPAX(at, size int64) (map[string]string, []Fragment, error) {
	if size > MaxMetaSize {
		return nil, nil, tr.errf(at, "PAX header of %d bytes (at most %d)", size, MaxMetaSize)
	}
	b := make([]byte, size)
	if err := tr.readFull(b); err != nil {
		return nil, nil, fmt.Errorf("tarstream: read PAX header at offset %d: %w", at, err)
	}
	if err := tr.skip(blockPad(size)); err != nil {
		return nil, nil, fmt.Errorf("tarstream: read PAX header at offset %d: %w", at, err)
	}
	recs := map[string]string{}
	var pairs []Fragment
	for len(b) > 0 {
		sp := bytes.IndexByte(b, ' ')
		if sp < 1 || sp > 20 {
			return nil, nil, tr.errf(at, "PAX record without a length")
		}
		n, err := strconv.Atoi(string(b[:sp]))
		if err != nil || n <= sp+1 || n > len(b) || b[n-1] != '\n' {
			return nil, nil, tr.errf(at, "PAX record length %q", b[:sp])
		}
		kv := string(b[sp+1 : n-1])
		b = b[n:]
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" || strings.IndexByte(k, 0) >= 0 {
			return nil, nil, tr.errf(at, "PAX record %q", kv)
		}
		switch k {
		case "GNU.sparse.offset":
			off, err := strconv.ParseInt(v, 10, 64)
			if err != nil || len(pairs) >= MaxFragments {
				return nil, nil, tr.errf(at, "PAX record %q", kv)
			}
			pairs = append(pairs, Fragment{Off: off, Len: -1})
		case "GNU.sparse.numbytes":
			ln, err := strconv.ParseInt(v, 10, 64)
			if err != nil || len(pairs) == 0 || pairs[len(pairs)-1].Len != -1 {
				return nil, nil, tr.errf(at, "PAX record %q out of place", kv)
			}
			pairs[len(pairs)-1].Len = ln
		default:
			recs[k] = v
		}
	}
	if k := len(pairs); k > 0 && pairs[k-1].Len == -1 {
		return nil, nil, tr.errf(at, "GNU.sparse.offset without numbytes")
	}
	return recs, pairs, nil
}

// applyPAX sets the header fields PAX records override.
func (h *Header) applyPAX(recs map[string]string) error {
	if len(recs) == 0 {
		return nil
	}
	h.PAXRecords = recs
	for k, v := range recs {
		var err error
		switch k {
		case "path":
			h.Name = v
		case "linkpath":
			h.Linkname = v
		case "uid", "gid":
			var n int64
			n, err = strconv.ParseInt(v, 10, 64)
			if err == nil && (n < 0 || n > math.MaxUint32) {
				err = errors.New("out of range")
			}
			if k == "uid" {
				h.Uid = int(n)
			} else {
				h.Gid = int(n)
			}
		case "mtime":
			h.ModTime, err = paxTime(v)
		case "atime":
			h.AccessTime, err = paxTime(v)
		case "SCHILY.devmajor":
			h.Devmajor, err = strconv.ParseInt(v, 10, 64)
		case "SCHILY.devminor":
			h.Devminor, err = strconv.ParseInt(v, 10, 64)
		}
		if err != nil {
			return fmt.Errorf("PAX record %s=%q: %v", k, v, err)
		}
	}
	return nil
}

// paxTime parses "SECONDS[.FRACTION]".
func paxTime(s string) (time.Time, error) {
	sec, frac, _ := strings.Cut(s, ".")
	neg := strings.HasPrefix(sec, "-")
	n, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	var ns int64
	if frac != "" {
		if len(frac) > 9 {
			frac = frac[:9]
		}
		f, err := strconv.ParseUint(frac, 10, 32)
		if err != nil {
			return time.Time{}, err
		}
		ns = int64(f)
		for i := len(frac); i < 9; i++ {
			ns *= 10
		}
		if neg {
			ns = -ns
		}
	}
	return time.Unix(n, ns), nil
}

func merge(global, local map[string]string) map[string]string {
	if len(global) == 0 {
		return local
	}
	m := make(map[string]string, len(global)+len(local))
	for k, v := range global {
		m[k] = v
	}
	for k, v := range local {
		m[k] = v
	}
	return m
}

// checksum verifies a header's checksum, computed with the field as
// spaces; old tars summed signed bytes.
func checksum(b *[512]byte) error {
	want, err := octalOrBinary(b[148:156])
	if err != nil {
		return fmt.Errorf("checksum field %q", b[148:156])
	}
	var u, s int64
	for i, c := range b {
		if i >= 148 && i < 156 {
			c = ' '
		}
		u += int64(c)
		s += int64(int8(c))
	}
	if want != u && want != s {
		return fmt.Errorf("checksum %d, header sums to %d", want, u)
	}
	return nil
}

// octalOrBinary parses a numeric field: octal text (NUL or space
// padded), or GNU base-256 when the top bit of the first byte is set.
func octalOrBinary(f []byte) (int64, error) {
	if len(f) > 0 && f[0]&0x80 != 0 {
		if f[0]&0x40 != 0 {
			return 0, errors.New("negative base-256 number")
		}
		v := uint64(f[0] & 0x3f)
		for _, c := range f[1:] {
			if v>>55 != 0 {
				return 0, errors.New("base-256 overflow")
			}
			v = v<<8 | uint64(c)
		}
		return int64(v), nil
	}
	s := strings.Trim(string(f), " \x00")
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseUint(s, 8, 63)
	return int64(v), err
}

func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

func blockPad(n int64) int64 { return -n & 511 }

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
