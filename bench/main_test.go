package main

import (
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-nodes", "2, 8", "-size", "64M", "-rate", "1gbit", "-tools", "herd,naive", "-results", "r", "-extra-rate", "0"})
	require.NoError(t, err)
	assert.Equal(t, []int{2, 8}, o.nodes)
	assert.Equal(t, int64(64<<20), o.size)
	assert.Equal(t, uint64(1e9), o.rate)
	assert.Zero(t, o.extraRate)
	assert.Equal(t, []string{"herd", "naive"}, o.tools)

	o, err = parseFlags(nil)
	require.NoError(t, err)
	assert.Zero(t, o.rate, "auto rate by default")
	assert.Zero(t, o.size, "auto size by default")
	assert.Equal(t, uint64(500e6), o.extraRate)
	assert.True(t, o.fault)
	assert.True(t, o.usedOnly)

	for _, bad := range [][]string{{"-nodes", "0"}, {"-size", "x"}, {"-rate", "0"}, {"-tools", "dolly"}, {"-cpu-budget", "2"}, {"-seconds", "0"}, {"-used-nodes", "0"}} {
		_, err := parseFlags(bad)
		assert.Error(t, err, "%v", bad)
	}
}

func TestDeriveAndCSV(t *testing.T) {
	const size = 100e6
	rows := []row{
		{Tool: "herd", Nodes: 4, Rate: 500e6, Seconds: 2, Data: 1.6, OK: true},
		{Tool: "naive", Nodes: 4, Rate: 500e6, Seconds: 8, OK: true},
		{Tool: "udpcast", Nodes: 4, Rate: 500e6, OK: false, Err: "boom"},
		{Tool: "naive", Nodes: 4, Rate: 0, Seconds: 1, OK: true},
	}
	derive(rows, size)
	assert.InDelta(t, 1.0, rows[0].Ratio, 1e-9)
	assert.InDelta(t, 0.8, rows[0].Eff, 1e-9)     // 800 Mbit in 2 s on 500 Mbit/s links
	assert.InDelta(t, 1.0, rows[0].EffData, 1e-9) // ... and in a 1.6 s data phase
	assert.InDelta(t, 50.0, rows[0].MBpsNode, 1e-9)
	assert.InDelta(t, 4.0, rows[1].Ratio, 1e-9)
	assert.Zero(t, rows[1].EffData, "no data phase known")
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
	assert.Equal(t, []string{"naive", "4", "500000000", "8.000", "0.000", "12.50", "4.000", "0.200", "0.000", "0", "0.000", "true", ""}, recs[2])
	assert.Equal(t, "boom", recs[3][12])
}

func TestTargets(t *testing.T) {
	const rate = 200e6
	rows := []row{
		{Tool: "herd", Nodes: 2, Rate: rate, Seconds: 10, Eff: 0.93, EffData: 0.95, PeakRSS: 70 << 20, OK: true},
		{Tool: "herd", Nodes: 8, Rate: rate, Seconds: 10.5, Eff: 0.91, EffData: 0.94, PeakRSS: 72 << 20, OK: true},
		{Tool: "herd", Nodes: 16, Rate: rate, Seconds: 11.5, Eff: 0.85, EffData: 0.92, PeakRSS: 73 << 20, OK: true},
		{Tool: "udpcast", Nodes: 8, Rate: rate, Seconds: 20, OK: true},
		{Tool: "udpcast", Nodes: 16, Rate: rate, OK: false, Err: "udp-sender: exit status 1"},
		{Tool: "herd", Nodes: 2, Rate: 0, Seconds: 1, Eff: 0, OK: true}, // other rate: ignored
	}
	fr := &faultResult{Free: 10, Faulted: 12.9}
	ur := &usedResult{UsedBytes: 100, WireUsed: 111}
	got := map[string]bool{}
	for _, tg := range targets(rows, rate, fr, ur) {
		got[tg.name] = tg.pass
	}
	assert.Equal(t, map[string]bool{
		"herd ≥ 90 % of the link, whole run":                   false, // N=16 at 85 %
		"herd ≥ 90 % of the link, data phase":                  true,
		"herd time flat within 10 % from N=2 to N=16":          false, // 15 %
		"herd peak RSS per node ≤ 128 MiB":                     true,
		"herd ahead of udpcast at N=8":                         true,
		"herd ahead of udpcast at N=16":                        true, // udpcast failed
		"fault: survivors ≤ fault-free + 10 % + 2 s detection": true, // 12.9 ≤ 13
		"used-only: wire ≤ 1.1 × used, nodes pass fsck":        false,
	}, got)

	fr.Faulted = 13.1
	ur.WireUsed = 110
	rows[2].Seconds = 10.9
	got = map[string]bool{}
	for _, tg := range targets(rows, rate, fr, ur) {
		got[tg.name] = tg.pass
	}
	assert.False(t, got["fault: survivors ≤ fault-free + 10 % + 2 s detection"])
	assert.True(t, got["used-only: wire ≤ 1.1 × used, nodes pass fsck"])
	assert.True(t, got["herd time flat within 10 % from N=2 to N=16"])

	// One N only: flatness is not measured.
	for _, tg := range targets(rows[:1], rate, nil, nil) {
		if strings.HasPrefix(tg.name, "herd time flat") {
			assert.True(t, tg.skip)
		}
	}
	// Without udpcast rows the comparison is skipped, not missed.
	for _, tg := range targets(rows[:3], rate, nil, nil) {
		if strings.HasPrefix(tg.name, "herd ahead of udpcast") {
			assert.True(t, tg.skip, tg.name)
			assert.Equal(t, "udpcast not run", tg.what)
		}
	}
}

func TestChooseRateAndSize(t *testing.T) {
	assert.Equal(t, uint64(250e6), chooseRate(36.7e6)) // 293 Mbit/s sustainable
	assert.Equal(t, uint64(1000e6), chooseRate(1e9))
	assert.Equal(t, uint64(500e6), chooseRate(62.5e6)) // exactly 500 Mbit/s
	assert.Equal(t, uint64(10e6), chooseRate(1), "never below the smallest step")
	assert.Equal(t, int64(192<<20), autoSize(250e6, 6)) // 187.5 MB → 6 × 32 MiB
	assert.Equal(t, int64(64<<20), autoSize(10e6, 1))   // floor
	assert.InDelta(t, 0.956, payloadCeiling(), 0.001)
}

const procStatSeed = "1234 (herd recv) S 1 1234 1234 0 -1 4194560 137 0 0 0 250 130 0 0 20 0 9 0 123 47562752 4051 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0"

func TestParseProcStat(t *testing.T) {
	v, err := parseProcStat([]byte(procStatSeed))
	require.NoError(t, err)
	assert.InDelta(t, 3.80, v, 1e-9) // (250 + 130) ticks
	// A name with spaces and parentheses.
	v, err = parseProcStat([]byte(strings.Replace(procStatSeed, "(herd recv)", "(a) b (c))", 1)))
	require.NoError(t, err)
	assert.InDelta(t, 3.80, v, 1e-9)
	for _, bad := range []string{"", "1 (x) S 1 2", "1 (x) S 1 2 3 4 5 6 7 8 9 10 x 0"} {
		_, err := parseProcStat([]byte(bad))
		assert.Error(t, err, bad)
	}
}

const machineStatSeed = "cpu  438312 0 292196 2662047 16082 0 16849 6027 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n"

func TestParseMachineStat(t *testing.T) {
	busy, total, err := parseMachineStat([]byte(machineStatSeed))
	require.NoError(t, err)
	assert.InDelta(t, (438312.0+292196+16849+6027)/100, busy, 1e-6)
	assert.InDelta(t, (438312.0+292196+2662047+16082+16849+6027)/100, total, 1e-6)
	for _, bad := range []string{"", "cpu0 1 2 3 4 5", "cpu 1 2 x 4 5 6"} {
		_, _, err := parseMachineStat([]byte(bad))
		assert.Error(t, err, bad)
	}
}

const procIOSeed = "rchar: 201326592\nwchar: 201330000\nsyscr: 812\nsyscw: 49\nread_bytes: 0\nwrite_bytes: 201326592\ncancelled_write_bytes: 0\n"

func TestParseProcIO(t *testing.T) {
	n, err := parseProcIO([]byte(procIOSeed))
	require.NoError(t, err)
	assert.Equal(t, int64(201326592), n)
	for _, bad := range []string{"", "wchar: 1\n", "rchar: -4\n", "rchar: x\n"} {
		_, err := parseProcIO([]byte(bad))
		assert.Error(t, err, bad)
	}
}

const socketsSeed = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:270E 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4711 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000B00630A:270E 0000000000000000FFFF00000100630A:B2C4 01 00000000:00000000 00:00000000 00000000     0        0 4712 1 0000000000000000 20 4 30 10 -1
`

func TestParseSockets(t *testing.T) {
	assert.True(t, parseSockets([]byte(socketsSeed), 9998, "0A"), "listener on 9998")
	assert.False(t, parseSockets([]byte(socketsSeed), 9999, "0A"))
	assert.False(t, parseSockets([]byte(socketsSeed), 9998, "07"))
	udp := "  sl  local_address rem_address   st\n  1: 0100007F:2328 00000000:0000 07 00000000:00000000\n"
	assert.True(t, parseSockets([]byte(udp), 9000, "07"))
	assert.False(t, parseSockets([]byte(udp), 9001, "07"))
	assert.False(t, parseSockets(nil, 9000, "07"))
}

const herdEventsSeed = `herd: not json
{"event":"progress","seconds":1.0,"total":268435456,"bytes":134217728,"nodes":[{"index":0,"addr":"10.99.0.11:9998","state":"receiving","bytes":100,"rate":0,"error":""}]}
{"event":"summary","ok":true,"seconds":2.5,"bytes":268435456,"nodes":[{"index":0,"addr":"10.99.0.11:9998","state":"done","bytes":268435456,"rate":1,"error":""},{"index":1,"addr":"10.99.0.12:9998","state":"failed","bytes":5,"rate":0,"error":"dead at 5"}],"stats":[{"item":"/dev/loop9","device_bytes":2147483648,"used_bytes":422838272,"wire_bytes":422838272,"method":"ext4"}]}
`

func TestParseHerdEvents(t *testing.T) {
	evs := parseHerdEvents([]byte(herdEventsSeed))
	require.Len(t, evs, 2)
	assert.Equal(t, "progress", evs[0].Event)
	s := evs[1]
	require.NotNil(t, s.OK)
	assert.True(t, *s.OK)
	assert.Equal(t, 2.5, s.Seconds)
	require.Len(t, s.Nodes, 2)
	assert.Equal(t, "failed", s.Nodes[1].State)
	require.Len(t, s.Stats, 1)
	assert.Equal(t, int64(422838272), s.Stats[0].UsedBytes)
	assert.Equal(t, "ext4", s.Stats[0].Method)
	assert.Equal(t, int64(422838272), wireBytes(s), "the item's count when the session gives none")
	s.WireBytes, s.Compress = 1000, "zstd"
	assert.Equal(t, int64(1000), wireBytes(s), "the session's count, after compression")
	assert.Zero(t, wireBytes(herdEvent{}))
	assert.Equal(t, "; 10.99.0.12:9998 failed: dead at 5", nodeErrors([]byte(herdEventsSeed)))
}

func FuzzParseProcStat(f *testing.F) {
	f.Add([]byte(procStatSeed))
	f.Add([]byte("1 (a) b) S"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if v, err := parseProcStat(b); err == nil && v < 0 {
			t.Fatalf("negative CPU %v", v)
		}
	})
}

func FuzzParseMachineStat(f *testing.F) {
	f.Add([]byte(machineStatSeed))
	f.Add([]byte("cpu 1 2 3 4 5 6 7 8 9 10 11 12\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		busy, total, err := parseMachineStat(b)
		if err == nil && busy > total {
			t.Fatalf("busy %v > total %v", busy, total)
		}
	})
}

func FuzzParseProcIO(f *testing.F) {
	f.Add([]byte(procIOSeed))
	f.Fuzz(func(t *testing.T, b []byte) {
		if n, err := parseProcIO(b); err == nil && n < 0 {
			t.Fatalf("negative rchar %d", n)
		}
	})
}

func FuzzParseSockets(f *testing.F) {
	f.Add([]byte(socketsSeed), 9998)
	f.Fuzz(func(t *testing.T, b []byte, port int) {
		_ = parseSockets(b, port, "0A")
	})
}

func FuzzParseHerdEvents(f *testing.F) {
	f.Add([]byte(herdEventsSeed))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, ev := range parseHerdEvents(b) {
			if ev.Event == "" {
				t.Fatal("event without a name kept")
			}
		}
	})
}

func TestPrintWhy(t *testing.T) {
	rows := []row{
		{Tool: "herd", Nodes: 16, Rate: 80e6, Seconds: 24.8, First: 6.6, Data: 17.9, Tail: 0.2, CPUPerGiB: 3.67, OK: true},
		{Tool: "udpcast", Nodes: 16, Rate: 80e6, Seconds: 18, OK: true},
		{Tool: "herd", Nodes: 16, Rate: 0, Seconds: 6, Data: 4, OK: true},
	}
	var b strings.Builder
	printWhy(&b, rows, 80e6, 128<<20, 4<<20, 2)
	out := b.String()
	// 16 × 4 MiB × 8 / 80 Mbit/s / 0.956 = 7.02 s; 128 MiB ideal 14.03 s;
	// 16 × 3.67 s/GiB × 10 MB/s = 0.55 cores.
	assert.Contains(t, out, "N=16  first byte 6.60 s (N × chunk / rate = 7.02 s), data 17.90 s (ideal 14.03 s), tail 0.20 s; herd recv CPU at this rate 0.55 of 2 cores")
	assert.Equal(t, 1, strings.Count(out, "first byte"), "only herd rows at the shaped rate")
	b.Reset()
	printWhy(&b, rows[1:2], 80e6, 128<<20, 4<<20, 2)
	assert.Empty(t, b.String())
}

func TestExtraRows(t *testing.T) {
	assert.Empty(t, extraRows(nil, nil, 1))
	rows := extraRows(&faultResult{Nodes: 8, Rate: 80e6, Free: 10, Faulted: 11}, &usedResult{Nodes: 4, DeviceBytes: 2e9, UsedBytes: 4e8, WireUsed: 4e8, SecFull: 20, SecUsed: 5}, 100e6)
	require.Len(t, rows, 4)
	assert.Equal(t, "herd node killed", rows[1].Tool)
	assert.True(t, rows[1].OK)
	assert.InDelta(t, 1.1, rows[1].Ratio, 1e-9)
	assert.InDelta(t, 100.0, rows[2].MBpsNode, 1e-9) // 2 GB in 20 s
	assert.InDelta(t, 0.25, rows[3].Ratio, 1e-9)
	assert.True(t, rows[3].OK)
}
