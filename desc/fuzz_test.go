package desc

import (
	"encoding/binary"
	"testing"
)

var fuzzDescSeeds = []string{
	seedKA,
	seedLarge,
	"# KA with typeNN\ntype83 100\ntypeb 200\nextended fill\nlogical type82 fill\n",
	"table gpt\nbios 1M\nesp 512M fs=vfat label=EFI mount=/boot/efi\nlinux 20G fs=xfs label=root mount=/ boot\nswap 5%\nlinux fill fs=ext3 uuid=0b9c1c8e-3b1a-4b6e-9c4d-1b2a3c4d5e6f\n",
	"table gpt\n0FC63DAF-8483-4772-8E79-3D69D8477DE4 50% name=x\nlinux fill\n",
	"linux fill\nswap 500\n",
	"extended 1000\nlogical linux 500\nlogical swap 500\n",
}

// FuzzParse checks Parse never panics, that what it accepts prints back
// to text that parses to the same text, and that layouts of it encode
// and decode to the same sectors.
func FuzzParse(f *testing.F) {
	for _, s := range fuzzDescSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		d, err := Parse(text)
		if err != nil {
			if _, ok := err.(*ParseError); !ok {
				t.Fatalf("Parse error %v is not a *ParseError", err)
			}
			return
		}
		out := d.String()
		d2, err := Parse(out)
		if err != nil {
			t.Fatalf("String() output does not parse: %v\n%s", err, out)
		}
		if d2.String() != out {
			t.Fatalf("String not stable:\n%s\n---\n%s", out, d2.String())
		}
		for _, size := range []int64{64 * MiB, 80e9} {
			p, err := d.Layout(size, 512, fixedRand())
			if err != nil {
				continue
			}
			w, err := p.Encode()
			if err != nil {
				t.Fatalf("a laid-out plan does not encode: %v\n%s", err, text)
			}
			disk := &memDisk{size: size}
			disk.write(w)
			got, err := ReadTable(disk, size)
			if err != nil {
				t.Fatalf("an encoded plan does not decode: %v\n%s", err, text)
			}
			if len(got.Parts) != len(p.Parts) {
				t.Fatalf("decoded %d partitions, laid out %d", len(got.Parts), len(p.Parts))
			}
			for i := range p.Parts {
				if got.Parts[i].Start != p.Parts[i].Start || got.Parts[i].Sectors != p.Parts[i].Sectors {
					t.Fatalf("part %d: decoded %d+%d, laid out %d+%d", i, got.Parts[i].Start, got.Parts[i].Sectors, p.Parts[i].Start, p.Parts[i].Sectors)
				}
			}
		}
	})
}

// fuzzDiskSize is the size of the disks FuzzReadTable builds.
const fuzzDiskSize = 16 * MiB

// encodeRuns serialises writes as [offset u32][len u16][bytes]…, dropping
// all-zero sectors to keep seeds small.
func encodeRuns(ws []Write) []byte {
	var out []byte
	for _, w := range ws {
		for o := 0; o < len(w.Bytes); o += 512 {
			sec := w.Bytes[o:min(o+512, len(w.Bytes))]
			zero := true
			for _, c := range sec {
				if c != 0 {
					zero = false
					break
				}
			}
			if zero {
				continue
			}
			out = binary.LittleEndian.AppendUint32(out, uint32(w.Offset)+uint32(o))
			out = binary.LittleEndian.AppendUint16(out, uint16(len(sec)))
			out = append(out, sec...)
		}
	}
	return out
}

// decodeRuns is the inverse of encodeRuns, tolerant of any input.
func decodeRuns(b []byte) []Write {
	var ws []Write
	for len(b) >= 6 {
		off := int64(binary.LittleEndian.Uint32(b)) % fuzzDiskSize
		n := int(binary.LittleEndian.Uint16(b[4:]))
		b = b[6:]
		n = min(n, len(b), int(fuzzDiskSize-off))
		ws = append(ws, Write{Offset: off, Bytes: b[:n]})
		b = b[n:]
	}
	return ws
}

// FuzzReadTable feeds ReadTable disks made of arbitrary sectors (seeded
// with real MBR/EBR and GPT tables): it must never panic or loop, and a
// table it accepts must lie inside the disk and re-encode to itself.
func FuzzReadTable(f *testing.F) {
	for _, s := range []string{
		"linux 3\nextended fill\nlogical swap 2\nlogical linux fill\n",
		"linux 2 boot\nswap 2\ntype0b 2\nlinux fill\n",
		"table gpt\nbios 1M\nesp 2M label=EFI\nlinux 4M boot\nlinux fill name=var\n",
		"extended fill\n",
	} {
		p, err := mustParseF(s).Layout(fuzzDiskSize, 512, fixedRand())
		if err != nil {
			f.Fatal(err)
		}
		w, err := p.Encode()
		if err != nil {
			f.Fatal(err)
		}
		seed := encodeRuns(w)
		disk := &memDisk{size: fuzzDiskSize}
		disk.write(decodeRuns(seed))
		if _, err := ReadTable(disk, disk.size); err != nil {
			f.Fatalf("seed %q does not decode: %v", s, err)
		}
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		disk := &memDisk{size: fuzzDiskSize}
		disk.write(decodeRuns(data))
		p, err := ReadTable(disk, disk.size)
		if err != nil {
			return
		}
		for _, pp := range p.Parts {
			if pp.Start < 1 || pp.Sectors < 1 || pp.End() > p.DiskSectors {
				t.Fatalf("accepted partition %d at %d+%d outside a disk of %d sectors", pp.Index, pp.Start, pp.Sectors, p.DiskSectors)
			}
		}
		Probe(disk, p)
		if n := len(p.Parts); n >= 1 && n <= maxGPTParts {
			text := ToDesc(p).String()
			if _, err := Parse(text); err != nil {
				t.Fatalf("ToDesc of a decoded table does not parse: %v\n%s", err, text)
			}
		}
		w, err := p.Encode()
		if err != nil {
			return // decodable but not in herd's canonical form
		}
		again := &memDisk{size: fuzzDiskSize}
		again.write(w)
		q, err := ReadTable(again, again.size)
		if err != nil {
			t.Fatalf("re-encoded table does not decode: %v", err)
		}
		if len(q.Parts) != len(p.Parts) {
			t.Fatalf("re-encoded table has %d partitions, want %d", len(q.Parts), len(p.Parts))
		}
		for i := range p.Parts {
			if q.Parts[i].Start != p.Parts[i].Start || q.Parts[i].Sectors != p.Parts[i].Sectors || q.Parts[i].Type.Name != p.Parts[i].Type.Name {
				t.Fatalf("part %d changed: %+v → %+v", i, p.Parts[i], q.Parts[i])
			}
		}
	})
}

func mustParseF(s string) *Desc {
	d, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return d
}
