package desc

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// memDisk is an in-memory sparse disk: io.ReaderAt and io.WriterAt over
// the written runs, zeros elsewhere.
type memDisk struct {
	size int64
	runs []Write
}

func (m *memDisk) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 || off >= m.size {
		return 0, io.EOF
	}
	n := len(b)
	if int64(n) > m.size-off {
		n = int(m.size - off)
	}
	clear(b[:n])
	for _, w := range m.runs {
		lo, hi := max(off, w.Offset), min(off+int64(n), w.Offset+int64(len(w.Bytes)))
		if lo < hi {
			copy(b[lo-off:hi-off], w.Bytes[lo-w.Offset:hi-w.Offset])
		}
	}
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memDisk) write(ws []Write) { m.runs = append(m.runs, ws...) }

// roundTrip lays d out, encodes it into memory, reads the table back and
// checks the decoded plan equals the laid-out one in every table field.
func roundTrip(t *testing.T, d *Desc, size, ss int64) *Plan {
	t.Helper()
	p, err := d.Layout(size, ss, fixedRand())
	require.NoError(t, err)
	w, err := p.Encode()
	require.NoError(t, err)
	disk := &memDisk{size: size}
	disk.write(w)
	got, err := ReadTableSector(disk, size, map[TableKind]int64{MBR: ss, GPT: 0}[p.Table])
	require.NoError(t, err)
	assert.Equal(t, p.Table, got.Table)
	assert.Equal(t, p.SectorSize, got.SectorSize)
	assert.Equal(t, p.DiskSectors, got.DiskSectors)
	if p.Table == GPT {
		assert.Equal(t, p.DiskGUID, got.DiskGUID)
	} else {
		assert.Equal(t, p.DiskID, got.DiskID)
	}
	require.Len(t, got.Parts, len(p.Parts))
	for i, want := range p.Parts {
		g := got.Parts[i]
		assert.Equal(t, want.Index, g.Index)
		assert.Equal(t, want.Start, g.Start)
		assert.Equal(t, want.Sectors, g.Sectors)
		assert.Equal(t, want.Logical, g.Logical)
		assert.Equal(t, want.Boot, g.Boot)
		if p.Table == GPT {
			assert.Equal(t, want.Type.GUID, g.Type.GUID)
			assert.Equal(t, want.GUID, g.GUID)
			assert.Equal(t, want.Name, g.Name)
		} else {
			assert.Equal(t, want.Type.MBR, g.Type.MBR)
		}
	}
	return got
}

func TestDescRoundTrip(t *testing.T) {
	cases := []struct {
		text string
		size int64
		ss   int64
	}{
		{seedKA, gb80, 512},
		{seedKA, gb60, 512},
		{seedLarge, tb2, 512},
		{"linux 10 boot\nextended 100\nlogical linux 20\nlogical swap fill\nlinux fill\n", GiB, 512},
		{"table gpt\nbios 1M\nesp 512M label=EFI\nlinux 20G boot\nswap 10%\nlinux fill name=var\n", gb80, 512},
		{"table gpt\nesp 512M\nlinux fill\n", tb2, 4096},
		{"linux 1G\nlinux fill\n", gb80, 4096},
	}
	for _, c := range cases {
		d := mustParse(t, c.text)
		got := roundTrip(t, d, c.size, c.ss)
		// From the decoded plan back to a desc and a layout on the same
		// disk: the same sectors.
		back := ToDesc(got)
		q, err := mustParse(t, back.String()).Layout(c.size, c.ss, fixedRand())
		require.NoError(t, err, back.String())
		require.Len(t, q.Parts, len(got.Parts))
		for i := range q.Parts {
			assert.Equal(t, got.Parts[i].Start, q.Parts[i].Start, "%s: part %d", c.text, i)
			assert.Equal(t, got.Parts[i].Sectors, q.Parts[i].Sectors, "%s: part %d", c.text, i)
		}
	}
}

// The large-disk bug of KA's fdisk_to_desc: the desc from a 200 GB disk
// (a logical partition as large as its extended one) must say fill, and
// apply to a smaller or larger disk.
func TestDescToDescFillsLastOfEachContainer(t *testing.T) {
	d := mustParse(t, "swap 509\nlinux 5992\nextended fill\nlogical linux 52281\nlogical linux 19375\nlogical linux 78167\nlogical linux fill\n")
	p, err := d.Layout(200e9, 512, fixedRand())
	require.NoError(t, err)
	w, err := p.Encode()
	require.NoError(t, err)
	disk := &memDisk{size: 200e9}
	disk.write(w)
	got, err := ReadTable(disk, 200e9)
	require.NoError(t, err)
	assert.Equal(t, seedLarge, ToDesc(got).String())
	_, err = ToDesc(got).Layout(tb2, 512)
	require.NoError(t, err)
}

func TestDescReadTableErrors(t *testing.T) {
	disk := &memDisk{size: 10 * MiB}
	_, err := ReadTable(disk, disk.size)
	require.ErrorIs(t, err, ErrNoTable)

	p, err := mustParse(t, "table gpt\nlinux fill\n").Layout(10*MiB, 512, fixedRand())
	require.NoError(t, err)
	w, err := p.Encode()
	require.NoError(t, err)
	// Damage the primary header: the backup is used.
	disk.write(w)
	disk.write([]Write{{Offset: 512 + 100, Bytes: []byte{0xff}}})
	got, err := ReadTable(disk, disk.size)
	require.NoError(t, err)
	assert.Equal(t, p.Parts[0].Start, got.Parts[0].Start)
	// Damage both entry arrays: the table is refused.
	disk.write([]Write{{Offset: 2*512 + 3, Bytes: []byte{0xff}}, {Offset: w[3].Offset + 3, Bytes: []byte{0xff}}})
	_, err = ReadTable(disk, disk.size)
	require.ErrorIs(t, err, ErrBadTable)

	// An EBR chain that points backwards is refused, not looped on.
	p, err = mustParse(t, "extended fill\nlogical linux 1\nlogical linux fill\n").Layout(10*MiB, 512, fixedRand())
	require.NoError(t, err)
	w, err = p.Encode()
	require.NoError(t, err)
	disk = &memDisk{size: 10 * MiB}
	disk.write(w)
	bad := bytes.Clone(w[2].Bytes) // first EBR
	bad[462+8] = 0                 // next EBR relative start 0: points at itself
	bad[462+9] = 0
	disk.write([]Write{{Offset: w[2].Offset, Bytes: bad}})
	_, err = ReadTable(disk, disk.size)
	require.ErrorIs(t, err, ErrBadTable)
}

func TestDescProbeImage(t *testing.T) {
	// A file-level probe needs real filesystems: make them with mkfs on an
	// image file at partition offsets is done in the apply test; here the
	// probe must ignore zeros and garbage.
	fs, label, uuid := ProbeFS(bytes.NewReader(make([]byte, 8192)))
	assert.Empty(t, fs+label+uuid)
	fs, _, _ = ProbeFS(bytes.NewReader(nil))
	assert.Empty(t, fs)
}

func TestDescReadTableFromFile(t *testing.T) {
	p, img := encodeToImage(t, mustParse(t, seedKA), gb80)
	f, err := os.Open(img)
	require.NoError(t, err)
	defer f.Close()
	got, err := ReadTable(f, gb80)
	require.NoError(t, err)
	require.Len(t, got.Parts, len(p.Parts))
	_, err = ReadTable(f, 512)
	require.True(t, errors.Is(err, ErrNoTable))
}

func TestDescToDescGrowsTightExtended(t *testing.T) {
	linux, _ := LookupType("linux")
	ext, _ := LookupType("extended")
	p := &Plan{Table: MBR, SectorSize: 512, DiskSectors: 64 * 2048, Parts: []PlannedPart{
		{Index: 1, Start: 2048, Sectors: 4096, Type: ext},
		{Index: 5, Start: 2049, Sectors: 2000, Type: linux, Logical: true},
		{Index: 6, Start: 4050, Sectors: 2094, Type: linux, Logical: true},
		{Index: 2, Start: 6144, Sectors: 2048, Type: linux},
	}}
	// The table itself is valid: it encodes and decodes.
	w, err := p.EncodeMBR()
	require.NoError(t, err)
	disk := &memDisk{size: 64 * MiB}
	disk.write(w)
	got, err := ReadTable(disk, disk.size)
	require.NoError(t, err)
	d := ToDesc(got)
	assert.Equal(t, "extended 4\nlogical linux 1000K\nlogical linux fill\nlinux fill\n", d.String(),
		"the extended partition grows to hold its logicals on a 1 MiB grid with 1 MiB EBR gaps")
	_, err = mustParse(t, d.String()).Layout(64*MiB, 512)
	require.NoError(t, err)
}
