package main

import (
	"encoding/csv"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-nodes", "2, 8", "-size", "64M", "-rate", "1gbit", "-tools", "herd,naive", "-results", "r"})
	require.NoError(t, err)
	assert.Equal(t, []int{2, 8}, o.nodes)
	assert.Equal(t, int64(64<<20), o.size)
	assert.Equal(t, uint64(1e9), o.rate)
	assert.Equal(t, []string{"herd", "naive"}, o.tools)
	for _, bad := range [][]string{{"-nodes", "0"}, {"-size", "x"}, {"-rate", "0"}, {"-tools", "dolly"}} {
		_, err := parseFlags(bad)
		assert.Error(t, err, "%v", bad)
	}
}

func TestDeriveAndCSV(t *testing.T) {
	const size = 100e6
	rows := []row{
		{Tool: "herd", Nodes: 4, Rate: 500e6, Seconds: 2, OK: true},
		{Tool: "naive", Nodes: 4, Rate: 500e6, Seconds: 8, OK: true},
		{Tool: "udpcast", Nodes: 4, Rate: 500e6, OK: false, Err: "boom"},
		{Tool: "naive", Nodes: 4, Rate: 0, Seconds: 1, OK: true},
	}
	derive(rows, size)
	assert.InDelta(t, 1.0, rows[0].Ratio, 1e-9)
	assert.InDelta(t, 0.8, rows[0].Eff, 1e-9) // 800 Mbit in 2 s on 500 Mbit/s links
	assert.InDelta(t, 50.0, rows[0].MBpsNode, 1e-9)
	assert.InDelta(t, 4.0, rows[1].Ratio, 1e-9)
	assert.Zero(t, rows[2].Ratio, "failed runs get no ratio")
	assert.Zero(t, rows[3].Ratio, "no herd run under the same conditions")

	p := filepath.Join(t.TempDir(), "b.csv")
	require.NoError(t, writeCSV(p, rows))
	f, err := os.Open(p)
	require.NoError(t, err)
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	require.NoError(t, err)
	require.Len(t, recs, 5)
	assert.Equal(t, []string{"naive", "4", "500000000", "8.000", "12.50", "4.000", "0.200", "0", "true", ""}, recs[2])
	assert.Equal(t, "boom", recs[3][9])
}
