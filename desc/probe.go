package desc

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
)

// Probe fills FS, Label and UUID of each partition of p by reading the
// filesystem superblock at the partition's offset in r: ext2/3/4, xfs,
// vfat and Linux swap are recognised; any other partition gets FS
// "none" (herd will not format what it does not know).
func Probe(r io.ReaderAt, p *Plan) {
	for i := range p.Parts {
		pp := &p.Parts[i]
		if pp.Type.IsExtended() {
			continue
		}
		fs, label, uuid := ProbeFS(io.NewSectionReader(r, pp.Offset(p.SectorSize), pp.Bytes(p.SectorSize)))
		if fs == "" {
			fs = "none"
		}
		pp.FS, pp.Label, pp.UUID = fs, label, uuid
	}
}

// ProbeFS recognises the filesystem at the start of r and returns its
// desc name (ext2, ext3, ext4, xfs, vfat, swap), label and UUID, or ""
// when it knows none.
func ProbeFS(r io.ReaderAt) (fs, label, uuid string) {
	b := make([]byte, 8192)
	n, _ := r.ReadAt(b, 0)
	b = b[:n]
	cstr := func(x []byte) string {
		if i := bytes.IndexByte(x, 0); i >= 0 {
			x = x[:i]
		}
		return strings.TrimRight(string(x), " ")
	}
	guid := func(x []byte) string {
		return fmt.Sprintf("%x-%x-%x-%x-%x", x[0:4], x[4:6], x[6:8], x[8:10], x[10:16])
	}
	// ext2/3/4: superblock at 1024, magic 0xEF53 at 0x38.
	if len(b) >= 2048 && binary.LittleEndian.Uint16(b[1024+0x38:]) == 0xef53 {
		sb := b[1024:]
		compat := binary.LittleEndian.Uint32(sb[0x5c:])
		incompat := binary.LittleEndian.Uint32(sb[0x60:])
		roCompat := binary.LittleEndian.Uint32(sb[0x64:])
		fs = "ext2"
		if compat&0x4 != 0 { // has_journal
			fs = "ext3"
		}
		if incompat&^0x6 != 0 || roCompat&^0x3 != 0 { // extents, 64bit, flex_bg, huge_file…
			fs = "ext4"
		}
		return fs, cstr(sb[0x78:0x88]), guid(sb[0x68:0x78])
	}
	// xfs: "XFSB" at 0, uuid at 32, label at 108.
	if len(b) >= 120 && string(b[0:4]) == "XFSB" {
		return "xfs", cstr(b[108:120]), guid(b[32:48])
	}
	// swap: "SWAPSPACE2" at the end of the first page (4 KiB pages).
	if len(b) >= 4096 && string(b[4096-10:4096]) == "SWAPSPACE2" {
		return "swap", cstr(b[1024+28 : 1024+44]), guid(b[1024+12 : 1024+28])
	}
	// vfat: boot sector signature and "FAT" in the type field.
	if len(b) >= 512 && b[510] == 0x55 && b[511] == 0xaa {
		serial := func(x []byte) string {
			v := binary.LittleEndian.Uint32(x)
			return fmt.Sprintf("%04X-%04X", v>>16, v&0xffff)
		}
		lbl := func(x []byte) string {
			l := cstr(x)
			if l == "NO NAME" {
				return ""
			}
			return l
		}
		if string(b[82:87]) == "FAT32" {
			return "vfat", lbl(b[71:82]), serial(b[67:71])
		}
		if string(b[54:57]) == "FAT" {
			return "vfat", lbl(b[43:54]), serial(b[39:43])
		}
	}
	return "", "", ""
}
