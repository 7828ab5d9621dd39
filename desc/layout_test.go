package desc

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	gb60 = int64(60e9)
	gb80 = int64(80e9)
	tb2  = int64(2e12)
)

// checkPlan asserts the invariants of every laid-out plan.
func checkPlan(t *testing.T, p *Plan) {
	t.Helper()
	align := MiB / p.SectorSize
	first, end := usableRange(p.Table, p.SectorSize, p.DiskSectors)
	var ext *PlannedPart
	prevEnd, lprev := first, int64(0)
	for i, pp := range p.Parts {
		assert.Zero(t, pp.Start%align, "part %d start %d not 1 MiB aligned", pp.Index, pp.Start)
		assert.Zero(t, pp.Sectors%align, "part %d size %d not 1 MiB multiple", pp.Index, pp.Sectors)
		assert.Positive(t, pp.Sectors)
		if pp.Logical {
			require.NotNil(t, ext)
			assert.Equal(t, lprev+align, pp.Start, "logical %d leaves exactly 1 MiB for its EBR", pp.Index)
			assert.LessOrEqual(t, pp.End(), ext.End())
			lprev = pp.End()
			continue
		}
		assert.Equal(t, prevEnd, pp.Start, "part %d follows the previous one", pp.Index)
		assert.LessOrEqual(t, pp.End(), end)
		prevEnd = pp.End()
		if pp.Type.IsExtended() {
			ext = &p.Parts[i]
			lprev = pp.Start
		}
	}
}

func TestDescLayoutSeedKA(t *testing.T) {
	d, err := Parse(seedKA)
	require.NoError(t, err)
	p, err := d.Layout(gb80, 512, fixedRand())
	require.NoError(t, err)
	checkPlan(t, p)
	// 80e9 bytes = 156250000 sectors; the last whole MiB ends at 156248064.
	type se struct{ idx, start, size int64 }
	var got []se
	for _, pp := range p.Parts {
		got = append(got, se{int64(pp.Index), pp.Start, pp.Sectors})
	}
	assert.Equal(t, []se{
		{1, 2048, 3500 * 2048},
		{2, 7170048, 156248064 - 7170048},
		{5, 7172096, 500 * 2048},
		{6, 8198144, 156248064 - 8198144},
	}, got)
	assert.Equal(t, "swap", p.Parts[2].FS)
	assert.Equal(t, "ext4", p.Parts[3].FS)
	assert.Equal(t, "none", p.Parts[1].FS)

	// The same desc fits 60 GB and 2 TB: fixed parts keep their size, fill stretches.
	for _, size := range []int64{gb60, tb2} {
		q, err := d.Layout(size, 512, fixedRand())
		require.NoError(t, err)
		checkPlan(t, q)
		assert.Equal(t, p.Parts[0].Sectors, q.Parts[0].Sectors)
		assert.Equal(t, p.Parts[2].Sectors, q.Parts[2].Sectors)
		assert.Equal(t, size/512/2048*2048, q.Parts[3].End(), "fill ends at the last whole MiB of a %d-byte disk", size)
	}
}

func TestDescLayoutSeedLarge(t *testing.T) {
	d, err := Parse(seedLarge)
	require.NoError(t, err)
	// 509+5992+52281+19375 MiB (+ EBRs) is more than 80 GB: refused,
	// naming line 5 (line 4 already on 60 GB).
	for size, line := range map[int64]int{gb60: 4, gb80: 5} {
		_, err := d.Layout(size, 512)
		require.ErrorIs(t, err, ErrTooSmall)
		var pe *ParseError
		require.ErrorAs(t, err, &pe)
		assert.Equal(t, line, pe.Line, "%v", err)
		assert.Equal(t, 15, pe.Col, "%v", err)
	}
	p, err := d.Layout(tb2, 512, fixedRand())
	require.NoError(t, err)
	checkPlan(t, p)
	require.Len(t, p.Parts, 7)
	assert.Equal(t, []int{1, 2, 3, 5, 6, 7, 8}, []int{p.Parts[0].Index, p.Parts[1].Index, p.Parts[2].Index, p.Parts[3].Index, p.Parts[4].Index, p.Parts[5].Index, p.Parts[6].Index})
	assert.Equal(t, int64(78167*2048), p.Parts[5].Sectors)
	assert.Equal(t, p.Parts[2].End(), p.Parts[6].End(), "the last logical fills its extended partition")
	assert.Equal(t, tb2/512/2048*2048, p.Parts[2].End())
}

func TestDescLayoutGPT(t *testing.T) {
	d, err := Parse("table gpt\nesp 512M\nlinux 20%\nswap 2G\nlinux fill\n")
	require.NoError(t, err)
	for _, ss := range []int64{512, 4096} {
		for _, size := range []int64{gb60, gb80, tb2, 3 * TiB} {
			p, err := d.Layout(size, ss, fixedRand())
			require.NoError(t, err)
			checkPlan(t, p)
			align := MiB / ss
			total := size / ss
			lastUsable := total - 1 - gptEntrySectors(ss) - 1
			assert.LessOrEqual(t, p.Parts[3].End()-1, lastUsable)
			assert.Greater(t, p.Parts[3].End()+align, lastUsable, "fill reaches the last whole MiB")
			first, end := usableRange(GPT, ss, total)
			assert.Equal(t, (end-first)*20/100/align*align, p.Parts[1].Sectors, "20%% of the usable area")
			assert.NotEqual(t, p.Parts[0].GUID, p.Parts[1].GUID)
			assert.False(t, p.DiskGUID.IsZero())
		}
	}
}

func TestDescLayoutMBRLimit(t *testing.T) {
	// An MBR addresses 2^32 sectors: on a 3 TiB disk fill stops at 2 TiB.
	d, err := Parse("linux 1G\nlinux fill\n")
	require.NoError(t, err)
	p, err := d.Layout(3*TiB, 512, fixedRand())
	require.NoError(t, err)
	assert.Equal(t, int64(1)<<32, p.Parts[1].End())
	_, err = d.Layout(3*TiB, 512)
	require.NoError(t, err)
	_, err = mustParse(t, "linux 3T\n").Layout(4*TiB, 512)
	require.ErrorIs(t, err, ErrTooSmall)
}

func TestDescLayoutTooSmall(t *testing.T) {
	d := mustParse(t, "linux 100\nswap 100\nlinux fill\n")
	_, err := d.Layout(150*MiB, 512)
	require.ErrorIs(t, err, ErrTooSmall)
	var pe *ParseError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, 2, pe.Line)
	// Exactly enough for the fixed parts but nothing for fill.
	_, err = d.Layout(201*MiB, 512)
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, 3, pe.Line)
	assert.Contains(t, pe.Msg, "fill")
	p, err := d.Layout(202*MiB, 512)
	require.NoError(t, err)
	assert.Equal(t, int64(2048), p.Parts[2].Sectors)
	_, err = d.Layout(100*KiB, 512)
	require.ErrorIs(t, err, ErrTooSmall)
	_, err = d.Layout(GiB, 520)
	require.Error(t, err)
}

func mustParse(t *testing.T, text string) *Desc {
	t.Helper()
	d, err := Parse(text)
	require.NoError(t, err)
	return d
}

func TestDescPlanJSON(t *testing.T) {
	p, err := mustParse(t, "table gpt\nesp 100M label=EFI\nlinux fill\n").Layout(GiB, 512, fixedRand())
	require.NoError(t, err)
	b, err := json.Marshal(p)
	require.NoError(t, err)
	assert.Contains(t, string(b), `"table":"gpt"`)
	assert.Contains(t, string(b), `"guid":"C12A7328-F81F-11D2-BA4B-00A0C93EC93B"`)
	var q Plan
	require.NoError(t, json.Unmarshal(b, &q))
	assert.Equal(t, *p, q)
}
