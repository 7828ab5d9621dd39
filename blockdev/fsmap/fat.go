package fsmap

import (
	"encoding/binary"
	"fmt"
	"io"
)

// fatGeom is the layout of a FAT filesystem from its boot sector.
type fatGeom struct {
	sector    int64
	cluster   int64
	fatOff    int64
	fatBytes  int64
	dataOff   int64
	clusters  int64
	kind      int // 12, 16 or 32
	totalSize int64
}

// parseFATBoot checks the BIOS parameter block in the 512-byte boot sector b.
func parseFATBoot(b []byte) (*fatGeom, error) {
	le := binary.LittleEndian
	if len(b) < 512 || b[510] != 0x55 || b[511] != 0xAA || (b[0] != 0xEB && b[0] != 0xE9) {
		return nil, ErrUnknownFS
	}
	bps := int64(le.Uint16(b[11:]))
	spc := int64(b[13])
	rsvd := int64(le.Uint16(b[14:]))
	nfats := int64(b[16])
	rootEnt := int64(le.Uint16(b[17:]))
	tot := int64(le.Uint16(b[19:]))
	fatSz := int64(le.Uint16(b[22:]))
	if tot == 0 {
		tot = int64(le.Uint32(b[32:]))
	}
	if fatSz == 0 {
		fatSz = int64(le.Uint32(b[36:]))
	}
	switch {
	case bps != 512 && bps != 1024 && bps != 2048 && bps != 4096:
		return nil, ErrUnknownFS
	case spc == 0 || spc&(spc-1) != 0:
		return nil, ErrUnknownFS
	case rsvd == 0 || nfats == 0 || nfats > 4 || fatSz == 0 || tot == 0:
		return nil, ErrUnknownFS
	}
	rootSec := (rootEnt*32 + bps - 1) / bps
	meta := rsvd + nfats*fatSz + rootSec
	if meta >= tot {
		return nil, fmt.Errorf("%w: FAT metadata (%d sectors) fills the volume (%d sectors)", ErrCorrupt, meta, tot)
	}
	g := &fatGeom{
		sector:    bps,
		cluster:   bps * spc,
		fatOff:    rsvd * bps,
		fatBytes:  fatSz * bps,
		dataOff:   meta * bps,
		clusters:  (tot - meta) / spc,
		totalSize: tot * bps,
	}
	switch {
	case g.clusters < 4085:
		g.kind = 12
	case g.clusters < 65525:
		g.kind = 16
	default:
		g.kind = 32
	}
	if need := (g.clusters+2)*int64(g.kind)/8 + 2; need > g.fatBytes {
		return nil, fmt.Errorf("%w: FAT%d table of %d bytes cannot map %d clusters", ErrCorrupt, g.kind, g.fatBytes, g.clusters)
	}
	return g, nil
}

// IsFAT reports whether r starts with a FAT12/16/32 boot sector.
func IsFAT(r io.ReaderAt) bool {
	b := make([]byte, 512)
	if _, err := r.ReadAt(b, 0); err != nil {
		return false
	}
	_, err := parseFATBoot(b)
	return err == nil
}

// FATMap reads the first allocation table of the FAT12/16/32 filesystem in
// r (size bytes, < 0 if unknown) and returns its used ranges: the reserved
// area, the tables and the root directory always, then every cluster whose
// table entry is not zero (free), and anything past the last cluster.
func FATMap(r io.ReaderAt, size int64) (*Map, error) {
	boot := make([]byte, 512)
	if _, err := r.ReadAt(boot, 0); err != nil {
		return nil, fmt.Errorf("read FAT boot sector: %w", err)
	}
	g, err := parseFATBoot(boot)
	if err != nil {
		return nil, err
	}
	if size >= 0 && g.totalSize > size {
		return nil, fmt.Errorf("%w: FAT volume of %d bytes is larger than the %d-byte device", ErrCorrupt, g.totalSize, size)
	}
	if g.fatBytes > 1<<30 {
		return nil, fmt.Errorf("%w: FAT table of %d bytes", ErrCorrupt, g.fatBytes)
	}
	tab := make([]byte, g.fatBytes)
	if _, err := r.ReadAt(tab, g.fatOff); err != nil {
		return nil, fmt.Errorf("read FAT table: %w", err)
	}
	le := binary.LittleEndian
	b := builder{unit: g.cluster}
	b.add(0, g.dataOff)
	for c := int64(2); c < g.clusters+2; c++ {
		var v uint32
		switch g.kind {
		case 12:
			x := uint32(le.Uint16(tab[c+c/2:]))
			if c&1 == 1 {
				v = x >> 4
			} else {
				v = x & 0xFFF
			}
		case 16:
			v = uint32(le.Uint16(tab[2*c:]))
		default:
			v = le.Uint32(tab[4*c:]) & 0x0FFFFFFF
		}
		if v != 0 {
			b.add(g.dataOff+(c-2)*g.cluster, g.cluster)
		}
	}
	end := g.dataOff + g.clusters*g.cluster
	if size < 0 {
		size = g.totalSize
	}
	b.add(end, size-end)
	return &Map{FS: fmt.Sprintf("fat%d", g.kind), BlockSize: g.cluster, Extents: Normalize(b.ext, size)}, nil
}
