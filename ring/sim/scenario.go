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

// scenarioParser holds what ParseScenario has read so far. Faults given
// at a percentage of the stream, and slowness given as a factor, are
// placed once the whole scenario (its items, its link) is known.
type scenarioParser struct {
	sc          *Scenario
	c           *Config
	line        int
	text        string
	f           []string // the line's words
	kills       []pendingKill
	spans       []pendingSpan
	slowFactors [][2]float64
}

// pendingKill is a crash, freeze or restart line.
type pendingKill struct {
	line  int
	node  int
	pct   float64
	at    time.Duration
	crash bool
	kind  string
}

// pendingSpan is a pause or stall line.
type pendingSpan struct {
	line, node int
	pct        float64
	at, dur    time.Duration
	disk       bool
}

// directives reads each command of a scenario, one handler per command.
var directives = map[string]func(p *scenarioParser) error{
	"chain":    (*scenarioParser).chain,
	"link":     (*scenarioParser).link,
	"chunk":    (*scenarioParser).chunk,
	"buffers":  (*scenarioParser).buffers,
	"send":     (*scenarioParser).send,
	"crash":    (*scenarioParser).kill,
	"kill":     (*scenarioParser).kill,
	"freeze":   (*scenarioParser).kill,
	"restart":  (*scenarioParser).kill,
	"slowdisk": (*scenarioParser).slowDisk,
	"slowlink": (*scenarioParser).slowLink,
	"slownic":  (*scenarioParser).slowNIC,
	"corrupt":  (*scenarioParser).chunkFault,
	"drop":     (*scenarioParser).chunkFault,
	"sync":     (*scenarioParser).sync,
	"slow":     (*scenarioParser).slow,
	"policy":   (*scenarioParser).policy,
	"pause":    (*scenarioParser).span,
	"stall":    (*scenarioParser).span,
	"jitter":   (*scenarioParser).duration,
	"dead":     (*scenarioParser).duration,
	"rejoin":   (*scenarioParser).duration,
	"limit":    (*scenarioParser).duration,
	"seed":     (*scenarioParser).seed,
	"openfail": (*scenarioParser).openFail,
	"expect":   func(p *scenarioParser) error { return p.sc.parseExpect(p.line, p.text, p.f, p.bad) },
}

// ParseScenario reads a scenario.
func ParseScenario(r io.Reader) (*Scenario, error) {
	p := &scenarioParser{sc: &Scenario{}}
	p.c = &p.sc.Config
	bs := bufio.NewScanner(r)
	for bs.Scan() {
		p.line++
		text := bs.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 && !strings.Contains(text[:i], "\"") {
			text = text[:i]
		}
		p.text, p.f = text, strings.Fields(text)
		if len(p.f) == 0 {
			continue
		}
		handle, ok := directives[p.f[0]]
		if !ok {
			return nil, p.bad("unknown command %q", p.f[0])
		}
		if err := handle(p); err != nil {
			return nil, err
		}
	}
	if err := bs.Err(); err != nil {
		return nil, fmt.Errorf("read scenario: %w", err)
	}
	return p.finish()
}

func (p *scenarioParser) bad(format string, args ...any) error {
	return &ParseError{Line: p.line, Msg: fmt.Sprintf(format, args...)}
}

// need checks that the line has n words, the command included.
func (p *scenarioParser) need(n int) error {
	if len(p.f) != n {
		return p.bad("%s takes %d arguments, got %d", p.f[0], n-1, len(p.f)-1)
	}
	return nil
}

// node reads a 1-based node number and returns it 0-based.
func (p *scenarioParser) node(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 1<<20 {
		return 0, p.bad("bad node number %q", s)
	}
	return n - 1, nil
}

// rate reads a rate above zero, in bytes per second.
func (p *scenarioParser) rate(s string) (float64, error) {
	r, err := parseRate(s)
	if err != nil {
		return 0, p.bad("%v", err)
	}
	return r, nil
}

// latency reads a latency (a duration, "us" for µs).
func (p *scenarioParser) latency(s string) (time.Duration, error) {
	d, err := parseDur(s)
	if err != nil || d < 0 {
		return 0, p.bad("bad latency %q", s)
	}
	return d, nil
}

// when reads TIME or PCT% (of the stream).
func (p *scenarioParser) when(s string) (at time.Duration, pct float64, err error) {
	if strings.HasSuffix(s, "%") {
		pct, err = strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
		if err != nil || pct < 0 || pct > 100 {
			return 0, 0, p.bad("bad percentage %q", s)
		}
		return 0, pct, nil
	}
	if at, err = parseDur(s); err != nil || at < 0 {
		return 0, 0, p.bad("bad time %q", s)
	}
	return at, 0, nil
}

func (p *scenarioParser) chain() error {
	if err := p.need(2); err != nil {
		return err
	}
	n, err := strconv.Atoi(p.f[1])
	if err != nil || n < 1 || n > 100000 {
		return p.bad("bad chain length %q", p.f[1])
	}
	p.c.Nodes = n
	return nil
}

func (p *scenarioParser) link() error {
	if err := p.need(3); err != nil {
		return err
	}
	var err error
	if p.c.Bandwidth, err = p.rate(p.f[1]); err != nil {
		return err
	}
	p.c.Latency, err = p.latency(p.f[2])
	return err
}

func (p *scenarioParser) chunk() error {
	if err := p.need(2); err != nil {
		return err
	}
	n, err := parseSize(p.f[1])
	if err != nil || n < 1 || n > 64<<20 {
		return p.bad("bad chunk size %q", p.f[1])
	}
	p.c.ChunkSize = int(n)
	return nil
}

func (p *scenarioParser) buffers() error {
	if err := p.need(2); err != nil {
		return err
	}
	n, err := strconv.Atoi(p.f[1])
	if err != nil || n < 1 || n > 1<<16 {
		return p.bad("bad buffer count %q", p.f[1])
	}
	p.c.Buffers = n
	return nil
}

func (p *scenarioParser) send() error {
	if err := p.need(2); err != nil {
		return err
	}
	n, err := parseSize(p.f[1])
	if err != nil || n < 0 || n > 1<<40 {
		return p.bad("bad size %q", p.f[1])
	}
	p.c.Items = append(p.c.Items, n)
	return nil
}

// kill reads crash, kill (the same: its process is gone, its connections
// reset), freeze and restart: CMD N at TIME|PCT%.
func (p *scenarioParser) kill() error {
	if err := p.need(4); err != nil {
		return err
	}
	if p.f[2] != "at" {
		return p.bad("want %s N at TIME|PCT%%", p.f[0])
	}
	kind := p.f[0]
	if kind == "kill" {
		kind = "crash"
	}
	k := pendingKill{line: p.line, crash: kind == "crash", kind: kind}
	var err error
	if k.node, err = p.node(p.f[1]); err != nil {
		return err
	}
	if k.at, k.pct, err = p.when(p.f[3]); err != nil {
		return err
	}
	p.kills = append(p.kills, k)
	return nil
}

func (p *scenarioParser) slowDisk() error {
	if err := p.need(3); err != nil {
		return err
	}
	n, err := p.node(p.f[1])
	if err != nil {
		return err
	}
	r, err := p.rate(p.f[2])
	if err != nil {
		return err
	}
	if p.c.SlowDisk == nil {
		p.c.SlowDisk = map[int]float64{}
	}
	p.c.SlowDisk[n] = r
	return nil
}

func (p *scenarioParser) slowLink() error {
	if err := p.need(4); err != nil {
		return err
	}
	n, err := p.node(p.f[1])
	if err != nil {
		return err
	}
	var l Link
	if l.Bandwidth, err = p.rate(p.f[2]); err != nil {
		return err
	}
	if l.Latency, err = p.latency(p.f[3]); err != nil {
		return err
	}
	if p.c.Links == nil {
		p.c.Links = map[int]Link{}
	}
	p.c.Links[n] = l
	return nil
}

// slowNIC reads slownic N RATE [OUTRATE].
func (p *scenarioParser) slowNIC() error {
	if len(p.f) != 3 && len(p.f) != 4 {
		return p.bad("want slownic N RATE [OUTRATE]")
	}
	n, err := p.node(p.f[1])
	if err != nil {
		return err
	}
	var nic NIC
	if nic.In, err = p.rate(p.f[2]); err != nil {
		return err
	}
	nic.Out = nic.In
	if len(p.f) == 4 {
		if nic.Out, err = p.rate(p.f[3]); err != nil {
			return err
		}
	}
	if p.c.NIC == nil {
		p.c.NIC = map[int]NIC{}
	}
	p.c.NIC[n] = nic
	return nil
}

// chunkFault reads corrupt|drop N chunk SEQ.
func (p *scenarioParser) chunkFault() error {
	if err := p.need(4); err != nil {
		return err
	}
	if p.f[2] != "chunk" {
		return p.bad("want %s N chunk SEQ", p.f[0])
	}
	n, err := p.node(p.f[1])
	if err != nil {
		return err
	}
	seq, err := strconv.ParseUint(p.f[3], 10, 64)
	if err != nil {
		return p.bad("bad chunk number %q", p.f[3])
	}
	m := &p.c.Drop
	if p.f[0] == "corrupt" {
		m = &p.c.Corrupt
	}
	if *m == nil {
		*m = map[int]uint64{}
	}
	(*m)[n] = seq
	return nil
}

func (p *scenarioParser) sync() error {
	if err := p.need(2); err != nil {
		return err
	}
	d, err := parseDur(p.f[1])
	if err != nil || d < 0 {
		return p.bad("bad sync time %q", p.f[1])
	}
	p.c.SyncTime = d
	return nil
}

// slow reads slow N xFACTOR: node N's disk takes the link's rate / FACTOR.
func (p *scenarioParser) slow() error {
	if err := p.need(3); err != nil {
		return err
	}
	n, err := p.node(p.f[1])
	if err != nil {
		return err
	}
	if !strings.HasPrefix(p.f[2], "x") {
		return p.bad("want slow N xFACTOR")
	}
	x, err := strconv.ParseFloat(p.f[2][1:], 64)
	if err != nil || x < 1 || x > 1e6 {
		return p.bad("bad slowness %q", p.f[2])
	}
	p.slowFactors = append(p.slowFactors, [2]float64{float64(n), x})
	return nil
}

// policy reads policy wait|move|drop [after DURATION].
func (p *scenarioParser) policy() error {
	if len(p.f) != 2 && !(len(p.f) == 4 && p.f[2] == "after") {
		return p.bad("want policy wait|move|drop [after DURATION]")
	}
	code, ok := wire.ParseSlow(p.f[1])
	if !ok {
		return p.bad("unknown policy %q (want wait, move or drop)", p.f[1])
	}
	p.c.Slow = code
	p.c.SlowAfter = 3 * time.Second
	if len(p.f) == 4 {
		d, err := time.ParseDuration(p.f[3])
		if err != nil || d <= 0 {
			return p.bad("bad duration %q", p.f[3])
		}
		p.c.SlowAfter = d
	}
	return nil
}

// span reads pause N|source at TIME|PCT% for DURATION, and stall N … (a
// disk that completes nothing meanwhile).
func (p *scenarioParser) span() error {
	if err := p.need(6); err != nil {
		return err
	}
	if p.f[2] != "at" || p.f[4] != "for" {
		return p.bad("want %s N at TIME|PCT%% for DURATION", p.f[0])
	}
	sp := pendingSpan{line: p.line, node: -1, disk: p.f[0] == "stall"}
	var err error
	if p.f[1] != "source" || sp.disk {
		if sp.node, err = p.node(p.f[1]); err != nil {
			return err
		}
	}
	if sp.at, sp.pct, err = p.when(p.f[3]); err != nil {
		return err
	}
	if sp.dur, err = parseDur(p.f[5]); err != nil || sp.dur <= 0 || sp.dur > 24*time.Hour {
		return p.bad("bad duration %q", p.f[5])
	}
	p.spans = append(p.spans, sp)
	return nil
}

// duration reads jitter, dead, rejoin and limit (only jitter may be 0).
func (p *scenarioParser) duration() error {
	if err := p.need(2); err != nil {
		return err
	}
	d, err := parseDur(p.f[1])
	if err != nil || d < 0 || d > 24*time.Hour || d == 0 && p.f[0] != "jitter" {
		return p.bad("bad %s %q", p.f[0], p.f[1])
	}
	switch p.f[0] {
	case "jitter":
		p.c.Jitter = d
	case "dead":
		p.c.Dead = d
	case "rejoin":
		p.c.Rejoin = d
	case "limit":
		p.c.Limit = d
	}
	return nil
}

func (p *scenarioParser) seed() error {
	if err := p.need(2); err != nil {
		return err
	}
	v, err := strconv.ParseInt(p.f[1], 10, 64)
	if err != nil {
		return p.bad("bad seed %q", p.f[1])
	}
	p.c.Seed = v
	return nil
}

func (p *scenarioParser) openFail() error {
	if err := p.need(2); err != nil {
		return err
	}
	n, err := p.node(p.f[1])
	if err != nil {
		return err
	}
	if p.c.OpenFail == nil {
		p.c.OpenFail = map[int]bool{}
	}
	p.c.OpenFail[n] = true
	return nil
}

// finish checks what spans lines and places the faults given at a
// percentage of the stream.
func (p *scenarioParser) finish() (*Scenario, error) {
	sc, c := p.sc, p.c
	if c.Nodes == 0 {
		return nil, &ParseError{Line: p.line, Msg: "no chain line"}
	}
	if c.Bandwidth <= 0 {
		c.Bandwidth = 125e6
	}
	var total int64
	for _, s := range c.Items {
		total += s
	}
	for _, sf := range p.slowFactors {
		if c.SlowDisk == nil {
			c.SlowDisk = map[int]float64{}
		}
		c.SlowDisk[int(sf[0])] = c.Bandwidth / sf[1]
	}
	for _, k := range p.kills {
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
	for _, sp := range p.spans {
		if sp.node >= c.Nodes {
			return nil, &ParseError{Line: sp.line, Msg: fmt.Sprintf("node %d outside a chain of %d", sp.node+1, c.Nodes)}
		}
		at := sp.at
		if sp.pct > 0 {
			at = time.Duration(sp.pct / 100 * float64(total) / c.Bandwidth * float64(time.Second))
		}
		m := &c.Pause
		if sp.disk {
			m = &c.Stall
		}
		if *m == nil {
			*m = map[int][]Span{}
		}
		(*m)[sp.node] = append((*m)[sp.node], Span{At: at, For: sp.dur})
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
