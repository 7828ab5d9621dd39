package sim

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/herd-cluster/herd/ring/wire"
)

// Format writes cfg as a scenario (see Scenario) that ParseScenario reads
// back into the same configuration, with the given comment on top and
// "expect invariants" as its expectation: how a failing random schedule
// becomes a file that reproduces it. Rates are written in whole bytes per
// second (a fractional rate is rounded: draw whole ones to reproduce a run
// exactly); times are written exactly.
func Format(cfg Config, comment string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(comment), "\n") {
		fmt.Fprintf(&b, "# %s\n", l)
	}
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	rate := func(r float64) string { return fmt.Sprintf("%dB/s", int64(math.Round(r))) }
	line("chain %d", cfg.Nodes)
	line("seed %d", cfg.Seed)
	if cfg.Bandwidth > 0 || cfg.Latency > 0 {
		bw, lat := cfg.Bandwidth, cfg.Latency
		if bw <= 0 {
			bw = 125e6
		}
		if lat <= 0 {
			lat = 50 * time.Microsecond
		}
		line("link %s %v", rate(bw), lat)
	}
	if cfg.ChunkSize > 0 {
		line("chunk %d", cfg.ChunkSize)
	}
	if cfg.Buffers > 0 {
		line("buffers %d", cfg.Buffers)
	}
	items := cfg.Items
	if items == nil {
		items = []int64{cfg.Size}
	}
	for _, n := range items {
		line("send %d", n)
	}
	if cfg.Dead > 0 {
		line("dead %v", cfg.Dead)
	}
	if cfg.Rejoin > 0 {
		line("rejoin %v", cfg.Rejoin)
	}
	if cfg.Limit > 0 {
		line("limit %v", cfg.Limit)
	}
	if cfg.SyncTime > 0 {
		line("sync %v", cfg.SyncTime)
	}
	if cfg.Jitter > 0 {
		line("jitter %v", cfg.Jitter)
	}
	if cfg.SlowAfter > 0 {
		policy := wire.SlowName(cfg.Slow)
		line("policy %s after %v", policy, cfg.SlowAfter)
	}
	for _, i := range sortedKeys(cfg.SlowDisk) {
		line("slowdisk %d %s", i+1, rate(cfg.SlowDisk[i]))
	}
	for _, i := range sortedKeys(cfg.Links) {
		l := cfg.Links[i]
		bw := l.Bandwidth
		if bw <= 0 {
			bw = cfg.Bandwidth
		}
		line("slowlink %d %s %v", i+1, rate(bw), l.Latency)
	}
	for _, i := range sortedKeys(cfg.NIC) {
		line("slownic %d %s %s", i+1, rate(cfg.NIC[i].In), rate(cfg.NIC[i].Out))
	}
	for _, i := range sortedKeys(cfg.Crash) {
		line("crash %d at %v", i+1, cfg.Crash[i])
	}
	for _, i := range sortedKeys(cfg.Kill) {
		line("freeze %d at %v", i+1, cfg.Kill[i])
	}
	for _, i := range sortedKeys(cfg.Restart) {
		line("restart %d at %v", i+1, cfg.Restart[i])
	}
	for _, i := range sortedKeys(cfg.Corrupt) {
		line("corrupt %d chunk %d", i+1, cfg.Corrupt[i])
	}
	for _, i := range sortedKeys(cfg.Drop) {
		line("drop %d chunk %d", i+1, cfg.Drop[i])
	}
	for _, i := range sortedKeys(cfg.OpenFail) {
		if cfg.OpenFail[i] {
			line("openfail %d", i+1)
		}
	}
	for _, i := range sortedKeys(cfg.Pause) {
		who := fmt.Sprint(i + 1)
		if i < 0 {
			who = "source"
		}
		for _, p := range cfg.Pause[i] {
			line("pause %s at %v for %v", who, p.At, p.For)
		}
	}
	for _, i := range sortedKeys(cfg.Stall) {
		for _, p := range cfg.Stall[i] {
			line("stall %d at %v for %v", i+1, p.At, p.For)
		}
	}
	line("expect invariants")
	return b.String()
}
