package desc

import (
	"encoding/binary"
	"fmt"
)

// Write is a run of bytes to write at Offset of the target disk.
type Write struct {
	Offset int64
	Bytes  []byte
	What   string // what the bytes are, for dry runs: "MBR", "EBR of partition 5"…
}

// Encode returns the writes that put p's table on a disk: EncodeMBR or
// EncodeGPT by p.Table.
func (p *Plan) Encode() ([]Write, error) {
	if p.Table == GPT {
		return p.EncodeGPT()
	}
	return p.EncodeMBR()
}

// mbrEntry is one 16-byte MBR partition entry.
type mbrEntry struct {
	boot    bool
	typ     byte
	start   uint32 // LBA, relative to base in an EBR
	sectors uint32
	base    int64 // absolute LBA start is relative to (CHS fields are absolute)
}

// chs encodes an LBA as cylinder/head/sector with the 255×63 geometry
// every tool uses, or the 1023/254/63 "beyond CHS" marker.
func chs(lba int64) [3]byte {
	const heads, spt = 255, 63
	if lba >= 1024*heads*spt {
		return [3]byte{0xfe, 0xff, 0xff}
	}
	c := lba / (heads * spt)
	h := (lba / spt) % heads
	s := lba%spt + 1
	return [3]byte{byte(h), byte(s) | byte(c>>8)<<6, byte(c)}
}

func (e mbrEntry) put(b []byte) {
	if e.typ == 0 {
		clear(b[:16])
		return
	}
	if e.boot {
		b[0] = 0x80
	}
	first := chs(e.base + int64(e.start))
	last := chs(e.base + int64(e.start) + int64(e.sectors) - 1)
	copy(b[1:4], first[:])
	b[4] = e.typ
	copy(b[5:8], last[:])
	binary.LittleEndian.PutUint32(b[8:12], e.start)
	binary.LittleEndian.PutUint32(b[12:16], e.sectors)
}

func getMBREntry(b []byte) mbrEntry {
	return mbrEntry{
		boot:    b[0]&0x80 != 0,
		typ:     b[4],
		start:   binary.LittleEndian.Uint32(b[8:12]),
		sectors: binary.LittleEndian.Uint32(b[12:16]),
	}
}

// mbrSector returns a 512-byte MBR/EBR sector (padded to ss) with the
// given entries, disk id and 0x55AA signature. The boot code area is zero.
func mbrSector(ss int64, id uint32, entries ...mbrEntry) []byte {
	b := make([]byte, ss)
	binary.LittleEndian.PutUint32(b[440:444], id)
	for i, e := range entries {
		e.put(b[446+16*i:])
	}
	b[510], b[511] = 0x55, 0xaa
	return b
}

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidPlan, fmt.Sprintf(format, a...))
}

// check validates what both encoders need: sane sector size, parts
// inside the disk, in order, without overlap.
func (p *Plan) check() error {
	if p.SectorSize < 512 || p.SectorSize > 4096 || p.SectorSize&(p.SectorSize-1) != 0 {
		return invalid("sector size %d", p.SectorSize)
	}
	if p.DiskSectors < 4 {
		return invalid("disk of %d sectors", p.DiskSectors)
	}
	return nil
}

// EncodeMBR returns the MBR sector and one EBR per logical partition
// (the EBR sits in the sector where the logical's 1 MiB gap starts, the
// chain links each EBR to the next as Linux and fdisk do). It also
// zeroes sector 1 so that a stale GPT header cannot be mistaken for the
// table. The boot code area of the MBR is left zero: install a boot
// loader after. Nothing is written; all checks run before any bytes are
// returned.
func (p *Plan) EncodeMBR() ([]Write, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	ss := p.SectorSize
	var prim []mbrEntry
	var ext *PlannedPart
	var logicals []PlannedPart
	prevEnd := int64(1)
	for i, pp := range p.Parts {
		if pp.Type.MBR == 0 {
			return nil, invalid("partition %d: type %s has no MBR code", pp.Index, pp.Type.Name)
		}
		if pp.Sectors <= 0 || pp.Start <= 0 || pp.End() > p.DiskSectors || pp.End() > 1<<32 {
			return nil, invalid("partition %d: sectors %d+%d outside the disk or beyond MBR's 2^32 sectors", pp.Index, pp.Start, pp.Sectors)
		}
		if pp.Logical {
			if ext == nil {
				return nil, invalid("partition %d: logical without extended", pp.Index)
			}
			logicals = append(logicals, pp)
			continue
		}
		if pp.Start < prevEnd {
			return nil, invalid("partition %d overlaps the one before it", pp.Index)
		}
		prevEnd = pp.End()
		if pp.Type.IsExtended() {
			if ext != nil {
				return nil, invalid("two extended partitions")
			}
			ext = &p.Parts[i]
		}
		prim = append(prim, mbrEntry{boot: pp.Boot, typ: pp.Type.MBR, start: uint32(pp.Start), sectors: uint32(pp.Sectors)})
	}
	if len(prim) > 4 {
		return nil, invalid("%d primary partitions, an MBR holds 4", len(prim))
	}
	writes := []Write{
		{Offset: 0, Bytes: mbrSector(ss, p.DiskID, prim...), What: "MBR"},
		{Offset: ss, Bytes: make([]byte, ss), What: "zeros over any old GPT header"},
	}
	if ext == nil {
		return writes, nil
	}
	// EBR chain: EBR k sits just before logical k (at least one sector
	// before it); its second entry points at EBR k+1, relative to the
	// extended partition's start.
	ebrs := make([]int64, len(logicals))
	prev := ext.Start
	for k, l := range logicals {
		ebr := prev
		if k == 0 {
			ebr = ext.Start
		}
		if l.Start <= ebr || l.End() > ext.End() {
			return nil, invalid("logical partition %d (sectors %d+%d) does not fit after its EBR at %d inside the extended partition", l.Index, l.Start, l.Sectors, ebr)
		}
		ebrs[k] = ebr
		prev = l.End()
	}
	if len(logicals) == 0 {
		// An empty chain: one EBR with no entries.
		return append(writes, Write{Offset: ext.Start * ss, Bytes: mbrSector(ss, 0), What: "empty EBR"}), nil
	}
	for k, l := range logicals {
		first := mbrEntry{boot: l.Boot, typ: l.Type.MBR, start: uint32(l.Start - ebrs[k]), sectors: uint32(l.Sectors), base: ebrs[k]}
		var next mbrEntry
		if k+1 < len(logicals) {
			n := logicals[k+1]
			next = mbrEntry{typ: 0x05, start: uint32(ebrs[k+1] - ext.Start), sectors: uint32(n.End() - ebrs[k+1]), base: ext.Start}
		}
		writes = append(writes, Write{Offset: ebrs[k] * ss, Bytes: mbrSector(ss, 0, first, next), What: fmt.Sprintf("EBR of partition %d", l.Index)})
	}
	return writes, nil
}
