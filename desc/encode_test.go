package desc

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// encodeToImage lays d out on a sparse image of size bytes, encodes and
// writes the table, and returns the plan and the image path.
func encodeToImage(t *testing.T, d *Desc, size int64) (*Plan, string) {
	t.Helper()
	p, err := d.Layout(size, 512, fixedRand())
	require.NoError(t, err)
	w, err := p.Encode()
	require.NoError(t, err)
	img := sparseImage(t, size)
	writeImage(t, img, w)
	return p, img
}

// assertSfdiskSees compares sfdisk's view of img with plan p.
func assertSfdiskSees(t *testing.T, p *Plan, img string) {
	t.Helper()
	st := sfdiskJSON(t, img).PartitionTable
	byIndex := map[int]PlannedPart{}
	for _, pp := range p.Parts {
		byIndex[pp.Index] = pp
	}
	require.Len(t, st.Partitions, len(p.Parts))
	if p.Table == GPT {
		assert.Equal(t, "gpt", st.Label)
		assert.Equal(t, p.DiskGUID.String(), strings.ToUpper(st.ID))
	} else {
		assert.Equal(t, "dos", st.Label)
		assert.Equal(t, fmt.Sprintf("0x%08x", p.DiskID), st.ID)
	}
	for _, sp := range st.Partitions {
		pp, ok := byIndex[partNum(sp.Node)]
		require.True(t, ok, "sfdisk sees partition %s the plan does not have", sp.Node)
		assert.Equal(t, pp.Start, sp.Start, "start of %s", sp.Node)
		assert.Equal(t, pp.Sectors, sp.Size, "size of %s", sp.Node)
		if p.Table == GPT {
			assert.Equal(t, pp.Type.GUID.String(), strings.ToUpper(sp.Type), "type of %s", sp.Node)
			assert.Equal(t, pp.GUID.String(), strings.ToUpper(sp.UUID), "uuid of %s", sp.Node)
			assert.Equal(t, pp.Name, sp.Name, "name of %s", sp.Node)
			assert.Equal(t, pp.Boot, strings.Contains(sp.Attrs, "LegacyBIOSBootable"), "attrs of %s", sp.Node)
		} else {
			assert.Equal(t, fmt.Sprintf("%x", pp.Type.MBR), sp.Type, "type of %s", sp.Node)
			assert.Equal(t, pp.Boot, sp.Bootable, "boot flag of %s", sp.Node)
		}
	}
}

func TestDescEncodeMBRSfdisk(t *testing.T) {
	needTool(t, "sfdisk")
	for name, c := range map[string]struct {
		text string
		size int64
	}{
		"seed KA 80GB":       {seedKA, gb80},
		"seed KA 60GB":       {seedKA, gb60},
		"seed large 2TB":     {seedLarge, tb2},
		"primaries and boot": {"linux 100 boot\nswap 64\ntype0b 32\nlinux fill\n", GiB},
		"empty extended":     {"linux 10\nextended fill\n", 100 * MiB},
		"extended in middle": {"linux 10\nextended 100\nlogical linux 20\nlogical swap fill\nlinux fill\n", GiB},
	} {
		t.Run(name, func(t *testing.T) {
			p, img := encodeToImage(t, mustParse(t, c.text), c.size)
			if name == "empty extended" {
				// sfdisk lists the empty extended partition alone.
				st := sfdiskJSON(t, img).PartitionTable
				require.Len(t, st.Partitions, 2)
				assert.Equal(t, "5", st.Partitions[1].Type)
				return
			}
			assertSfdiskSees(t, p, img)
		})
	}
}

func TestDescEncodeGPTSfdisk(t *testing.T) {
	needTool(t, "sfdisk")
	text := "table gpt\nbios 1M\nesp 512M label=EFI\nlinux 20G label=root boot\nswap 10%\nlvm 1G name=vg0\nlinux fill label=données\n"
	for _, size := range []int64{gb60, gb80, tb2} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			p, img := encodeToImage(t, mustParse(t, text), size)
			st := sfdiskJSON(t, img).PartitionTable
			assert.Equal(t, int64(34), st.FirstLBA, "first usable LBA")
			assert.Equal(t, size/512-34, st.LastLBA, "last usable LBA")
			assertSfdiskSees(t, p, img)
		})
	}
}

func TestDescEncodeRejectsBadPlans(t *testing.T) {
	p, err := mustParse(t, "linux 10\nlinux fill\n").Layout(100*MiB, 512, fixedRand())
	require.NoError(t, err)
	q := *p
	q.Parts = append([]PlannedPart(nil), p.Parts...)
	q.Parts[1].Start = q.Parts[0].Start + 1
	_, err = q.EncodeMBR()
	require.ErrorIs(t, err, ErrInvalidPlan)
	_, err = q.EncodeGPT()
	require.ErrorIs(t, err, ErrInvalidPlan)

	q.Parts = append([]PlannedPart(nil), p.Parts...)
	q.Parts[1].Sectors += 4096
	_, err = q.EncodeMBR()
	require.ErrorIs(t, err, ErrInvalidPlan, "beyond the disk")

	q.Parts = append([]PlannedPart(nil), p.Parts...)
	q.Parts[0].Type, _ = LookupType("bios")
	_, err = q.EncodeMBR()
	require.ErrorIs(t, err, ErrInvalidPlan, "bios type has no MBR code")

	q.Parts = nil
	for i := 0; i < 5; i++ {
		q.Parts = append(q.Parts, PlannedPart{Index: i + 1, Start: int64(2048 * (i + 1)), Sectors: 2048, Type: p.Parts[0].Type})
	}
	_, err = q.EncodeMBR()
	require.ErrorIs(t, err, ErrInvalidPlan, "5 primaries")
}

// TestDescDecodeSfdiskTables decodes tables sfdisk made itself from a
// script, and checks ToDesc keeps sizes with the last of each container
// as fill.
func TestDescDecodeSfdiskTables(t *testing.T) {
	needTool(t, "sfdisk")
	for name, c := range map[string]struct {
		script string
		desc   string
	}{
		"dos": {
			"label: dos\n,3500M,83,*\n,,5\n,500M,82\n,,83\n",
			"linux 3500 boot\nextended fill\nlogical swap 500\nlogical linux fill\n",
		},
		"gpt": {
			"label: gpt\nsize=1M, type=21686148-6449-6E6F-744E-656564454649\nsize=256M, type=U, name=EFI\nsize=2G, type=L\ntype=S\n",
			"table gpt\nbios 1\nesp 256 name=EFI\nlinux 2048\nswap fill\n",
		},
	} {
		t.Run(name, func(t *testing.T) {
			img := sparseImage(t, 10*GiB)
			cmd := exec.Command("sfdisk", "--no-reread", "--no-tell-kernel", "-q", img)
			cmd.Stdin = strings.NewReader(c.script)
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "sfdisk: %s", out)
			st := sfdiskJSON(t, img).PartitionTable

			f, err := os.Open(img)
			require.NoError(t, err)
			defer f.Close()
			p, err := ReadTable(f, 10*GiB)
			require.NoError(t, err)
			require.Len(t, p.Parts, len(st.Partitions))
			for i, sp := range st.Partitions {
				assert.Equal(t, sp.Start, p.Parts[i].Start, sp.Node)
				assert.Equal(t, sp.Size, p.Parts[i].Sectors, sp.Node)
				assert.Equal(t, partNum(sp.Node), p.Parts[i].Index, sp.Node)
			}
			d := ToDesc(p)
			assert.Equal(t, c.desc, d.String())

			// The desc lays out to the same table sfdisk made.
			q, err := mustParse(t, d.String()).Layout(10*GiB, 512, fixedRand())
			require.NoError(t, err)
			require.Len(t, q.Parts, len(p.Parts))
			for i := range p.Parts {
				assert.Equal(t, p.Parts[i].Start, q.Parts[i].Start, "start of %d", p.Parts[i].Index)
				if i < len(p.Parts)-1 || name == "gpt" {
					assert.Equal(t, p.Parts[i].Sectors, q.Parts[i].Sectors, "size of %d", p.Parts[i].Index)
				}
			}
		})
	}
}

func TestDescCHS(t *testing.T) {
	assert.Equal(t, [3]byte{0, 1, 0}, chs(0))
	assert.Equal(t, [3]byte{32, 33, 0}, chs(2048))                     // 2048 = 0*16065 + 32*63 + 32
	assert.Equal(t, [3]byte{254, 63 | 3<<6, 0xff}, chs(1024*255*63-1)) // cylinder 1023
	assert.Equal(t, [3]byte{0xfe, 0xff, 0xff}, chs(1024*255*63))

	// CHS fields of a logical partition's entry are absolute, its LBA relative.
	p, err := mustParse(t, "extended fill\nlogical linux 10\nlogical linux fill\n").Layout(GiB, 512, fixedRand())
	require.NoError(t, err)
	w, err := p.EncodeMBR()
	require.NoError(t, err)
	ebr2 := w[len(w)-1]
	e := ebr2.Bytes[446:]
	assert.Equal(t, uint32(2048), uint32(e[8])|uint32(e[9])<<8|uint32(e[10])<<16|uint32(e[11])<<24)
	want := chs(p.Parts[2].Start)
	assert.Equal(t, want[:], e[1:4])
}

// TestDescDecodeOldDOSAlignment decodes a table laid out the old way
// (cylinder alignment: partitions at sector 63, EBRs 63 sectors before
// their logical partition) as sfdisk writes it from explicit starts.
func TestDescDecodeOldDOSAlignment(t *testing.T) {
	needTool(t, "sfdisk")
	img := sparseImage(t, GiB)
	cmd := exec.Command("sfdisk", "--no-reread", "--no-tell-kernel", "-q", img)
	cmd.Stdin = strings.NewReader("label: dos\nstart=63, size=1000000, type=83\nstart=1000063, size=1000000, type=5\nstart=1000126, size=200000, type=82\nstart=1200189, type=83\nstart=2000063, type=b\n")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "sfdisk: %s", out)
	st := sfdiskJSON(t, img).PartitionTable
	f, err := os.Open(img)
	require.NoError(t, err)
	defer f.Close()
	p, err := ReadTable(f, GiB)
	require.NoError(t, err)
	require.Len(t, p.Parts, len(st.Partitions))
	byIndex := map[int]PlannedPart{}
	for _, pp := range p.Parts {
		byIndex[pp.Index] = pp
	}
	for _, sp := range st.Partitions {
		pp := byIndex[partNum(sp.Node)]
		assert.Equal(t, sp.Start, pp.Start, sp.Node)
		assert.Equal(t, sp.Size, pp.Sectors, sp.Node)
	}
	// Sizes are kept exactly (in K), the last of each container fills,
	// and the result lays out on herd's 1 MiB grid.
	d := ToDesc(p)
	assert.Equal(t, "linux 500000K\nextended 500000K\nlogical swap 100000K\nlogical linux fill\ntype0b fill\n", d.String())
	q, err := mustParse(t, d.String()).Layout(GiB, 512)
	require.NoError(t, err)
	checkPlan(t, q)
}
