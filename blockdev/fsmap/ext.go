package fsmap

import (
	"encoding/binary"
	"fmt"
	"io"
)

// ext2/3/4 on-disk constants (see the kernel's fs/ext4/ext4.h).
const (
	extSuperOff      = 1024
	extMagic         = 0xEF53
	extIncompatMeta  = 0x10 // meta_bg
	extIncompat64    = 0x80
	extIncompatExt   = 0x40 // extents (ext4)
	extIncompatFlex  = 0x200
	extCompatJournal = 0x4
	extROSparse      = 0x1
	extROGdtCsum     = 0x10
	extROMetaCsum    = 0x400
	extCompatSparse2 = 0x200
	extBlockUninit   = 0x2
)

// extSuper is the part of the ext superblock the map needs.
type extSuper struct {
	blocks        uint64
	firstData     uint64
	blockSize     int64
	perGroup      uint64
	inodesPer     uint64
	inodeSize     uint64
	compat        uint32
	incompat      uint32
	roCompat      uint32
	reservedGDT   uint64
	descSize      int64
	backupGroups  [2]uint32
	groups        uint64
	fsName        string
	uninitHonored bool
}

// IsExt reports whether r holds an ext2/3/4 superblock.
func IsExt(r io.ReaderAt) bool {
	var b [2]byte
	if _, err := r.ReadAt(b[:], extSuperOff+0x38); err != nil {
		return false
	}
	return binary.LittleEndian.Uint16(b[:]) == extMagic
}

func parseExtSuper(sb []byte, size int64) (*extSuper, error) {
	le := binary.LittleEndian
	if le.Uint16(sb[0x38:]) != extMagic {
		return nil, ErrUnknownFS
	}
	s := &extSuper{
		blocks:    uint64(le.Uint32(sb[0x4:])),
		firstData: uint64(le.Uint32(sb[0x14:])),
		perGroup:  uint64(le.Uint32(sb[0x20:])),
		inodesPer: uint64(le.Uint32(sb[0x28:])),
		compat:    le.Uint32(sb[0x5C:]),
		incompat:  le.Uint32(sb[0x60:]),
		roCompat:  le.Uint32(sb[0x64:]),
		inodeSize: 128,
		descSize:  32,
	}
	logBS := le.Uint32(sb[0x18:])
	if logBS > 6 { // 1 KiB << 6 = 64 KiB is the largest ext block
		return nil, fmt.Errorf("%w: ext block size 2^(10+%d)", ErrCorrupt, logBS)
	}
	s.blockSize = 1024 << logBS
	if le.Uint32(sb[0x4C:]) >= 1 { // dynamic revision
		s.inodeSize = uint64(le.Uint16(sb[0x58:]))
		s.reservedGDT = uint64(le.Uint16(sb[0xCE:]))
	}
	if s.incompat&extIncompat64 != 0 {
		s.blocks |= uint64(le.Uint32(sb[0x150:])) << 32
		s.descSize = int64(le.Uint16(sb[0xFE:]))
		if s.descSize < 64 || s.descSize > 1024 || s.descSize&(s.descSize-1) != 0 {
			return nil, fmt.Errorf("%w: ext group descriptor size %d", ErrCorrupt, s.descSize)
		}
	}
	if s.incompat&extIncompatMeta != 0 {
		return nil, fmt.Errorf("%w: ext meta_bg", ErrUnsupported)
	}
	s.backupGroups = [2]uint32{le.Uint32(sb[0x24C:]), le.Uint32(sb[0x250:])}
	switch {
	case s.perGroup == 0 || s.perGroup > uint64(s.blockSize)*8:
		return nil, fmt.Errorf("%w: ext blocks per group %d", ErrCorrupt, s.perGroup)
	case s.blocks == 0 || s.firstData >= s.blocks || s.firstData > 1:
		return nil, fmt.Errorf("%w: ext block count %d, first data block %d", ErrCorrupt, s.blocks, s.firstData)
	case s.inodeSize < 128 || s.inodeSize > uint64(s.blockSize):
		return nil, fmt.Errorf("%w: ext inode size %d", ErrCorrupt, s.inodeSize)
	}
	if size >= 0 && (s.blocks > uint64(size)/uint64(s.blockSize)) {
		return nil, fmt.Errorf("%w: ext filesystem of %d blocks of %d bytes is larger than the %d-byte device",
			ErrCorrupt, s.blocks, s.blockSize, size)
	}
	s.groups = (s.blocks - s.firstData + s.perGroup - 1) / s.perGroup
	s.uninitHonored = s.roCompat&(extROGdtCsum|extROMetaCsum) != 0
	switch {
	case s.incompat&(extIncompatExt|extIncompatFlex|extIncompat64) != 0:
		s.fsName = "ext4"
	case s.compat&extCompatJournal != 0:
		s.fsName = "ext3"
	default:
		s.fsName = "ext2"
	}
	return s, nil
}

// hasSuper reports whether group g holds a superblock backup.
func (s *extSuper) hasSuper(g uint64) bool {
	if g == 0 {
		return true
	}
	if s.compat&extCompatSparse2 != 0 {
		return g == uint64(s.backupGroups[0]) || g == uint64(s.backupGroups[1])
	}
	if s.roCompat&extROSparse == 0 || g == 1 {
		return true
	}
	for _, p := range []uint64{3, 5, 7} {
		n := p
		for n < g {
			n *= p
		}
		if n == g {
			return true
		}
	}
	return false
}

// ExtMap reads the block bitmaps of the ext2/3/4 filesystem in r (a device
// or image of size bytes; size < 0 means unknown) and returns its used
// ranges. Metadata (superblocks, group descriptors, bitmaps, inode tables,
// the journal) is always included; so are the first 1 KiB (boot code) and
// anything past the end of the filesystem, because a copy must not lose
// what lies there. Groups whose bitmap is not initialized (BLOCK_UNINIT)
// contribute only their metadata.
func ExtMap(r io.ReaderAt, size int64) (*Map, error) {
	sb := make([]byte, 1024)
	if _, err := r.ReadAt(sb, extSuperOff); err != nil {
		return nil, fmt.Errorf("read ext superblock: %w", err)
	}
	s, err := parseExtSuper(sb, size)
	if err != nil {
		return nil, err
	}
	bs := s.blockSize
	le := binary.LittleEndian
	if s.groups > 1<<24 {
		return nil, fmt.Errorf("%w: ext filesystem with %d groups", ErrCorrupt, s.groups)
	}
	gdtBlocks := (int64(s.groups)*s.descSize + bs - 1) / bs
	gdt := make([]byte, gdtBlocks*bs)
	if _, err := r.ReadAt(gdt, int64(s.firstData+1)*bs); err != nil {
		return nil, fmt.Errorf("read ext group descriptors: %w", err)
	}
	itBlocks := (s.inodesPer*s.inodeSize + uint64(bs) - 1) / uint64(bs)
	var used []Extent
	blk := func(b, n uint64) { // blocks [b, b+n) used
		if n > 0 {
			used = append(used, Extent{int64(b) * bs, int64(n) * bs})
		}
	}
	used = append(used, Extent{0, 2048}) // boot block and primary superblock
	if tail := int64(s.blocks) * bs; size > tail {
		used = append(used, Extent{tail, size - tail})
	}
	bitmap := make([]byte, bs)
	for g := uint64(0); g < s.groups; g++ {
		d := gdt[int64(g)*s.descSize:]
		bb := uint64(le.Uint32(d[0x0:]))
		ib := uint64(le.Uint32(d[0x4:]))
		it := uint64(le.Uint32(d[0x8:]))
		if s.descSize >= 64 {
			bb |= uint64(le.Uint32(d[0x20:])) << 32
			ib |= uint64(le.Uint32(d[0x24:])) << 32
			it |= uint64(le.Uint32(d[0x28:])) << 32
		}
		flags := le.Uint16(d[0x12:])
		if bb >= s.blocks || ib >= s.blocks || it >= s.blocks || it+itBlocks > s.blocks {
			return nil, fmt.Errorf("%w: ext group %d metadata outside the filesystem", ErrCorrupt, g)
		}
		start := s.firstData + g*s.perGroup
		n := min(s.perGroup, s.blocks-start)
		if s.hasSuper(g) {
			blk(start, min(n, 1+uint64(gdtBlocks)+s.reservedGDT))
		}
		blk(bb, 1)
		blk(ib, 1)
		blk(it, itBlocks)
		if s.uninitHonored && flags&extBlockUninit != 0 {
			continue
		}
		if _, err := r.ReadAt(bitmap, int64(bb)*bs); err != nil {
			return nil, fmt.Errorf("read ext block bitmap of group %d: %w", g, err)
		}
		b := builder{unit: bs}
		for i := uint64(0); i < n; {
			// Whole bytes first: most bitmaps are long runs of 0x00 or 0xFF.
			if i&7 == 0 && i+8 <= n {
				switch bitmap[i>>3] {
				case 0x00:
					i += 8
					continue
				case 0xFF:
					b.add(int64(start+i)*bs, 8*bs)
					i += 8
					continue
				}
			}
			if bitmap[i>>3]&(1<<(i&7)) != 0 {
				b.add(int64(start+i)*bs, bs)
			}
			i++
		}
		used = append(used, b.ext...)
	}
	return &Map{FS: s.fsName, BlockSize: bs, Extents: Normalize(used, size)}, nil
}
