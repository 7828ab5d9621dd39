package sim

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/herd-cluster/herd/internal/units"
	"github.com/herd-cluster/herd/ring/core"
	"github.com/herd-cluster/herd/ring/verdict"
	"github.com/herd-cluster/herd/ring/wire"
)

// A Scenario is a session told as a story, one command per line ('#'
// starts a comment). Nodes are numbered from 1 as an operator counts them:
//
//	chain 6                 # six receivers
//	link 100MB/s 100us      # bandwidth and one-way latency of every link
//	chunk 64KiB
//	buffers 8               # chunk buffers per node
//	send 4MiB               # one item (repeat for several items)
//	crash 3 at 40%          # node 3 dies (connections reset) 40% into the stream ("kill" too)
//	freeze 2 at 10ms        # node 2 stops answering (connections stay open)
//	restart 3 at 60%        # crashed node 3 comes back with what it wrote and rejoins
//	slowdisk 4 10MB/s
//	slow 3 x10              # node 3's disk writes at a tenth of the link rate
//	policy move after 1s    # slow nodes: wait, move (to the tail) or drop
//	slowlink 5 10MB/s 2ms   # the link into node 5
//	slownic 4 10MB/s        # node 4's network card, both ways (every link into or out of it)
//	slownic 4 20MB/s 5MB/s  # ... receiving at 20MB/s, sending at 5MB/s
//	corrupt 2 chunk 5       # chunk 5 arrives damaged at node 2
//	drop 4 chunk 3          # chunk 3 is lost on the link into node 4
//	openfail 1              # node 1 cannot open its sinks
//	sync 50ms               # every Sink.Sync takes this long (the final sync)
//	pause 3 at 20% for 1.5s # node 3 is not scheduled for 1.5s ("pause source ..." too)
//	stall 4 at 10ms for 2s  # node 4's disk completes nothing for 2s
//	jitter 3ms              # deliveries up to 3ms late, in order per connection
//	dead 1s                 # the dead timeout
//	rejoin 200ms            # how often the source asks for dead nodes again
//	seed 42                 # the seed of the data, of jitter and of tick order after pauses
//	limit 10m               # virtual time allowed
//	expect ok 1-2,4-6 ko 3
//	expect err 3 "dead at offset"
//	expect time < 2.5s
//	expect done 1-2 < 1s    # these nodes had everything written and verified by then
//	expect restored 3 > 10  # restarted node 3 kept more than 10 frames from before
//	expect buffers <= 8
//	expect readback > 0     # chunks rebuilt from written output or the source
//	expect invariants       # I1-I5 of package verdict (TestScenarios checks them always)
//
// Percentages are of the stream's duration at link speed (total size over
// bandwidth).
type Scenario struct {
	Config Config
	Expect []Expectation
}

// Expectation is one "expect" line.
type Expectation struct {
	Line  int
	Kind  string // "ok", "ko", "err", "time<", "time>", "buffers<="
	Nodes []int  // 0-based
	Text  string
	Dur   time.Duration
	N     int
}

// ParseError locates a scenario error.
type ParseError struct {
	Line int
	Msg  string
}

func (e *ParseError) Error() string { return fmt.Sprintf("scenario line %d: %s", e.Line, e.Msg) }

// ErrScenario is wrapped by every scenario parse error.
var ErrScenario = errors.New("sim: bad scenario")

func (e *ParseError) Unwrap() error { return ErrScenario }

// ParseScenario reads a scenario.
func ParseScenario(r io.Reader) (*Scenario, error) {
	sc := &Scenario{}
	c := &sc.Config
	type pending struct {
		line  int
		node  int
		pct   float64
		at    time.Duration
		crash bool
		kind  string
	}
	var kills []pending
	type pendingSpan struct {
		line, node int
		pct        float64
		at, dur    time.Duration
		disk       bool
	}
	var spans []pendingSpan
	var slowFactors [][2]float64
	bs := bufio.NewScanner(r)
	line := 0
	for bs.Scan() {
		line++
		text := bs.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 && !strings.Contains(text[:i], "\"") {
			text = text[:i]
		}
		f := strings.Fields(text)
		if len(f) == 0 {
			continue
		}
		bad := func(format string, args ...any) error {
			return &ParseError{Line: line, Msg: fmt.Sprintf(format, args...)}
		}
		need := func(n int) error {
			if len(f) != n {
				return bad("%s takes %d arguments, got %d", f[0], n-1, len(f)-1)
			}
			return nil
		}
		node := func(s string) (int, error) {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > 1<<20 {
				return 0, bad("bad node number %q", s)
			}
			return n - 1, nil
		}
		var err error
		switch f[0] {
		case "chain":
			if err = need(2); err == nil {
				c.Nodes, err = strconv.Atoi(f[1])
				if err != nil || c.Nodes < 1 || c.Nodes > 100000 {
					err = bad("bad chain length %q", f[1])
				}
			}
		case "link":
			if err = need(3); err == nil {
				if c.Bandwidth, err = parseRate(f[1]); err != nil {
					err = bad("%v", err)
				} else if c.Latency, err = time.ParseDuration(strings.Replace(f[2], "us", "µs", 1)); err != nil || c.Latency < 0 {
					err = bad("bad latency %q", f[2])
				}
			}
		case "chunk":
			if err = need(2); err == nil {
				var n int64
				if n, err = parseSize(f[1]); err != nil || n < 1 || n > 64<<20 {
					err = bad("bad chunk size %q", f[1])
				}
				c.ChunkSize = int(n)
			}
		case "buffers":
			if err = need(2); err == nil {
				if c.Buffers, err = strconv.Atoi(f[1]); err != nil || c.Buffers < 1 || c.Buffers > 1<<16 {
					err = bad("bad buffer count %q", f[1])
				}
			}
		case "send":
			if err = need(2); err == nil {
				var n int64
				if n, err = parseSize(f[1]); err != nil || n < 0 || n > 1<<40 {
					err = bad("bad size %q", f[1])
				}
				c.Items = append(c.Items, n)
			}
		case "crash", "kill", "freeze", "restart":
			if err = need(4); err == nil && f[2] != "at" {
				err = bad("want %s N at TIME|PCT%%", f[0])
			}
			if err == nil {
				if f[0] == "kill" {
					f[0] = "crash" // the same: its process is gone, its connections reset
				}
				p := pending{line: line, crash: f[0] == "crash", kind: f[0]}
				if p.node, err = node(f[1]); err == nil {
					if strings.HasSuffix(f[3], "%") {
						p.pct, err = strconv.ParseFloat(strings.TrimSuffix(f[3], "%"), 64)
						if err != nil || p.pct < 0 || p.pct > 100 {
							err = bad("bad percentage %q", f[3])
						}
					} else if p.at, err = time.ParseDuration(strings.Replace(f[3], "us", "µs", 1)); err != nil || p.at < 0 {
						err = bad("bad time %q", f[3])
					}
				}
				kills = append(kills, p)
			}
		case "slowdisk":
			if err = need(3); err == nil {
				var n int
				var r float64
				if n, err = node(f[1]); err == nil {
					if r, err = parseRate(f[2]); err != nil {
						err = bad("%v", err)
					} else {
						if c.SlowDisk == nil {
							c.SlowDisk = map[int]float64{}
						}
						c.SlowDisk[n] = r
					}
				}
			}
		case "slowlink":
			if err = need(4); err == nil {
				var n int
				var l Link
				if n, err = node(f[1]); err == nil {
					if l.Bandwidth, err = parseRate(f[2]); err != nil {
						err = bad("%v", err)
					} else if l.Latency, err = time.ParseDuration(strings.Replace(f[3], "us", "µs", 1)); err != nil || l.Latency < 0 {
						err = bad("bad latency %q", f[3])
					} else {
						if c.Links == nil {
							c.Links = map[int]Link{}
						}
						c.Links[n] = l
					}
				}
			}
		case "slownic":
			if len(f) != 3 && len(f) != 4 {
				err = bad("want slownic N RATE [OUTRATE]")
				break
			}
			var n int
			var nic NIC
			if n, err = node(f[1]); err == nil {
				if nic.In, err = parseRate(f[2]); err != nil {
					err = bad("%v", err)
					break
				}
				nic.Out = nic.In
				if len(f) == 4 {
					if nic.Out, err = parseRate(f[3]); err != nil {
						err = bad("%v", err)
						break
					}
				}
				if c.NIC == nil {
					c.NIC = map[int]NIC{}
				}
				c.NIC[n] = nic
			}
		case "corrupt", "drop":
			if err = need(4); err == nil && f[2] != "chunk" {
				err = bad("want %s N chunk SEQ", f[0])
			}
			if err == nil {
				var n int
				var seq uint64
				if n, err = node(f[1]); err == nil {
					if seq, err = strconv.ParseUint(f[3], 10, 64); err != nil {
						err = bad("bad chunk number %q", f[3])
					} else if f[0] == "corrupt" {
						if c.Corrupt == nil {
							c.Corrupt = map[int]uint64{}
						}
						c.Corrupt[n] = seq
					} else {
						if c.Drop == nil {
							c.Drop = map[int]uint64{}
						}
						c.Drop[n] = seq
					}
				}
			}
		case "sync":
			if err = need(2); err == nil {
				if c.SyncTime, err = time.ParseDuration(strings.Replace(f[1], "us", "µs", 1)); err != nil || c.SyncTime < 0 {
					err = bad("bad sync time %q", f[1])
				}
			}
		case "slow":
			if err = need(3); err == nil {
				var n int
				var x float64
				if n, err = node(f[1]); err == nil {
					if !strings.HasPrefix(f[2], "x") {
						err = bad("want slow N xFACTOR")
					} else if x, err = strconv.ParseFloat(f[2][1:], 64); err != nil || x < 1 || x > 1e6 {
						err = bad("bad slowness %q", f[2])
					} else {
						slowFactors = append(slowFactors, [2]float64{float64(n), x})
					}
				}
			}
		case "policy":
			if len(f) != 2 && !(len(f) == 4 && f[2] == "after") {
				err = bad("want policy wait|move|drop [after DURATION]")
				break
			}
			switch f[1] {
			case "wait":
				c.Slow = wire.SlowWait
			case "move":
				c.Slow = wire.SlowMove
			case "drop":
				c.Slow = wire.SlowDrop
			default:
				err = bad("unknown policy %q (want wait, move or drop)", f[1])
			}
			c.SlowAfter = 3 * time.Second
			if err == nil && len(f) == 4 {
				if c.SlowAfter, err = time.ParseDuration(f[3]); err != nil || c.SlowAfter <= 0 {
					err = bad("bad duration %q", f[3])
				}
			}
		case "pause", "stall":
			// pause N|source at TIME|PCT% for DURATION
			if err = need(6); err == nil && (f[2] != "at" || f[4] != "for") {
				err = bad("want %s N at TIME|PCT%% for DURATION", f[0])
			}
			if err == nil {
				p := pendingSpan{line: line, node: -1, disk: f[0] == "stall"}
				if f[1] != "source" || p.disk {
					p.node, err = node(f[1])
				}
				if err == nil {
					if strings.HasSuffix(f[3], "%") {
						p.pct, err = strconv.ParseFloat(strings.TrimSuffix(f[3], "%"), 64)
						if err != nil || p.pct < 0 || p.pct > 100 {
							err = bad("bad percentage %q", f[3])
						}
					} else if p.at, err = parseDur(f[3]); err != nil || p.at < 0 {
						err = bad("bad time %q", f[3])
					}
				}
				if err == nil {
					if p.dur, err = parseDur(f[5]); err != nil || p.dur <= 0 || p.dur > 24*time.Hour {
						err = bad("bad duration %q", f[5])
					}
				}
				spans = append(spans, p)
			}
		case "jitter", "dead", "rejoin", "limit":
			if err = need(2); err == nil {
				var d time.Duration
				if d, err = parseDur(f[1]); err != nil || d < 0 || d > 24*time.Hour || d == 0 && f[0] != "jitter" {
					err = bad("bad %s %q", f[0], f[1])
					break
				}
				switch f[0] {
				case "jitter":
					c.Jitter = d
				case "dead":
					c.Dead = d
				case "rejoin":
					c.Rejoin = d
				case "limit":
					c.Limit = d
				}
			}
		case "seed":
			if err = need(2); err == nil {
				if c.Seed, err = strconv.ParseInt(f[1], 10, 64); err != nil {
					err = bad("bad seed %q", f[1])
				}
			}
		case "openfail":
			if err = need(2); err == nil {
				var n int
				if n, err = node(f[1]); err == nil {
					if c.OpenFail == nil {
						c.OpenFail = map[int]bool{}
					}
					c.OpenFail[n] = true
				}
			}
		case "expect":
			err = sc.parseExpect(line, text, f, bad)
		default:
			err = bad("unknown command %q", f[0])
		}
		if err != nil {
			return nil, err
		}
	}
	if err := bs.Err(); err != nil {
		return nil, fmt.Errorf("read scenario: %w", err)
	}
	if c.Nodes == 0 {
		return nil, &ParseError{Line: line, Msg: "no chain line"}
	}
	if c.Bandwidth <= 0 {
		c.Bandwidth = 125e6
	}
	var total int64
	for _, s := range c.Items {
		total += s
	}
	for _, sf := range slowFactors {
		if c.SlowDisk == nil {
			c.SlowDisk = map[int]float64{}
		}
		c.SlowDisk[int(sf[0])] = c.Bandwidth / sf[1]
	}
	for _, k := range kills {
		if k.node >= c.Nodes {
			return nil, &ParseError{Line: k.line, Msg: fmt.Sprintf("node %d outside a chain of %d", k.node+1, c.Nodes)}
		}
		at := k.at
		if k.pct > 0 || k.at == 0 {
			at = time.Duration(k.pct / 100 * float64(total) / c.Bandwidth * float64(time.Second))
		}
		m := &c.Kill
		if k.crash {
			m = &c.Crash
		}
		if k.kind == "restart" {
			m = &c.Restart
		}
		if *m == nil {
			*m = map[int]time.Duration{}
		}
		(*m)[k.node] = at
	}
	for _, p := range spans {
		if p.node >= c.Nodes {
			return nil, &ParseError{Line: p.line, Msg: fmt.Sprintf("node %d outside a chain of %d", p.node+1, c.Nodes)}
		}
		at := p.at
		if p.pct > 0 {
			at = time.Duration(p.pct / 100 * float64(total) / c.Bandwidth * float64(time.Second))
		}
		m := &c.Pause
		if p.disk {
			m = &c.Stall
		}
		if *m == nil {
			*m = map[int][]Span{}
		}
		(*m)[p.node] = append((*m)[p.node], Span{At: at, For: p.dur})
	}
	for _, e := range sc.Expect {
		for _, n := range e.Nodes {
			if n >= c.Nodes {
				return nil, &ParseError{Line: e.Line, Msg: fmt.Sprintf("node %d outside a chain of %d", n+1, c.Nodes)}
			}
		}
	}
	return sc, nil
}

func (sc *Scenario) parseExpect(line int, text string, f []string, bad func(string, ...any) error) error {
	if len(f) < 2 {
		return bad("expect what?")
	}
	switch f[1] {
	case "ok", "ko":
		for i := 1; i < len(f); i += 2 {
			if i+1 >= len(f) || (f[i] != "ok" && f[i] != "ko") {
				return bad("want expect ok LIST [ko LIST]")
			}
			nodes, err := parseList(f[i+1])
			if err != nil {
				return bad("%v", err)
			}
			sc.Expect = append(sc.Expect, Expectation{Line: line, Kind: f[i], Nodes: nodes})
		}
	case "err":
		q := strings.IndexByte(text, '"')
		r := strings.LastIndexByte(text, '"')
		if len(f) < 4 || q < 0 || r <= q {
			return bad(`want expect err N "text"`)
		}
		n, err := strconv.Atoi(f[2])
		if err != nil || n < 1 {
			return bad("bad node number %q", f[2])
		}
		sc.Expect = append(sc.Expect, Expectation{Line: line, Kind: "err", Nodes: []int{n - 1}, Text: text[q+1 : r]})
	case "time":
		if len(f) != 4 || (f[2] != "<" && f[2] != ">") {
			return bad("want expect time < D or > D")
		}
		d, err := time.ParseDuration(strings.Replace(f[3], "us", "µs", 1))
		if err != nil {
			return bad("bad duration %q", f[3])
		}
		sc.Expect = append(sc.Expect, Expectation{Line: line, Kind: "time" + f[2], Dur: d})
	case "invariants":
		if len(f) != 2 {
			return bad("want expect invariants")
		}
		sc.Expect = append(sc.Expect, Expectation{Line: line, Kind: "invariants"})
	case "readback":
		if len(f) != 4 || (f[2] != ">" && f[2] != "==") {
			return bad("want expect readback > N or == N")
		}
		n, err := strconv.Atoi(f[3])
		if err != nil || n < 0 {
			return bad("bad count %q", f[3])
		}
		sc.Expect = append(sc.Expect, Expectation{Line: line, Kind: "readback" + f[2], N: n})
	case "restored":
		if len(f) != 5 || f[3] != ">" {
			return bad("want expect restored N > FRAMES")
		}
		n, err := strconv.Atoi(f[2])
		if err != nil || n < 1 {
			return bad("bad node number %q", f[2])
		}
		k, err := strconv.Atoi(f[4])
		if err != nil || k < 0 {
			return bad("bad count %q", f[4])
		}
		sc.Expect = append(sc.Expect, Expectation{Line: line, Kind: "restored>", Nodes: []int{n - 1}, N: k})
	case "done":
		if len(f) != 5 || f[3] != "<" {
			return bad("want expect done LIST < DURATION")
		}
		nodes, err := parseList(f[2])
		if err != nil {
			return bad("%v", err)
		}
		d, err := time.ParseDuration(strings.Replace(f[4], "us", "µs", 1))
		if err != nil {
			return bad("bad duration %q", f[4])
		}
		sc.Expect = append(sc.Expect, Expectation{Line: line, Kind: "done<", Nodes: nodes, Dur: d})
	case "buffers":
		if len(f) != 4 || f[2] != "<=" {
			return bad("want expect buffers <= N")
		}
		n, err := strconv.Atoi(f[3])
		if err != nil || n < 0 {
			return bad("bad count %q", f[3])
		}
		sc.Expect = append(sc.Expect, Expectation{Line: line, Kind: "buffers<=", N: n})
	default:
		return bad("unknown expectation %q", f[1])
	}
	return nil
}

// Check returns one message per unmet expectation.
func (sc *Scenario) Check(res *Result) []string {
	var out []string
	for _, e := range sc.Expect {
		switch e.Kind {
		case "invariants":
			for _, v := range verdict.Check(Outcome(sc.Config, res, nil)) {
				out = append(out, fmt.Sprintf("line %d: %s", e.Line, v))
			}
		case "ok":
			for _, n := range e.Nodes {
				st := res.Nodes[n]
				if st.State != core.StateDone || !allVerified(st) {
					out = append(out, fmt.Sprintf("line %d: node %d is %s (%s), want ok", e.Line, n+1, st.State, st.Err))
				}
			}
		case "ko":
			for _, n := range e.Nodes {
				if st := res.Nodes[n]; st.State != core.StateFailed {
					out = append(out, fmt.Sprintf("line %d: node %d is %s, want ko", e.Line, n+1, st.State))
				}
			}
		case "err":
			if st := res.Nodes[e.Nodes[0]]; !strings.Contains(st.Err, e.Text) {
				out = append(out, fmt.Sprintf("line %d: node %d error %q does not contain %q", e.Line, e.Nodes[0]+1, st.Err, e.Text))
			}
		case "time<":
			if res.Elapsed >= e.Dur {
				out = append(out, fmt.Sprintf("line %d: took %v, want < %v", e.Line, res.Elapsed, e.Dur))
			}
		case "time>":
			if res.Elapsed <= e.Dur {
				out = append(out, fmt.Sprintf("line %d: took %v, want > %v", e.Line, res.Elapsed, e.Dur))
			}
		case "restored>":
			if n := e.Nodes[0]; n < len(res.Restored) && res.Restored[n] <= uint64(e.N) {
				out = append(out, fmt.Sprintf("line %d: node %d kept %d frames from before its restart, want > %d", e.Line, n+1, res.Restored[n], e.N))
			}
		case "done<":
			for _, n := range e.Nodes {
				if n >= len(res.DoneAt) {
					continue
				}
				if at := res.DoneAt[n]; at == 0 || at >= e.Dur {
					out = append(out, fmt.Sprintf("line %d: node %d done at %v, want < %v", e.Line, n+1, at, e.Dur))
				}
			}
		case "readback>":
			if res.ReadBacks <= e.N {
				out = append(out, fmt.Sprintf("line %d: %d chunks read back, want > %d", e.Line, res.ReadBacks, e.N))
			}
		case "readback==":
			if res.ReadBacks != e.N {
				out = append(out, fmt.Sprintf("line %d: %d chunks read back, want %d", e.Line, res.ReadBacks, e.N))
			}
		case "buffers<=":
			for i, p := range res.PeakBuffers {
				if p > e.N {
					out = append(out, fmt.Sprintf("line %d: node %d used %d buffers, want <= %d", e.Line, i+1, p, e.N))
				}
			}
		}
	}
	return out
}

func allVerified(st core.NodeStatus) bool {
	for _, it := range st.Items {
		if !it.Verified {
			return false
		}
	}
	return true
}

// parseList reads "1-3,5" into 0-based indexes.
func parseList(s string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 1 {
			return nil, fmt.Errorf("bad node list %q", s)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a || b-a > 1<<20 {
				return nil, fmt.Errorf("bad node range %q", part)
			}
		}
		for i := a; i <= b; i++ {
			out = append(out, i-1)
		}
	}
	return out, nil
}

// parseSize reads a size (units.ParseSize: 64KiB, 1MB, 4096).
func parseSize(s string) (int64, error) { return units.ParseSize(s) }

// parseDur reads a duration; "us" is taken for "µs".
func parseDur(s string) (time.Duration, error) {
	return time.ParseDuration(strings.Replace(s, "us", "µs", 1))
}

// parseRate reads a rate above zero in bytes per second (units.ParseRate:
// 125MB/s, 1gbit).
func parseRate(s string) (float64, error) {
	bits, err := units.ParseRate(s)
	if err != nil {
		return 0, err
	}
	if bits == 0 {
		return 0, fmt.Errorf("rate %q: want one above zero", s)
	}
	return float64(bits) / 8, nil
}
