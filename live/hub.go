// Package live is herd's live view of a running session: which machines
// booted, where each one is in the chain, who is slow, who failed and
// why, and each machine's log.
//
// A Hub holds the view. It is fed by what the session already knows: the
// chain's progress (ring snapshots, through Progress), the PXE services'
// machine state (Machines), and their request counts (Count). Handler
// serves it read-only: a web page that updates itself through
// server-sent events (its assets are in the binary: no internet needed),
// the same data as JSON (docs/live.md), each machine's log, and
// Prometheus metrics at /metrics. Nothing served changes any state, so
// nothing needs the session key; bind it to an address only operators
// reach.
//
// Usage:
//
//	hub := live.NewHub("deploy")
//	go http.Serve(l, hub.Handler())
//	... cfg.Progress = func(s ring.Snapshot) { hub.Progress(s) } ...
//	hub.Finish(ok)
package live

import (
	"context"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/herd-cluster/herd/pxe/state"
	"github.com/herd-cluster/herd/ring"
)

// Version is the version of the JSON view (View.Version): fields are
// added, never renamed.
const Version = 1

// Machine states shown, in the order a healthy machine goes through
// them.
const (
	Waiting    = "waiting"    // known, not reached yet
	Booting    = "booting"    // to be provisioned: PXE boot pending
	Registered = "registered" // its agent registered; waiting for the chain
	Receiving  = "receiving"  // in the chain, writing what it receives
	Writing    = "writing"    // everything received, flushing to disk
	Verified   = "verified"   // wrote and verified every item
	Local      = "local"      // switched to boot from its disk
	KO         = "ko"         // failed: see Reason
	Discovered = "discovered" // PXE-booted here without being asked to
)

// States lists the states in display order.
var States = []string{Waiting, Booting, Registered, Receiving, Writing, Verified, Local, KO, Discovered}

// sparkLen is how many rate samples a machine keeps for its sparkline.
const sparkLen = 60

// Limits on what a hub keeps, whatever it is fed.
const (
	maxMachines = 10000
	maxFailures = 1000
	maxLogLines = 400
	maxLineLen  = 512
)

// Machine is one machine (or chain node) of the view.
type Machine struct {
	// ID names the machine in the API: its MAC when known, else its
	// chain address.
	ID    string `json:"id"`
	Name  string `json:"name,omitempty"`
	MAC   string `json:"mac,omitempty"`
	Addr  string `json:"addr,omitempty"`
	State string `json:"state"`
	// Position is the machine's place in the chain now (1 is fed by the
	// source), 0 when it is not in it.
	Position int `json:"position"`
	// Place says how it is fed: chain, tail (moved there for being
	// slow), aside (fed by the source off the chain), bypassed (failed,
	// the chain goes around it), or empty.
	Place string `json:"place,omitempty"`
	// Bytes written, Rate in bytes/s now, Spark the last rates (one a
	// second at most, oldest first).
	Bytes  int64     `json:"bytes"`
	Rate   float64   `json:"rate"`
	Spark  []float64 `json:"spark,omitempty"`
	Reason string    `json:"reason,omitempty"`
	// LogLines counts the lines GET /api/v1/machines/ID/log returns.
	LogLines int       `json:"log_lines"`
	Updated  time.Time `json:"updated"`
}

// Failure is one machine that failed, with why.
type Failure struct {
	ID     string    `json:"id"`
	Name   string    `json:"name,omitempty"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// View is the whole live view, as GET /api/v1/view returns it.
type View struct {
	Version int    `json:"version"`
	Kind    string `json:"kind"` // send, deploy or pxe
	// Chain names the chain running (image, stage2, files, or the
	// session's items); empty between chains.
	Chain    string    `json:"chain,omitempty"`
	Running  bool      `json:"running"`
	OK       *bool     `json:"ok,omitempty"` // set when finished
	Started  time.Time `json:"started"`
	Elapsed  float64   `json:"elapsed"` // seconds
	Total    int64     `json:"total"`   // bytes to send, -1 unknown
	Sent     int64     `json:"sent"`
	Rate     float64   `json:"rate"` // bytes/s, the chain's
	ETA      float64   `json:"eta"`  // seconds left, -1 unknown
	Machines []Machine `json:"machines"`
	// Route is the chain now: the IDs of the machines still fed, in
	// order.
	Route    []string       `json:"route"`
	Failures []Failure      `json:"failures"`
	Counts   map[string]int `json:"counts"`
	Bypasses int            `json:"bypasses"`
	Moves    int            `json:"moves"`
	Rejoins  int            `json:"rejoins"`
	Seq      uint64         `json:"seq"`
}

// machine is what the hub keeps of one machine.
type machine struct {
	Machine
	pxe      string // its PXE state, if the PXE services know it
	node     *ring.NodeStatus
	log      []string
	lastRate time.Time
	failed   bool // counted in failures
	tail     bool // counted in moves
}

// Hub is a live view. Its methods are safe for concurrent use; a nil
// Hub ignores what it is fed, so callers feed one unconditionally.
type Hub struct {
	mu       sync.Mutex
	now      func() time.Time
	kind     string
	chain    string
	running  bool
	ok       *bool
	started  time.Time
	elapsed  time.Duration
	total    int64
	sent     int64
	rate     float64
	lastSent int64
	lastAt   time.Duration
	byID     map[string]*machine
	byAddr   map[string]*machine
	order    []*machine // first seen first
	route    []string
	failures []Failure
	bypasses int
	moves    int
	rejoins  int
	requests map[[2]string]int64 // service, outcome
	seq      uint64
	subs     map[chan struct{}]bool
}

// NewHub returns an empty view for a session of kind (send, deploy, pxe).
func NewHub(kind string) *Hub {
	h := &Hub{now: time.Now, kind: kind, total: -1, byID: map[string]*machine{}, byAddr: map[string]*machine{},
		requests: map[[2]string]int64{}, subs: map[chan struct{}]bool{}}
	h.started = h.now()
	h.running = true
	return h
}

// SetClock replaces the hub's clock (tests).
func (h *Hub) SetClock(now func() time.Time) {
	h.mu.Lock()
	h.now = now
	h.started = now()
	h.mu.Unlock()
}

// changed wakes every subscriber; h.mu is held.
func (h *Hub) changed() {
	h.seq++
	for c := range h.subs {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// Subscribe returns a channel that receives (without blocking the hub:
// wake-ups coalesce) after every change, and a func to stop.
func (h *Hub) Subscribe() (<-chan struct{}, func()) {
	c := make(chan struct{}, 1)
	h.mu.Lock()
	h.subs[c] = true
	h.mu.Unlock()
	return c, func() {
		h.mu.Lock()
		delete(h.subs, c)
		h.mu.Unlock()
	}
}

// Subscribers counts the live event streams.
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// get returns the machine with id, made if new (nil past maxMachines).
func (h *Hub) get(id string) *machine {
	if m := h.byID[id]; m != nil {
		return m
	}
	if len(h.byID) >= maxMachines {
		return nil
	}
	m := &machine{Machine: Machine{ID: id, State: Waiting}}
	h.byID[id] = m
	h.order = append(h.order, m)
	return m
}

// Plan names the machines of a chain before it starts, in chain order,
// so that the view shows them waiting. names may be nil or name some.
func (h *Hub) Plan(addrs []string, names map[string]string) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, a := range addrs {
		m := h.byAddr[a]
		if m == nil {
			if m = h.get(a); m == nil {
				continue
			}
			m.Addr = a
			h.byAddr[a] = m
		}
		if n := names[a]; n != "" {
			m.Name = clean(n, 64)
		}
	}
	h.route = append(h.route[:0], addrs...)
	h.changed()
}

// StartChain says a new chain begins (a deploy runs stage2, then the
// image): what the last chain said of each node is forgotten.
func (h *Hub) StartChain(name string, addrs []string) {
	if h == nil {
		return
	}
	h.mu.Lock()
	h.chain = clean(name, 64)
	h.total, h.sent, h.rate, h.lastSent, h.lastAt = -1, 0, 0, 0, 0
	for _, m := range h.order {
		m.node, m.Position, m.Place, m.Bytes, m.Rate, m.Spark = nil, 0, "", 0, 0, nil
		m.tail = false
		h.derive(m)
	}
	h.mu.Unlock()
	h.Plan(addrs, nil)
}

// Progress takes in a chain's snapshot.
func (h *Hub) Progress(s ring.Snapshot) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	h.elapsed = s.Elapsed
	h.total, h.sent = s.Total, s.Sent
	if dt := (s.Elapsed - h.lastAt).Seconds(); dt >= 1 || h.lastAt == 0 && dt > 0 {
		h.rate = float64(s.Sent-h.lastSent) / dt
		h.lastSent, h.lastAt = s.Sent, s.Elapsed
	}
	pos := map[int]ring.Slot{}
	num := map[int]int{}
	for i, sl := range s.Route {
		pos[sl.Index], num[sl.Index] = sl, i+1
	}
	route := make([]string, 0, len(s.Route))
	ids := make([]string, len(s.Nodes))
	for i := range s.Nodes {
		n := s.Nodes[i]
		m := h.byAddr[n.Addr]
		if m == nil {
			if m = h.get(n.Addr); m == nil {
				continue
			}
			m.Addr = n.Addr
			h.byAddr[n.Addr] = m
		}
		ids[i] = m.ID
		wasFailed := m.node != nil && m.node.State == ring.StateFailed
		if wasFailed && n.State != ring.StateFailed {
			h.rejoins++
		}
		m.node = &n
		m.Bytes = n.Bytes
		m.Rate = n.Rate
		if m.lastRate.IsZero() || now.Sub(m.lastRate) >= time.Second {
			m.Spark = append(m.Spark, n.Rate)
			if len(m.Spark) > sparkLen {
				m.Spark = m.Spark[len(m.Spark)-sparkLen:]
			}
			m.lastRate = now
		}
		if len(s.Route) > 0 {
			m.Position, m.Place = 0, ""
		}
		if sl, ok := pos[n.Index]; ok {
			m.Position = num[n.Index]
			switch {
			case sl.Aside:
				m.Place = "aside"
			case sl.Tail:
				m.Place = "tail"
			default:
				m.Place = "chain"
			}
			if sl.Tail && !m.tail {
				m.tail = true
				h.moves++
			}
		} else if n.State == ring.StateFailed {
			m.Position, m.Place = 0, "bypassed"
			if !wasFailed && n.State == ring.StateFailed {
				h.bypasses++
			}
		}
		h.derive(m)
	}
	for _, sl := range s.Route {
		if sl.Index >= 0 && sl.Index < len(ids) && ids[sl.Index] != "" {
			route = append(route, ids[sl.Index])
		}
	}
	if len(s.Route) > 0 || len(s.Nodes) == 0 {
		h.route = route
	}
	h.changed()
}

// Outcome takes in how a chain ended for its nodes (by address): their
// final state and reason. Bytes are kept where the outcome has none.
func (h *Hub) Outcome(nodes []ring.NodeStatus) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range nodes {
		n := nodes[i]
		m := h.byAddr[n.Addr]
		if m == nil {
			continue
		}
		wasFailed := m.node != nil && m.node.State == ring.StateFailed
		if m.node != nil && n.Bytes == 0 {
			n.Bytes, n.Rate = m.node.Bytes, m.node.Rate
		}
		m.node = &n
		m.Bytes = n.Bytes
		m.Rate = 0
		if n.State == ring.StateFailed {
			m.Position, m.Place = 0, "bypassed"
			if !wasFailed {
				h.bypasses++
			}
		}
		h.derive(m)
	}
	h.changed()
}

// Machines takes in the PXE services' machine state (all of it).
func (h *Hub) Machines(ms []state.Machine) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, sm := range ms {
		m := h.byID[sm.MAC]
		addr := ""
		if sm.IP != "" && sm.Port > 0 {
			addr = net.JoinHostPort(sm.IP, strconv.Itoa(sm.Port))
		}
		if m == nil && addr != "" && h.byAddr[addr] != nil {
			// Known by its chain address first: it is this machine.
			m = h.byAddr[addr]
			delete(h.byID, m.ID)
			m.ID = sm.MAC
			h.byID[sm.MAC] = m
		}
		if m == nil {
			if m = h.get(sm.MAC); m == nil {
				continue
			}
		}
		m.MAC = sm.MAC
		if sm.Name != "" {
			m.Name = clean(sm.Name, 64)
		}
		if addr != "" {
			if m.Addr != "" && m.Addr != addr && h.byAddr[m.Addr] == m {
				delete(h.byAddr, m.Addr)
			}
			m.Addr = addr
			h.byAddr[addr] = m
		}
		m.pxe = string(sm.State)
		if sm.State == state.Failed || sm.Alarm != "" {
			m.Reason = clean(firstNonEmpty(sm.Reason, sm.Alarm), maxLineLen)
		}
		// Its log: what its agent printed, what it did to the clone,
		// and the kernel log tail it sent with a failure.
		var lines []string
		lines = append(lines, sm.AgentLog...)
		if sm.Fixups != "" {
			lines = append(lines, "fix-ups: "+sm.Fixups)
		}
		if len(sm.Log) > 0 {
			lines = append(lines, "kernel log:")
			lines = append(lines, sm.Log...)
		}
		m.log = cleanLines(lines)
		m.LogLines = len(m.log)
		h.derive(m)
	}
	h.changed()
}

// Count records one request a PXE service answered (service dhcp, tftp
// or http; outcome ok or error).
func (h *Hub) Count(service, outcome string) {
	if h == nil {
		return
	}
	h.mu.Lock()
	h.requests[[2]string{clean(service, 16), clean(outcome, 16)}]++
	h.mu.Unlock()
}

// Log appends lines to a machine's log (id: MAC or chain address).
func (h *Hub) Log(id string, lines ...string) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.byID[id]
	if m == nil {
		m = h.byAddr[id]
	}
	if m == nil {
		return
	}
	m.log = append(m.log, cleanLines(lines)...)
	if len(m.log) > maxLogLines {
		m.log = m.log[len(m.log)-maxLogLines:]
	}
	m.LogLines = len(m.log)
	h.changed()
}

// Finish says the session ended, and whether every machine made it.
func (h *Hub) Finish(ok bool) {
	if h == nil {
		return
	}
	h.mu.Lock()
	h.running = false
	h.ok = &ok
	if e := h.elapsed.Seconds(); e > 0 && h.sent > 0 {
		h.rate = float64(h.sent) / e // the mean, once over
	}
	h.changed()
	h.mu.Unlock()
}

// derive sets m's shown state and reason from what the chain and the
// PXE services say of it; h.mu is held.
func (h *Hub) derive(m *machine) {
	st := Waiting
	switch state.Phase(m.pxe) {
	case state.New:
		st = Booting
	case state.Cloning:
		st = Registered
	case state.Done:
		st = Verified
	case state.Local:
		st = Local
	case state.Failed:
		st = KO
	case state.Discovered:
		st = Discovered
	}
	if n := m.node; n != nil && (st == Waiting || st == Registered || st == Booting) {
		switch n.State {
		case ring.StateConnected, ring.StateReceiving:
			st = Receiving
		case ring.StateSyncing:
			st = Writing
		case ring.StateDone:
			st = Verified
			if h.chain == "stage2" {
				st = Registered // in its stage 2, waiting for the system
			}
		case ring.StateFailed:
			st = KO
			m.Reason = clean(n.Err, maxLineLen)
		}
	}
	if st != m.State {
		m.State = st
		m.Updated = h.now()
	}
	if st == KO && !m.failed {
		m.failed = true
		if len(h.failures) < maxFailures {
			h.failures = append(h.failures, Failure{ID: m.ID, Name: m.Name, Reason: m.Reason, At: h.now()})
		}
	}
	if st != KO {
		m.failed = false
	}
}

// View returns the view now.
func (h *Hub) View() View {
	h.mu.Lock()
	defer h.mu.Unlock()
	v := View{Version: Version, Kind: h.kind, Chain: h.chain, Running: h.running, OK: h.ok, Started: h.started,
		Total: h.total, Sent: h.sent, Rate: h.rate, ETA: -1, Route: append([]string{}, h.route...),
		Counts: map[string]int{}, Bypasses: h.bypasses, Moves: h.moves, Rejoins: h.rejoins, Seq: h.seq,
		Machines: make([]Machine, 0, len(h.order)), Failures: make([]Failure, 0, len(h.failures))}
	if h.running {
		v.Elapsed = h.now().Sub(h.started).Seconds()
	} else {
		v.Elapsed = h.elapsed.Seconds()
		if e := h.now().Sub(h.started).Seconds(); e > v.Elapsed {
			v.Elapsed = e
		}
	}
	if h.total > 0 && h.rate > 0 && h.sent < h.total {
		v.ETA = float64(h.total-h.sent) / h.rate
	} else if h.total > 0 && h.sent >= h.total {
		v.ETA = 0
	}
	for _, m := range h.order {
		c := m.Machine
		c.Spark = append([]float64(nil), m.Spark...)
		v.Machines = append(v.Machines, c)
		v.Counts[c.State]++
	}
	for _, f := range h.failures {
		if m := h.byID[f.ID]; m != nil && m.Name != "" {
			f.Name = m.Name
		}
		v.Failures = append(v.Failures, f)
	}
	sort.SliceStable(v.Machines, func(i, j int) bool {
		a, b := v.Machines[i], v.Machines[j]
		if (a.Position == 0) != (b.Position == 0) {
			return a.Position != 0
		}
		return a.Position < b.Position
	})
	return v
}

// MachineLog returns the log of the machine with id (MAC or address).
func (h *Hub) MachineLog(id string) ([]string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.byID[id]
	if m == nil {
		m = h.byAddr[id]
	}
	if m == nil {
		return nil, false
	}
	out := append([]string{}, m.log...)
	if m.Reason != "" && m.State == KO {
		out = append(out, "failed: "+m.Reason)
	}
	return out, true
}

// clean bounds s to n bytes and drops control characters, so that what
// a machine said cannot mangle a log or a page.
func clean(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
}

func cleanLines(lines []string) []string {
	if len(lines) > maxLogLines {
		lines = lines[len(lines)-maxLogLines:]
	}
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = clean(l, maxLineLen)
	}
	return out
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// WatchStore feeds h the machine state of st now and after every change,
// until ctx ends. Run it in a goroutine.
func (h *Hub) WatchStore(ctx context.Context, st *state.Store) {
	if h == nil {
		return
	}
	for {
		ch := st.Changed()
		h.Machines(st.List())
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
	}
}
