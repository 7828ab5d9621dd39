package sim

import (
	"time"

	"github.com/herd-cluster/herd/ring/core"
	"github.com/herd-cluster/herd/ring/verdict"
)

// Faults says what cfg does to each node, as the invariants (package
// verdict) distinguish it:
//
//   - Lost: crashed, frozen, restarted, unable to open its sinks, sent a
//     damaged or lost chunk, or paused so long that its upstream may
//     rightly take it for dead (dead timeout less a heartbeat and two ticks);
//   - Slow: a slow or stalling disk, a slow link or card, fed through a
//     node with a slow card, or paused for less than that (it falls
//     behind, it does not go silent);
//   - Healthy: anything else. Jitter and pauses of the source make no
//     node faulty.
func Faults(cfg Config) []verdict.Fault {
	dead := cfg.Dead
	if dead <= 0 {
		dead = core.DefaultDead
	}
	out := make([]verdict.Fault, cfg.Nodes)
	for i := range out {
		lost := false
		for _, m := range []map[int]time.Duration{cfg.Crash, cfg.Kill, cfg.Restart} {
			if _, ok := m[i]; ok {
				lost = true
			}
		}
		_, corrupt := cfg.Corrupt[i]
		_, drop := cfg.Drop[i]
		lost = lost || corrupt || drop || cfg.OpenFail[i]
		_, slowDisk := cfg.SlowDisk[i]
		_, slowLink := cfg.Links[i]
		_, slowNIC := cfg.NIC[i]
		slow := slowDisk || slowLink || slowNIC || len(cfg.Stall[i]) > 0 || fedBySlowCard(cfg, i)
		for _, p := range cfg.Pause[i] {
			// Its upstream hears from it at least every heartbeat and
			// looks every tick: a pause longer than the dead timeout
			// less those may rightly be taken for death.
			if p.For+core.HeartbeatInterval+2*core.TickInterval >= dead {
				lost = true
			} else {
				slow = true
			}
		}
		switch {
		case lost:
			out[i] = verdict.Lost
		case slow:
			out[i] = verdict.Slow
		}
	}
	return out
}

// fedBySlowCard reports whether node i is fed by a node whose card is slow
// (the nodes between them dead). That node cannot tell its own card from
// the link into node i and takes the latter for the slow one first (it
// blames itself only the second time): under drop, node i may end "too
// slow".
func fedBySlowCard(cfg Config, i int) bool {
	for j := i - 1; j >= 0; j-- {
		if _, ok := cfg.NIC[j]; ok {
			return true
		}
		_, crashed := cfg.Crash[j]
		_, frozen := cfg.Kill[j]
		if !crashed && !frozen {
			return false
		}
	}
	return false
}

// TimeBound is the most a run of cfg may take in virtual time (I4): see
// verdict.Bound, with the slowest rate in cfg, a fault for each node
// that is not healthy (two for a restart) and the pauses and stalls.
func TimeBound(cfg Config) time.Duration {
	p := verdict.Params{Nodes: cfg.Nodes, Dead: cfg.Dead, Rate: cfg.Bandwidth}
	if p.Rate <= 0 {
		p.Rate = 125e6
	}
	if cfg.Items == nil {
		p.Bytes = cfg.Size
	}
	for _, s := range cfg.Items {
		p.Bytes += s
	}
	rate := func(r float64) {
		if r > 0 {
			p.Rate = min(p.Rate, r)
		}
	}
	rate(cfg.DiskRate)
	for _, r := range cfg.SlowDisk {
		rate(r)
	}
	for _, l := range cfg.Links {
		rate(l.Bandwidth)
	}
	for _, n := range cfg.NIC {
		rate(n.In)
		rate(n.Out)
	}
	for _, f := range Faults(cfg) {
		if f != verdict.Healthy {
			p.Faults++
		}
	}
	p.Faults += len(cfg.Restart)
	for _, m := range []map[int][]Span{cfg.Pause, cfg.Stall} {
		for _, spans := range m {
			for _, s := range spans {
				p.Stalls += s.For
			}
		}
	}
	for _, t := range cfg.Restart {
		p.Stalls += t // a restart waits for its time to come
	}
	return verdict.Bound(p) + cfg.SyncTime
}

// Outcome is a run of cfg (res, err as Run returned them) for
// verdict.Check.
func Outcome(cfg Config, res *Result, err error) verdict.Session {
	s := verdict.Session{Policy: cfg.Slow, Ended: err == nil, Bound: TimeBound(cfg)}
	if res == nil {
		return s
	}
	s.Source, s.Elapsed = res.Items, res.Elapsed
	faults := Faults(cfg)
	for i, st := range res.Nodes {
		n := verdict.Node{Sender: st}
		if i < len(faults) {
			n.Fault = faults[i]
		}
		if i < len(res.Own) {
			n.Own = res.Own[i]
		}
		if i < len(res.Feeds) {
			n.Feeds = res.Feeds[i]
		}
		s.Nodes = append(s.Nodes, n)
	}
	return s
}
