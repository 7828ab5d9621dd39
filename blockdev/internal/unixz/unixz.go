// Package unixz reads files made by the Unix compress(1) program (".Z",
// magic 1F 9D). Its LZW differs from the standard library's compress/lzw:
// codes grow from 9 bits up to a maximum given in the header, code 256
// clears the table in block mode, and the compressor emits codes in groups
// of eight, so the reader skips the rest of a group whenever the code width
// changes or the table is cleared.
//
// Usage:
//
//	f, _ := os.Open("image.Z")
//	zr, err := unixz.NewReader(f)
//	if err != nil { ... }
//	io.Copy(dst, zr)
//
// Internal to blockdev (its decompressor for .Z); not an API.
package unixz

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"
)

// Errors returned by the reader.
var (
	// ErrHeader means the stream does not start with the compress magic or
	// declares an impossible code width.
	ErrHeader = errors.New("unixz: invalid .Z header")
	// ErrCorrupt means a code refers to a table entry that cannot exist.
	ErrCorrupt = errors.New("unixz: corrupt .Z data")
)

const (
	initBits = 9
	clear    = 256
)

// Reader decompresses a .Z stream. It is not safe for concurrent use.
type Reader struct {
	r        *bufio.Reader
	maxBits  uint
	block    bool
	maxMax   int // 1 << maxBits
	nBits    uint
	maxCode  int
	freeEnt  int
	clearFlg bool

	// current group of codes
	buf    [16]byte
	offset int // bit offset in buf
	size   int // usable bits in buf
	eof    bool

	prefix []uint16
	suffix []byte
	length []uint32 // string length of each code
	out    []byte   // decoded bytes; out[pos:] not yet returned
	pos    int
	old    int
	fin    byte
	start  bool
	err    error
}

// NewReader reads the 3-byte header from r and returns a Reader.
func NewReader(r io.Reader) (*Reader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var h [3]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrHeader, err)
	}
	if h[0] != 0x1F || h[1] != 0x9D {
		return nil, fmt.Errorf("%w: magic %02x %02x", ErrHeader, h[0], h[1])
	}
	maxBits := uint(h[2] & 0x1F)
	if maxBits < initBits || maxBits > 16 {
		return nil, fmt.Errorf("%w: %d-bit codes", ErrHeader, maxBits)
	}
	z := &Reader{
		r:       br,
		maxBits: maxBits,
		block:   h[2]&0x80 != 0,
		maxMax:  1 << maxBits,
		nBits:   initBits,
		maxCode: 1<<initBits - 1,
		prefix:  make([]uint16, 1<<maxBits),
		suffix:  make([]byte, 1<<maxBits),
		length:  make([]uint32, 1<<maxBits),
		start:   true,
	}
	for i := 0; i < 256; i++ {
		z.suffix[i] = byte(i)
		z.length[i] = 1
	}
	z.freeEnt = 256
	if z.block {
		z.freeEnt = 257
	}
	return z, nil
}

// code returns the next code, or -1 at the end of the input.
func (z *Reader) code() (int, error) {
	if z.clearFlg || z.offset >= z.size || z.freeEnt > z.maxCode {
		if z.freeEnt > z.maxCode {
			z.nBits++
			if z.nBits == z.maxBits {
				z.maxCode = z.maxMax
			} else {
				z.maxCode = 1<<z.nBits - 1
			}
		}
		if z.clearFlg {
			z.nBits = initBits
			z.maxCode = 1<<initBits - 1
			z.clearFlg = false
		}
		if z.eof {
			return -1, nil
		}
		n, err := io.ReadFull(z.r, z.buf[:z.nBits])
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			z.eof = true
		} else if err != nil {
			return 0, err
		}
		if n == 0 {
			return -1, nil
		}
		z.offset = 0
		z.size = n*8 - int(z.nBits-1)
		if z.size <= 0 {
			return -1, nil
		}
	}
	// Gather nBits bits, least significant first, starting at bit offset.
	var v uint32
	pos := z.offset >> 3
	for i := 0; i < 4 && pos+i < len(z.buf); i++ {
		v |= uint32(z.buf[pos+i]) << (8 * i)
	}
	c := int(v>>(uint(z.offset)&7)) & (1<<z.nBits - 1)
	z.offset += int(z.nBits)
	return c, nil
}

// step decodes one code into z.out. It returns io.EOF at the end.
func (z *Reader) step() error {
	c, err := z.code()
	if err != nil {
		return err
	}
	if c < 0 {
		return io.EOF
	}
	if z.start {
		if c >= 256 {
			return fmt.Errorf("%w: first code %d is not a literal", ErrCorrupt, c)
		}
		z.start = false
		z.old, z.fin = c, byte(c)
		z.out = append(z.out, byte(c))
		return nil
	}
	if c == clear && z.block {
		z.clearFlg = true
		z.freeEnt = 256
		if c, err = z.code(); err != nil {
			return err
		}
		if c < 0 {
			return io.EOF
		}
	}
	in := c
	kwk := false
	if c >= z.freeEnt {
		if c > z.freeEnt {
			return fmt.Errorf("%w: code %d beyond table end %d", ErrCorrupt, c, z.freeEnt)
		}
		kwk, c = true, z.old // the string of the previous code plus its first byte
	}
	// Write the string of c backwards straight into the output.
	n := int(z.length[c])
	at := len(z.out)
	total := n
	if kwk {
		total++
	}
	z.out = slices.Grow(z.out, total)[:at+total]
	i := at + n - 1
	for c >= 256 {
		if i <= at {
			return fmt.Errorf("%w: code chain longer than its length", ErrCorrupt)
		}
		z.out[i] = z.suffix[c]
		c = int(z.prefix[c])
		i--
	}
	if i != at {
		return fmt.Errorf("%w: code chain shorter than its length", ErrCorrupt)
	}
	z.out[at] = byte(c)
	z.fin = byte(c)
	if kwk {
		z.out[at+n] = z.fin
	}
	if e := z.freeEnt; e < z.maxMax {
		z.prefix[e] = uint16(z.old)
		z.suffix[e] = z.fin
		z.length[e] = z.length[z.old] + 1
		z.freeEnt = e + 1
	}
	z.old = in
	return nil
}

// Read implements io.Reader.
func (z *Reader) Read(p []byte) (int, error) {
	if z.pos > 0 {
		// Keep only what is not returned yet, so memory stays at one
		// read plus one string (64 KiB) whatever the output's size.
		k := copy(z.out, z.out[z.pos:])
		z.out, z.pos = z.out[:k], 0
	}
	// Decode until p can be filled (a code adds at most 64 KiB).
	for len(z.out)-z.pos < len(p) && z.err == nil {
		z.err = z.step()
	}
	if z.pos < len(z.out) {
		n := copy(p, z.out[z.pos:])
		z.pos += n
		return n, nil
	}
	return 0, z.err
}
