package desc

import (
	"encoding/binary"
	"hash/crc32"
	"unicode/utf16"
)

// GPT header layout (UEFI spec 5.3.2).
const (
	gptSignature  = "EFI PART"
	gptRevision   = 0x00010000
	gptHeaderSize = 92
	gptEntrySize  = 128
)

// EncodeGPT returns the protective MBR, the primary header and entry
// array (sectors 1 and 2…), and the backup entry array and header at
// the end of the disk, with their CRC32s. Partitions keep their Index
// as entry slot. Nothing is written; all checks run first.
func (p *Plan) EncodeGPT() ([]Write, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	ss := p.SectorSize
	es := gptEntrySectors(ss)
	last := p.DiskSectors - 1
	firstUsable := 2 + es
	lastUsable := last - 1 - es
	if lastUsable < firstUsable {
		return nil, invalid("disk of %d sectors too small for a GPT", p.DiskSectors)
	}
	entries := make([]byte, es*ss)
	used := make(map[int]bool)
	prevEnd := firstUsable
	for _, pp := range p.Parts {
		if pp.Logical || pp.Type.IsExtended() {
			return nil, invalid("partition %d: GPT has no extended or logical partitions", pp.Index)
		}
		if pp.Type.GUID.IsZero() {
			return nil, invalid("partition %d: type %s has no GPT GUID", pp.Index, pp.Type.Name)
		}
		if pp.Index < 1 || pp.Index > maxGPTParts || used[pp.Index] {
			return nil, invalid("partition index %d: want a unique number 1..%d", pp.Index, maxGPTParts)
		}
		used[pp.Index] = true
		if pp.Sectors <= 0 || pp.Start < prevEnd || pp.End()-1 > lastUsable {
			return nil, invalid("partition %d: sectors %d+%d overlap or leave the usable area %d..%d", pp.Index, pp.Start, pp.Sectors, firstUsable, lastUsable)
		}
		prevEnd = pp.End()
		if len(utf16.Encode([]rune(pp.Name))) > 36 {
			return nil, invalid("partition %d: name %q longer than 36 UTF-16 units", pp.Index, pp.Name)
		}
		e := entries[(pp.Index-1)*gptEntrySize:]
		copy(e[0:16], pp.Type.GUID[:])
		copy(e[16:32], pp.GUID[:])
		binary.LittleEndian.PutUint64(e[32:40], uint64(pp.Start))
		binary.LittleEndian.PutUint64(e[40:48], uint64(pp.End()-1))
		attrs := pp.Attrs
		if pp.Boot {
			attrs |= 1 << 2
		}
		binary.LittleEndian.PutUint64(e[48:56], attrs)
		for i, u := range utf16.Encode([]rune(pp.Name)) {
			binary.LittleEndian.PutUint16(e[56+2*i:], u)
		}
	}
	arrayCRC := crc32.ChecksumIEEE(entries[:maxGPTParts*gptEntrySize])

	header := func(my, alt, array int64) []byte {
		h := make([]byte, ss)
		copy(h[0:8], gptSignature)
		binary.LittleEndian.PutUint32(h[8:12], gptRevision)
		binary.LittleEndian.PutUint32(h[12:16], gptHeaderSize)
		binary.LittleEndian.PutUint64(h[24:32], uint64(my))
		binary.LittleEndian.PutUint64(h[32:40], uint64(alt))
		binary.LittleEndian.PutUint64(h[40:48], uint64(firstUsable))
		binary.LittleEndian.PutUint64(h[48:56], uint64(lastUsable))
		copy(h[56:72], p.DiskGUID[:])
		binary.LittleEndian.PutUint64(h[72:80], uint64(array))
		binary.LittleEndian.PutUint32(h[80:84], maxGPTParts)
		binary.LittleEndian.PutUint32(h[84:88], gptEntrySize)
		binary.LittleEndian.PutUint32(h[88:92], arrayCRC)
		binary.LittleEndian.PutUint32(h[16:20], crc32.ChecksumIEEE(h[:gptHeaderSize]))
		return h
	}
	pmbrSectors := min(p.DiskSectors-1, 0xffffffff)
	pmbr := mbrSector(ss, 0, mbrEntry{typ: 0xee, start: 1, sectors: uint32(pmbrSectors)})
	// The protective entry's CHS start is 0/0/2 by convention.
	return []Write{
		{Offset: 0, Bytes: pmbr, What: "protective MBR"},
		{Offset: ss, Bytes: header(1, last, 2), What: "GPT header"},
		{Offset: 2 * ss, Bytes: entries, What: "GPT entries"},
		{Offset: (last - es) * ss, Bytes: entries, What: "backup GPT entries"},
		{Offset: last * ss, Bytes: header(last, 1, last-es), What: "backup GPT header"},
	}, nil
}
