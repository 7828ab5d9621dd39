// Package cpio reads cpio archives in the three formats GNU cpio writes:
// "newc" (SVR4, magic 070701, and its "crc" variant 070702), "odc"
// (POSIX.1 portable ASCII, magic 070707) and the old binary format (GNU
// cpio's default, a 16-bit 070707 in either byte order). It only reads; it
// never touches the filesystem.
//
// Usage:
//
//	cr := cpio.NewReader(f)
//	for {
//		h, err := cr.Next()
//		if err == io.EOF { break }
//		if err != nil { return err }
//		io.Copy(dst, cr) // the entry's data (empty for symlinks: see Linkname)
//	}
//
// Public: herd's one cpio reader (cooking and the initramfs tools use it).
package cpio

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
)

// Format is a cpio header format.
type Format int

// The formats Reader understands.
const (
	FormatNewc  Format = iota + 1 // "070701"
	FormatCRC                     // "070702", newc with a checksum
	FormatODC                     // "070707" ASCII octal
	FormatBinLE                   // old binary, little-endian
	FormatBinBE                   // old binary, big-endian
)

func (f Format) String() string {
	switch f {
	case FormatNewc:
		return "newc"
	case FormatCRC:
		return "crc"
	case FormatODC:
		return "odc"
	case FormatBinLE:
		return "bin-le"
	case FormatBinBE:
		return "bin-be"
	}
	return "unknown"
}

// File type bits of Header.Mode (as in stat(2)).
const (
	TypeMask   = 0o170000
	TypeSocket = 0o140000
	TypeLink   = 0o120000 // symbolic link
	TypeReg    = 0o100000
	TypeBlock  = 0o060000
	TypeDir    = 0o040000
	TypeChar   = 0o020000
	TypeFifo   = 0o010000
)

// Limits that keep a hostile archive from exhausting memory.
const (
	MaxNameLen = 4096
	MaxLinkLen = 4096
)

// Errors returned by Reader.
var (
	// ErrHeader means a header is malformed; the message says where.
	ErrHeader = errors.New("cpio: invalid header")
)

// Header describes one archive entry.
type Header struct {
	Name     string
	Mode     uint32 // type and permission bits, as in stat(2)
	UID, GID int
	Nlink    int
	ModTime  time.Time
	Size     int64 // data bytes (for symlinks: the target's length)
	Dev      uint64
	Ino      uint64
	DevMajor uint32 // device number of a block or character device
	DevMinor uint32
	Linkname string // symlink target (read from the data)
	Format   Format
	Offset   int64 // archive offset of the header, for error messages
}

// Reader reads entries one after the other. It is not safe for concurrent
// use.
type Reader struct {
	r      *bufio.Reader
	off    int64 // bytes consumed from r
	remain int64 // data bytes of the current entry not yet read
	pad    int64 // padding after the current entry's data
	done   bool
	err    error
}

// NewReader returns a Reader over r.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, 64<<10)}
}

func (cr *Reader) readFull(p []byte) error {
	n, err := io.ReadFull(cr.r, p)
	cr.off += int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

func (cr *Reader) skip(n int64) error {
	m, err := cr.r.Discard(int(n))
	cr.off += int64(m)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// Next advances to the next entry, skipping the unread data of the
// current one. It returns io.EOF after the TRAILER!!! entry.
func (cr *Reader) Next() (*Header, error) {
	if cr.err != nil {
		return nil, cr.err
	}
	h, err := cr.next()
	if err != nil {
		cr.err = err
	}
	return h, err
}

func (cr *Reader) next() (*Header, error) {
	for cr.remain > 0 {
		n := min(cr.remain, 1<<30)
		if err := cr.skip(n); err != nil {
			return nil, fmt.Errorf("cpio: skip entry data: %w", err)
		}
		cr.remain -= n
	}
	if err := cr.skip(cr.pad); err != nil {
		return nil, fmt.Errorf("cpio: skip padding: %w", err)
	}
	cr.pad = 0
	start := cr.off
	var magic [6]byte
	n, err := io.ReadFull(cr.r, magic[:2])
	cr.off += int64(n)
	if err == io.EOF {
		return nil, fmt.Errorf("%w at offset %d: archive ends without TRAILER!!!", ErrHeader, start)
	}
	if err != nil {
		return nil, fmt.Errorf("cpio: read header at offset %d: %w", start, err)
	}
	var h *Header
	var nameLen int64
	switch {
	case magic[0] == 0xC7 && magic[1] == 0x71:
		h, nameLen, err = cr.readBin(binary.LittleEndian, FormatBinLE)
	case magic[0] == 0x71 && magic[1] == 0xC7:
		h, nameLen, err = cr.readBin(binary.BigEndian, FormatBinBE)
	default:
		if err = cr.readFull(magic[2:]); err != nil {
			return nil, fmt.Errorf("cpio: read header at offset %d: %w", start, err)
		}
		switch string(magic[:]) {
		case "070701":
			h, nameLen, err = cr.readNewc(FormatNewc)
		case "070702":
			h, nameLen, err = cr.readNewc(FormatCRC)
		case "070707":
			h, nameLen, err = cr.readODC()
		default:
			return nil, fmt.Errorf("%w at offset %d: unknown magic %q", ErrHeader, start, magic[:])
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w at offset %d: %v", ErrHeader, start, err)
	}
	h.Offset = start
	if nameLen < 1 || nameLen > MaxNameLen+1 {
		return nil, fmt.Errorf("%w at offset %d: name length %d", ErrHeader, start, nameLen)
	}
	if h.Size < 0 {
		return nil, fmt.Errorf("%w at offset %d: size %d", ErrHeader, start, h.Size)
	}
	name := make([]byte, nameLen)
	if err := cr.readFull(name); err != nil {
		return nil, fmt.Errorf("cpio: read name at offset %d: %w", start, err)
	}
	if name[nameLen-1] != 0 {
		return nil, fmt.Errorf("%w at offset %d: name is not NUL-terminated", ErrHeader, start)
	}
	h.Name = string(name[:nameLen-1])
	align := int64(1)
	switch h.Format {
	case FormatNewc, FormatCRC:
		align = 4
	case FormatBinLE, FormatBinBE:
		align = 2
	}
	if err := cr.skip(padTo(cr.off-start, align)); err != nil {
		return nil, fmt.Errorf("cpio: read name padding at offset %d: %w", start, err)
	}
	cr.remain = h.Size
	cr.pad = padTo(h.Size, align)
	if h.Name == "TRAILER!!!" {
		cr.done = true
		return nil, io.EOF
	}
	if h.Mode&TypeMask == TypeLink {
		if h.Size > MaxLinkLen {
			return nil, fmt.Errorf("%w at offset %d: symlink %q target of %d bytes", ErrHeader, start, h.Name, h.Size)
		}
		b := make([]byte, h.Size)
		if _, err := io.ReadFull(cr, b); err != nil {
			return nil, fmt.Errorf("cpio: read symlink %q target: %w", h.Name, err)
		}
		h.Linkname = string(b)
	}
	return h, nil
}

func padTo(n, align int64) int64 { return (align - n%align) % align }

// Read reads the current entry's data.
func (cr *Reader) Read(p []byte) (int, error) {
	if cr.remain <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > cr.remain {
		p = p[:cr.remain]
	}
	n, err := cr.r.Read(p)
	cr.off += int64(n)
	cr.remain -= int64(n)
	if err == io.EOF && cr.remain > 0 {
		err = io.ErrUnexpectedEOF
	}
	if err == io.EOF {
		err = nil
	}
	return n, err
}

func (cr *Reader) readNewc(f Format) (*Header, int64, error) {
	var b [104]byte
	if err := cr.readFull(b[:]); err != nil {
		return nil, 0, err
	}
	var v [13]uint64
	for i := range v {
		x, err := strconv.ParseUint(string(b[i*8:i*8+8]), 16, 32)
		if err != nil {
			return nil, 0, fmt.Errorf("newc field %d: %q is not hexadecimal", i, b[i*8:i*8+8])
		}
		v[i] = x
	}
	h := &Header{
		Ino: v[0], Mode: uint32(v[1]), UID: int(v[2]), GID: int(v[3]), Nlink: int(v[4]),
		ModTime: time.Unix(int64(v[5]), 0), Size: int64(v[6]),
		Dev:      v[7]<<32 | v[8],
		DevMajor: uint32(v[9]), DevMinor: uint32(v[10]),
		Format: f,
	}
	return h, int64(v[11]), nil
}

func (cr *Reader) readODC() (*Header, int64, error) {
	var b [70]byte
	if err := cr.readFull(b[:]); err != nil {
		return nil, 0, err
	}
	widths := []int{6, 6, 6, 6, 6, 6, 6, 11, 6, 11}
	var v [10]uint64
	pos := 0
	for i, w := range widths {
		x, err := strconv.ParseUint(string(b[pos:pos+w]), 8, 64)
		if err != nil {
			return nil, 0, fmt.Errorf("odc field %d: %q is not octal", i, b[pos:pos+w])
		}
		v[i] = x
		pos += w
	}
	rdev := v[6]
	h := &Header{
		Dev: v[0], Ino: v[1], Mode: uint32(v[2]), UID: int(v[3]), GID: int(v[4]), Nlink: int(v[5]),
		DevMajor: uint32(rdev >> 8 & 0xFFF), DevMinor: uint32(rdev&0xFF | rdev>>12&^0xFF),
		ModTime: time.Unix(int64(v[7]), 0), Size: int64(v[9]), Format: FormatODC,
	}
	if v[9] > 1<<62 {
		return nil, 0, fmt.Errorf("odc size %d", v[9])
	}
	return h, int64(v[8]), nil
}

func (cr *Reader) readBin(bo binary.ByteOrder, f Format) (*Header, int64, error) {
	var b [24]byte
	if err := cr.readFull(b[:]); err != nil {
		return nil, 0, err
	}
	// Words: dev ino mode uid gid nlink rdev mtime[2] namesize filesize[2];
	// 32-bit values store their high word first.
	w := func(i int) uint64 { return uint64(bo.Uint16(b[i*2:])) }
	rdev := w(6)
	h := &Header{
		Dev: w(0), Ino: w(1), Mode: uint32(w(2)), UID: int(w(3)), GID: int(w(4)), Nlink: int(w(5)),
		DevMajor: uint32(rdev >> 8), DevMinor: uint32(rdev & 0xFF),
		ModTime: time.Unix(int64(w(7)<<16|w(8)), 0),
		Size:    int64(w(10)<<16 | w(11)),
		Format:  f,
	}
	return h, int64(w(9)), nil
}
