package desc

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"sort"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// maxLogicals bounds an EBR chain (a loop in a corrupt chain ends here).
const maxLogicals = 256

// maxGPTEntries and maxGPTArray bound the entry array read from a GPT
// header (the usual array is 128 entries of 128 bytes, 16 KiB).
const (
	maxGPTEntries = 4096
	maxGPTArray   = 1 << 20
)

// bad wraps ErrBadTable with a reason.
func bad(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrBadTable, fmt.Sprintf(format, a...))
}

func readAt(r io.ReaderAt, off, n int64) ([]byte, error) {
	b := make([]byte, n)
	if _, err := r.ReadAt(b, off); err != nil && !(err == io.EOF) {
		return nil, fmt.Errorf("desc: read %d bytes at %d: %w", n, off, err)
	} else if err == io.EOF {
		return nil, bad("disk ends before byte %d", off+n)
	}
	return b, nil
}

// ReadTable reads the partition table of a disk or image of size bytes
// from r: a GPT (found at sector 1 with 512- or 4096-byte sectors, the
// backup header used when the primary is damaged) or an MBR with its
// chain of EBRs (read as 512-byte sectors). It returns ErrNoTable when
// sector 0 has no 0x55AA signature, ErrBadTable when the table is
// inconsistent. The plan's parts are in disk order.
func ReadTable(r io.ReaderAt, size int64) (*Plan, error) {
	return ReadTableSector(r, size, 0)
}

// ReadTableSector is ReadTable with a known logical sector size (0 to
// detect: a GPT tells by where its header is, an MBR is read as 512).
func ReadTableSector(r io.ReaderAt, size, sectorSize int64) (*Plan, error) {
	if size < 1024 {
		return nil, fmt.Errorf("%w: disk of %d bytes", ErrNoTable, size)
	}
	mbr, err := readAt(r, 0, 512)
	if err != nil {
		return nil, err
	}
	if mbr[510] != 0x55 || mbr[511] != 0xaa {
		return nil, ErrNoTable
	}
	var ents [4]mbrEntry
	protective := false
	for i := range ents {
		ents[i] = getMBREntry(mbr[446+16*i:])
		if ents[i].typ == 0xee {
			protective = true
		}
	}
	if protective {
		sizes := []int64{512, 4096}
		if sectorSize != 0 {
			sizes = []int64{sectorSize}
		}
		var firstErr error
		for _, ss := range sizes {
			p, err := readGPT(r, size, ss)
			if err == nil {
				return p, nil
			}
			if firstErr == nil {
				firstErr = err
			}
		}
		return nil, firstErr
	}
	ss := sectorSize
	if ss == 0 {
		ss = 512
	}
	return readMBR(r, size, ss, mbr, ents)
}

func readMBR(r io.ReaderAt, size, ss int64, mbr []byte, ents [4]mbrEntry) (*Plan, error) {
	p := &Plan{Table: MBR, SectorSize: ss, DiskSectors: size / ss, DiskID: binary.LittleEndian.Uint32(mbr[440:444])}
	var ext *PlannedPart
	for i, e := range ents {
		if e.typ == 0 || e.sectors == 0 {
			continue
		}
		pp := PlannedPart{Index: i + 1, Start: int64(e.start), Sectors: int64(e.sectors), Type: mbrType(e.typ), Boot: e.boot}
		if pp.Start == 0 || pp.End() > p.DiskSectors {
			return nil, bad("partition %d (sectors %d+%d) outside the disk of %d sectors", pp.Index, pp.Start, pp.Sectors, p.DiskSectors)
		}
		if pp.Type.IsExtended() {
			if ext != nil {
				return nil, bad("two extended partitions (%d and %d)", ext.Index, pp.Index)
			}
			ext = &pp
		}
		p.Parts = append(p.Parts, pp)
	}
	if ext != nil {
		logicals, err := readEBRChain(r, ss, *ext)
		if err != nil {
			return nil, err
		}
		p.Parts = append(p.Parts, logicals...)
	}
	sortParts(p)
	for i := 1; i < len(p.Parts); i++ {
		a, b := p.Parts[i-1], p.Parts[i]
		if b.Start < a.End() && !(a.Type.IsExtended() && b.Logical) {
			return nil, bad("partitions %d and %d overlap", a.Index, b.Index)
		}
	}
	return p, nil
}

// readEBRChain follows the EBRs of extended partition ext.
func readEBRChain(r io.ReaderAt, ss int64, ext PlannedPart) ([]PlannedPart, error) {
	var out []PlannedPart
	ebr := ext.Start
	for n := 0; ; n++ {
		if n >= maxLogicals {
			return nil, bad("EBR chain longer than %d links", maxLogicals)
		}
		b, err := readAt(r, ebr*ss, 512)
		if err != nil {
			return nil, err
		}
		if b[510] != 0x55 || b[511] != 0xaa {
			if n == 0 {
				return nil, nil // extended partition never initialised: no logicals
			}
			return nil, bad("EBR at sector %d has no 0x55AA signature", ebr)
		}
		first, next := getMBREntry(b[446:]), getMBREntry(b[462:])
		if first.typ != 0 && first.sectors != 0 {
			l := PlannedPart{Index: 5 + len(out), Logical: true, Start: ebr + int64(first.start), Sectors: int64(first.sectors), Type: mbrType(first.typ), Boot: first.boot}
			if first.start == 0 || l.Start < ebr || l.End() > ext.End() {
				return nil, bad("logical partition %d (sectors %d+%d) outside its extended partition (%d+%d)", l.Index, l.Start, l.Sectors, ext.Start, ext.Sectors)
			}
			if len(out) > 0 && l.Start < out[len(out)-1].End() {
				return nil, bad("logical partitions %d and %d overlap", l.Index-1, l.Index)
			}
			out = append(out, l)
		}
		if next.typ == 0 || next.sectors == 0 {
			return out, nil
		}
		if !mbrType(next.typ).IsExtended() {
			return nil, bad("EBR at sector %d links with type %#02x, want 0x05", ebr, next.typ)
		}
		nx := ext.Start + int64(next.start)
		if nx <= ebr || nx >= ext.End() {
			return nil, bad("EBR at sector %d links to sector %d, not forward inside the extended partition", ebr, nx)
		}
		ebr = nx
	}
}

// sortParts orders parts by start, each logical after its extended.
func sortParts(p *Plan) {
	sort.SliceStable(p.Parts, func(i, j int) bool { return p.Parts[i].Start < p.Parts[j].Start })
}

func readGPT(r io.ReaderAt, size, ss int64) (*Plan, error) {
	total := size / ss
	p, err := readGPTHeader(r, total, ss, 1)
	if err == nil {
		return p, nil
	}
	if bp, berr := readGPTHeader(r, total, ss, total-1); berr == nil {
		return bp, nil
	}
	return nil, err
}

func readGPTHeader(r io.ReaderAt, total, ss, lba int64) (*Plan, error) {
	if lba < 1 || lba >= total {
		return nil, bad("GPT header sector %d outside the disk", lba)
	}
	h, err := readAt(r, lba*ss, ss)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(h[0:8], []byte(gptSignature)) {
		return nil, bad("no GPT header at sector %d (sector size %d)", lba, ss)
	}
	hsize := binary.LittleEndian.Uint32(h[12:16])
	if hsize < gptHeaderSize || int64(hsize) > ss {
		return nil, bad("GPT header size %d", hsize)
	}
	want := binary.LittleEndian.Uint32(h[16:20])
	hc := append([]byte(nil), h[:hsize]...)
	clear(hc[16:20])
	if got := crc32.ChecksumIEEE(hc); got != want {
		return nil, bad("GPT header at sector %d: CRC32 %08x, stored %08x", lba, got, want)
	}
	if my := int64(binary.LittleEndian.Uint64(h[24:32])); my != lba {
		return nil, bad("GPT header at sector %d says it is at %d", lba, my)
	}
	firstUsable := binary.LittleEndian.Uint64(h[40:48])
	lastUsable := binary.LittleEndian.Uint64(h[48:56])
	arrayLBA := binary.LittleEndian.Uint64(h[72:80])
	num := binary.LittleEndian.Uint32(h[80:84])
	esize := binary.LittleEndian.Uint32(h[84:88])
	if esize < gptEntrySize || esize%8 != 0 || esize > 4096 || num > maxGPTEntries {
		return nil, bad("GPT with %d entries of %d bytes", num, esize)
	}
	if lastUsable >= uint64(total) || firstUsable > lastUsable {
		return nil, bad("GPT usable sectors %d..%d outside the disk of %d sectors", firstUsable, lastUsable, total)
	}
	arrayBytes := int64(num) * int64(esize)
	if arrayBytes > maxGPTArray {
		return nil, bad("GPT entry array of %d bytes (%d entries of %d), more than %d", arrayBytes, num, esize, maxGPTArray)
	}
	if arrayLBA >= uint64(total) || int64(arrayLBA)*ss+arrayBytes > total*ss {
		return nil, bad("GPT entry array at sector %d outside the disk", arrayLBA)
	}
	arr, err := readAt(r, int64(arrayLBA)*ss, arrayBytes)
	if err != nil {
		return nil, err
	}
	if got := crc32.ChecksumIEEE(arr); got != binary.LittleEndian.Uint32(h[88:92]) {
		return nil, bad("GPT entry array CRC32 %08x, stored %08x", got, binary.LittleEndian.Uint32(h[88:92]))
	}
	p := &Plan{Table: GPT, SectorSize: ss, DiskSectors: total}
	copy(p.DiskGUID[:], h[56:72])
	for i := 0; i < int(num); i++ {
		e := arr[i*int(esize):]
		var tg GUID
		copy(tg[:], e[0:16])
		if tg.IsZero() {
			continue
		}
		first := binary.LittleEndian.Uint64(e[32:40])
		lastS := binary.LittleEndian.Uint64(e[40:48])
		if first < firstUsable || lastS > lastUsable || lastS < first {
			return nil, bad("GPT entry %d: sectors %d..%d outside the usable %d..%d", i+1, first, lastS, firstUsable, lastUsable)
		}
		pp := PlannedPart{Index: i + 1, Start: int64(first), Sectors: int64(lastS-first) + 1, Type: gptType(tg)}
		copy(pp.GUID[:], e[16:32])
		pp.Attrs = binary.LittleEndian.Uint64(e[48:56])
		pp.Boot = pp.Attrs&(1<<2) != 0
		var name []uint16
		for k := 0; k < 36; k++ {
			u := binary.LittleEndian.Uint16(e[56+2*k:])
			if u == 0 {
				break
			}
			name = append(name, u)
		}
		pp.Name = string(utf16.Decode(name))
		p.Parts = append(p.Parts, pp)
	}
	sortParts(p)
	for i := 1; i < len(p.Parts); i++ {
		if p.Parts[i].Start < p.Parts[i-1].End() {
			return nil, bad("GPT partitions %d and %d overlap", p.Parts[i-1].Index, p.Parts[i].Index)
		}
	}
	return p, nil
}

// ToDesc turns a plan (usually read from a disk) back into a desc: the
// partitions in disk order with their exact sizes, except that the last
// partition of each container (the disk, the extended partition) becomes
// `fill`, so the desc applies to a disk of another size. Filesystem,
// label and UUID come along when the plan has them (see Probe).
func ToDesc(p *Plan) *Desc {
	d := &Desc{Table: p.Table}
	if p.Table == GPT {
		d.TableLine = 1
	}
	lastPrim, lastLog := -1, -1
	for i, pp := range p.Parts {
		part := Part{Logical: pp.Logical, Type: pp.Type, Boot: pp.Boot,
			Size:  Size{Kind: SizeFixed, Bytes: pp.Sectors * p.SectorSize},
			Label: printable(pp.Label), Mount: printable(pp.Mount), UUID: pp.UUID}
		if pp.UUID != "" && !validFSUUID(pp.UUID) {
			part.UUID = ""
		}
		if name := printable(pp.Name); name != "" && name != part.Label {
			part.Name = name
		}
		if pp.FS != "" && pp.FS != part.defaultFS() {
			part.FS = pp.FS
		}
		if pp.Type.IsExtended() {
			part.Type, _ = LookupType("extended")
			part.FS = ""
		}
		d.Parts = append(d.Parts, part)
		if pp.Logical {
			lastLog = i
		} else {
			lastPrim = i
		}
	}
	if lastPrim >= 0 {
		d.Parts[lastPrim].Size = Fill
	}
	if lastLog >= 0 {
		d.Parts[lastLog].Size = Fill
	}
	// A fixed extended partition must hold its logical partitions as
	// Layout places them (whole MiB, 1 MiB before each for its EBR), even
	// when another tool packed them tighter.
	for i, part := range d.Parts {
		if !part.Type.IsExtended() || part.Size.Kind != SizeFixed {
			continue
		}
		need := int64(0)
		for _, l := range d.Parts[i+1:] {
			if !l.Logical {
				break
			}
			need += MiB
			if l.Size.Kind == SizeFixed {
				need += alignUp(l.Size.Bytes, MiB)
			} else {
				need += MiB
			}
		}
		if need > part.Size.Bytes {
			d.Parts[i].Size.Bytes = need
		}
	}
	return d
}

// printable makes a label or name from a disk writable in a desc: control
// characters and double quotes become '_', and it is cut to 36 UTF-16
// units (a GPT name's room).
func printable(s string) string {
	r := []rune(strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || r == '"' || r == utf8.RuneError {
			return '_'
		}
		return r
	}, s))
	for len(utf16.Encode(r)) > 36 {
		r = r[:len(r)-1]
	}
	return string(r)
}

// defaultFS is what Filesystem returns without an explicit FS.
func (p Part) defaultFS() string {
	q := p
	q.FS = ""
	return q.Filesystem()
}
