package ring

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herd-cluster/herd/ring/core"
	"github.com/herd-cluster/herd/ring/seal"
	"github.com/herd-cluster/herd/ring/wire"
)

const (
	tickEvery     = core.TickInterval
	progressEvery = 200 * time.Millisecond
	dialRetry     = core.DialRetry
	// rejoinConnectTimeout bounds the connect of a rejoin attempt (see
	// core.Action.Rejoin); the source tries again every Rejoin interval.
	rejoinConnectTimeout = 500 * time.Millisecond
	// handshakeTimeout bounds each step of a handshake a node starts
	// (dialing the next node); handshakeDeadline bounds the whole of one
	// it answers.
	handshakeTimeout = 10 * time.Second
	// maxControl is the largest control frame accepted from an
	// authenticated peer: a manifest or an ack of a chain of thousands
	// of nodes fits many times over.
	maxControl   = 4 << 20
	drainTimeout = 10 * time.Second
	// pingEvery: a node that sent its downstream nothing for this long
	// sends a Ping (see upstreamSilence).
	pingEvery = time.Second
)

// layout is where a chunk buffer keeps a Data frame and, when they cannot
// sit in the frame itself, the chunk's plain bytes:
//
//	[header, fixed fields, sealed payload, hop tag: frame bytes)[plain chunk: chunk bytes]
//
// With a key the frame holds the chunk sealed (nonce, ciphertext, tag) and
// the plain bytes the node writes are apart; with compression the frame
// holds the compressed chunk. Without either the plain bytes are the
// frame's payload (rawOff == wire.DataHeaderSize, no room past the frame).
type layout struct {
	chunk  int // the session's chunk size
	frame  int // room for the largest frame
	rawOff int // where the plain chunk is
	size   int // buffer size
}

// frameLayout is the layout of a session's buffers.
func frameLayout(chunk int, compress, keyed bool) layout {
	over := seal.TagSize // xxh3 checksum
	if keyed {
		over = 12 + 2*seal.TagSize // nonce, the source's tag, the hop tag
	}
	if compress {
		over += 4 // the chunk's length before the compressed bytes
	}
	l := layout{chunk: chunk, frame: wire.DataHeaderSize + chunk + over}
	if !compress && !keyed {
		l.rawOff, l.size = wire.DataHeaderSize, l.frame
		return l
	}
	l.rawOff, l.size = l.frame, l.frame+chunk
	return l
}

// apart reports whether the plain chunk is apart from the frame.
func (l layout) apart() bool { return l.rawOff >= l.frame }

// raw is the region of buf for the plain chunk.
func (l layout) raw(buf []byte) []byte { return buf[l.rawOff : l.rawOff+l.chunk] }

// pool is a fixed set of chunk buffers, allocated on first use. get blocks
// while all are in use: this is the backpressure that slows the upstream.
type pool struct {
	layout
	bufs [][]byte
	free chan int
	used atomic.Int64
	peak atomic.Int64
}

// newPool returns a pool of buffers of layout l within limit bytes (at
// least 4 buffers).
func newPool(limit int64, l layout) *pool {
	n := int(limit / int64(l.size))
	if n < 4 {
		n = 4
	}
	p := &pool{layout: l, bufs: make([][]byte, n), free: make(chan int, n)}
	for i := 0; i < n; i++ {
		p.free <- i
	}
	return p
}

// payloadBytes is how many chunk bytes the pool's buffers hold in all: a
// node's memory as its core counts it.
func (p *pool) payloadBytes() int64 { return int64(len(p.bufs)) * int64(p.chunk) }

func (p *pool) get(ctx context.Context) (core.Ref, []byte, error) {
	select {
	case i := <-p.free:
		if p.bufs[i] == nil {
			p.bufs[i] = make([]byte, p.size)
		}
		u := p.used.Add(1)
		for {
			pk := p.peak.Load()
			if u <= pk || p.peak.CompareAndSwap(pk, u) {
				break
			}
		}
		return core.Ref(i + 1), p.bufs[i], nil
	case <-ctx.Done():
		return 0, nil, ctx.Err()
	}
}

// buf returns the buffer of r; nil when r is not one of the pool's.
func (p *pool) buf(r core.Ref) []byte {
	if r < 1 || int(r) > len(p.bufs) {
		return nil
	}
	return p.bufs[int(r)-1]
}

// rbBase offsets the refs of read-back buffers (chunks rebuilt to resume a
// node), which come from a small pool of their own: the stream's pool may
// be full of frames waiting behind the rebuild.
const rbBase core.Ref = 1 << 40

// rbBuffers is how many read-back buffers a driver keeps (the core asks
// for at most that many at once).
const rbBuffers = 4

// put frees r. A ref that is not the pool's, or one freed twice (the
// channel is full), is dropped rather than block or corrupt the pool.
func (p *pool) put(r core.Ref) {
	if r < 1 || int(r) > len(p.bufs) {
		return
	}
	// used drops before the buffer is free again, so a get racing with
	// this put never counts it twice.
	p.used.Add(-1)
	select {
	case p.free <- int(r) - 1:
	default:
		p.used.Add(1)
	}
}

// queue is an unbounded FIFO feeding one worker goroutine, so the event
// loop never blocks on I/O.
type queue[T any] struct {
	mu     sync.Mutex
	cond   *sync.Cond
	items  []T
	closed bool
}

func newQueue[T any]() *queue[T] {
	q := &queue[T]{}
	q.cond = sync.NewCond(&q.mu)
	return q
}

func (q *queue[T]) push(v T) {
	q.mu.Lock()
	q.items = append(q.items, v)
	q.mu.Unlock()
	q.cond.Signal()
}

func (q *queue[T]) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Broadcast()
}

func (q *queue[T]) pop() (T, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) == 0 && !q.closed {
		q.cond.Wait()
	}
	var zero T
	if len(q.items) == 0 {
		return zero, false
	}
	v := q.items[0]
	q.items[0] = zero
	q.items = q.items[1:]
	return v, true
}

func randomBytes(b []byte) {
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("ring: crypto/rand: %v", err))
	}
}

// loop is the event loop shared by Send and Receive: it feeds a state
// machine with events from the I/O goroutines and performs its actions.
type loop struct {
	step   func(core.Event) []core.Action
	evc    chan core.Event
	done   chan struct{}
	start  time.Time
	pool   atomic.Pointer[pool]
	down   *downWorker
	sink   *sinkWorker      // receivers only
	up     *queue[wire.Msg] // receivers only: frames to the upstream
	logf   func(string, ...any)
	trace  bool // HERD_RING_TRACE set: log every decision (see traced)
	onTick func()
	// Receivers only: replacement upstream connections, and the number
	// of the current one (events of older ones are dropped).
	hops  <-chan accepted
	onHop func(accepted) []core.Action
	upGen func() int
	// readBack performs ActReadBack (nodes: the sink worker; the source:
	// its replay worker).
	readBack func(core.Action)
	rbMu     sync.Mutex
	rbPool   *pool
	rbCount  int // read-back buffers (at least rbBuffers)
	// aside returns the worker of the source's aside feed of a node
	// (core.Action.Aside), started on first use; nil on receivers.
	aside func(index int) *downWorker
	// asides lists the aside workers started (the source).
	asides func() []*downWorker
}

// downFor is the worker an action goes to: the chain's, or an aside feed's.
func (l *loop) downFor(a core.Action) *downWorker {
	if a.Aside && l.aside != nil {
		return l.aside(a.Index)
	}
	return l.down
}

// rb returns the read-back pool, of buffers of layout lay.
func (l *loop) rb(lay layout) *pool {
	l.rbMu.Lock()
	defer l.rbMu.Unlock()
	if l.rbPool == nil {
		l.rbPool = newPool(int64(max(l.rbCount, rbBuffers)*lay.size), lay)
	}
	return l.rbPool
}

// buf returns the buffer of ref, from either pool.
func (l *loop) buf(r core.Ref) []byte {
	if r >= rbBase {
		l.rbMu.Lock()
		defer l.rbMu.Unlock()
		if l.rbPool == nil {
			return nil
		}
		return l.rbPool.buf(r - rbBase)
	}
	return l.pool.Load().buf(r)
}

// release frees ref, in either pool.
func (l *loop) release(r core.Ref) {
	if r >= rbBase {
		l.rbMu.Lock()
		p := l.rbPool
		l.rbMu.Unlock()
		if p != nil {
			p.put(r - rbBase)
		}
		return
	}
	l.pool.Load().put(r)
}

func newLoop(logf func(string, ...any)) *loop {
	return &loop{evc: make(chan core.Event, 256), done: make(chan struct{}), start: time.Now(), logf: logf,
		trace: os.Getenv("HERD_RING_TRACE") != ""}
}

// traced returns acts, the answer of the state machine to ev, and logs
// both (core.TraceLines) when tracing is on: the same lines as the
// simulator's trace, to debug a real run.
func (l *loop) traced(ev core.Event, acts []core.Action) []core.Action {
	if l.trace {
		for _, line := range core.TraceLines(ev, acts) {
			l.logf("trace %9.3fs %s", ev.Now.Seconds(), line)
		}
	}
	return acts
}

// emit delivers an event to the loop unless it has ended.
func (l *loop) emit(ev core.Event) bool {
	select {
	case l.evc <- ev:
		return true
	case <-l.done:
		return false
	}
}

func (l *loop) now() time.Duration { return time.Since(l.start) }

// run performs initial, then steps events until the machine is done or ctx
// ends. It returns the reason of ActDone.
//
// A panic in the state machine or the actions (a bug a peer's frames
// found) ends the session with an error instead of the process.
func (l *loop) run(ctx context.Context, initial []core.Action) (reason string, err error) {
	defer recoverAs(l, "in the session", func(r string) { reason, err = "", errors.New(r) })
	t := time.NewTicker(tickEvery)
	defer t.Stop()
	if reason, done := l.perform(initial); done {
		return reason, nil
	}
	for {
		var ev core.Event
		select {
		case ev = <-l.evc:
		case <-t.C:
			// Events that arrived before the tick go first: a busy loop
			// must not mistake queued acks for silence.
			for n := len(l.evc); n > 0; n-- {
				if reason, done := l.handle(<-l.evc); done {
					return reason, nil
				}
			}
			ev = core.Event{Kind: core.EvTick}
			if l.onTick != nil {
				l.onTick()
			}
			l.pingIdle()
		case h := <-l.hops:
			if reason, done := l.perform(l.onHop(h)); done {
				return reason, nil
			}
			continue
		case <-ctx.Done():
			return "", ctx.Err()
		}
		if reason, done := l.handle(ev); done {
			return reason, nil
		}
	}
}

// handle steps one event and performs the actions.
func (l *loop) handle(ev core.Event) (string, bool) {
	if (ev.Kind == core.EvUp || ev.Kind == core.EvUpClosed) && l.upGen != nil && ev.Index != l.upGen() {
		if ev.Ref != 0 {
			l.pool.Load().put(ev.Ref)
		}
		return "", false // from a replaced upstream connection
	}
	ev.Now = l.now()
	switch ev.Kind {
	case core.EvDownFailed:
		l.logf("ring: connection to node %d ended: %s", ev.Index, ev.Err)
	case core.EvUpClosed:
		l.logf("ring: upstream connection closed: %s", ev.Err)
	case core.EvDown:
		if r, ok := ev.Msg.(*wire.Resume); ok && r.Frames > 0 {
			l.logf("ring: node %d resumes from frame %d", ev.Index, r.Frames)
		}
	}
	return l.perform(l.step(ev))
}

func (l *loop) perform(acts []core.Action) (reason string, done bool) {
	for _, a := range acts {
		switch a.Kind {
		case core.ActOpen, core.ActWrite, core.ActSync, core.ActCloseSinks:
			l.sink.q.push(a)
		case core.ActSendDown, core.ActDial:
			w := l.downFor(a)
			if _, ok := a.Msg.(*wire.Detach); ok {
				// A slow node is moved or dropped: the chunks queued
				// for it are skipped so the word reaches it at once.
				w.detaching.Store(true)
			}
			w.q.push(a)
		case core.ActCloseDown:
			w := l.downFor(a)
			if a.Err != "" && !w.detaching.Load() {
				w.abort()
			}
			w.q.push(a)
		case core.ActSendUp:
			if l.up != nil {
				l.up.push(a.Msg)
			}
		case core.ActRelease:
			l.release(a.Ref)
		case core.ActReadBack:
			if l.readBack != nil {
				l.readBack(a)
			} else {
				go l.emit(core.Event{Kind: core.EvReadBack, Item: a.Item, Seq: a.Seq, Err: "this node cannot read back"})
			}
		case core.ActDone:
			reason, done = a.Err, true
		}
	}
	return reason, done
}

// downWorker owns the downstream connection: it dials, sends frames in
// order and reads acks.
type downWorker struct {
	q       *queue[core.Action]
	l       *loop
	ctx     context.Context
	key     []byte
	dial    func(context.Context, string, string) (net.Conn, error)
	timeout time.Duration
	dead    time.Duration
	mu      sync.Mutex
	hop     *hopConn
	idx     int
	broken  bool
	wg      sync.WaitGroup
	// lastWrite is when a frame last went to the downstream (unix ns);
	// pinging: a Ping is queued (see pingIdle).
	lastWrite atomic.Int64
	pinging   atomic.Bool
	// detaching: a Detach is queued; data frames before it are skipped.
	detaching atomic.Bool
	// aside: the worker feeds node asideOf aside the chain (the source);
	// its events say so (core.Event.Aside).
	aside   bool
	asideOf int
}

// emit hands an event of this worker's connection to the loop.
func (w *downWorker) emit(ev core.Event) bool {
	if w.aside {
		ev.Aside, ev.Index = true, w.asideOf
	}
	return w.l.emit(ev)
}

func newDownWorker(ctx context.Context, l *loop, key []byte, dial func(context.Context, string, string) (net.Conn, error), timeout, dead time.Duration) *downWorker {
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	if timeout <= 0 {
		timeout = DefaultConnectTimeout
	}
	if dead <= 0 {
		dead = DefaultDeadTimeout
	}
	w := &downWorker{q: newQueue[core.Action](), l: l, ctx: ctx, key: key, dial: dial, timeout: timeout, dead: dead}
	w.wg.Add(1)
	go w.run()
	return w
}

// abort closes the connection at once (a frozen peer must not block us).
func (w *downWorker) abort() {
	w.mu.Lock()
	if w.hop != nil {
		w.hop.conn.Close()
	}
	w.broken = true
	w.mu.Unlock()
}

// pingIdle queues a Ping on the downstream hop when nothing went on it for
// pingEvery, so the node after us can tell a quiet upstream from a dead
// one (it declares its upstream lost after upstreamSilence).
func (w *downWorker) pingIdle() {
	w.mu.Lock()
	up := w.hop != nil && !w.broken
	w.mu.Unlock()
	if !up || time.Since(time.Unix(0, w.lastWrite.Load())) < pingEvery || !w.pinging.CompareAndSwap(false, true) {
		return
	}
	w.q.push(core.Action{Kind: core.ActSendDown, Msg: &wire.Ping{}})
}

// pingIdle pings the idle downstream hops of the loop.
func (l *loop) pingIdle() {
	if l.down != nil {
		l.down.pingIdle()
	}
	if l.asides != nil {
		for _, w := range l.asides() {
			w.pingIdle()
		}
	}
}

func (w *downWorker) run() {
	defer w.wg.Done()
	defer func() {
		w.mu.Lock()
		if w.hop != nil {
			w.hop.conn.Close()
		}
		w.mu.Unlock()
	}()
	for {
		a, ok := w.q.pop()
		if !ok {
			return
		}
		switch a.Kind {
		case core.ActDial:
			w.mu.Lock()
			if w.hop != nil {
				w.hop.conn.Close()
				w.hop = nil
			}
			w.mu.Unlock()
			timeout, busy, hs := w.timeout, w.timeout, handshakeTimeout
			if a.Bypass {
				// Replacing a lost node: a node that refuses the
				// connection or does not answer within about the dead
				// timeout is lost too. One that refuses because it
				// still hears from its upstream is alive: it is asked
				// again for longer (core.BusyFor).
				fast := max(w.dead, time.Second)
				timeout, busy, hs = 0, min(busy, core.BusyFor(w.dead, true)), min(hs, fast)
			}
			var connect time.Duration
			if a.Rejoin {
				// Taking back a failed node: one that is back accepts
				// at once (a started process), or refuses (not yet);
				// a machine still off does not answer, and every node
				// up the chain waits for our answer to end the session.
				connect = min(hs, rejoinConnectTimeout)
			}
			hello := wire.Hello{Session: a.Session, Index: uint32(a.Index), From: a.From, Tail: a.Tail, Takeover: a.Takeover}
			h, err := dialHop(w.ctx, w.dial, a.Addr, w.key, hello, timeout, busy, hs, connect)
			if err != nil {
				w.l.logf("ring: node %d (%s): %v", a.Index, a.Addr, err)
				w.emit(core.Event{Kind: core.EvDownFailed, Index: a.Index, Err: err.Error()})
				continue
			}
			w.mu.Lock()
			w.hop, w.idx, w.broken = h, a.Index, false
			w.mu.Unlock()
			w.lastWrite.Store(time.Now().UnixNano())
			w.emit(core.Event{Kind: core.EvDownUp, Index: a.Index})
			go w.readAcks(h, a.Index)
		case core.ActSendDown:
			w.send(a)
		case core.ActCloseDown:
			w.mu.Lock()
			if w.hop != nil {
				tc, ok := w.hop.conn.(interface{ CloseWrite() error })
				switch {
				case ok && a.Err == "":
					// Let the peer read everything, then it closes.
					_ = tc.CloseWrite()
				case ok && w.detaching.Load():
					// A Detach went out: let the peer read it too. A
					// full close while its acks still arrive would
					// reset the connection, and the peer would lose
					// what it had not read yet, the Detach with it.
					// Its acks are drained (and ignored) until it
					// hangs up, for at most the dead timeout.
					_ = tc.CloseWrite()
					c := w.hop.conn
					time.AfterFunc(max(w.dead, time.Second), func() { c.Close() })
					w.hop = nil
				default:
					w.hop.conn.Close()
					w.hop = nil
				}
			}
			w.broken = true
			w.mu.Unlock()
			w.detaching.Store(false)
		}
	}
}

func (w *downWorker) send(a core.Action) {
	if _, ok := a.Msg.(*wire.Ping); ok {
		w.pinging.Store(false)
	}
	w.mu.Lock()
	h, broken, idx := w.hop, w.broken, w.idx
	w.mu.Unlock()
	var err error
	_, isData := a.Msg.(*wire.Data)
	skip := isData && w.detaching.Load()
	if _, ok := a.Msg.(*wire.Detach); ok && h != nil {
		_ = h.conn.SetWriteDeadline(time.Now().Add(w.dead))
	}
	if h != nil && !broken && !skip {
		if isData {
			// The frame as built or received (sealed, maybe
			// compressed): its header says how long it is.
			err = errors.New("ring: data frame without its buffer")
			if buf := w.l.buf(a.Ref); buf != nil {
				if hd, perr := wire.ParseHeader(buf); perr == nil && wire.HeaderSize+int(hd.Len) <= len(buf) {
					err = h.writeData(buf[:wire.HeaderSize+int(hd.Len)])
				}
			}
		} else {
			err = h.writeMsg(a.Msg)
		}
		w.lastWrite.Store(time.Now().UnixNano())
		if err != nil {
			w.mu.Lock()
			w.broken = true
			w.mu.Unlock()
			w.emit(core.Event{Kind: core.EvDownFailed, Index: idx, Err: err.Error()})
		}
	}
	if a.Ref != 0 {
		w.emit(core.Event{Kind: core.EvSent, Ref: a.Ref})
	}
}

func (w *downWorker) readAcks(h *hopConn, idx int) {
	defer recoverAs(w.l, "reading acks", func(err string) {
		h.conn.Close()
		w.emit(core.Event{Kind: core.EvDownFailed, Index: idx, Err: err})
	})
	for {
		m, err := h.readControl()
		if err != nil {
			w.mu.Lock()
			if w.hop != h {
				h.conn.Close() // a connection we had let go of (detached)
			}
			w.mu.Unlock()
			if isAuthFailure(err) {
				w.l.logf("ring: node %d: %v (closing the hop)", idx, err)
			}
			w.emit(core.Event{Kind: core.EvDownFailed, Index: idx, Err: err.Error()})
			return
		}
		if !w.emit(core.Event{Kind: core.EvDown, Msg: m, Index: idx}) {
			return
		}
	}
}

// stop drains the queue (bounded by drainTimeout) and closes the connection.
func (w *downWorker) stop() {
	w.q.close()
	ch := make(chan struct{})
	go func() { w.wg.Wait(); close(ch) }()
	select {
	case <-ch:
	case <-time.After(drainTimeout):
		w.abort()
		<-ch
	}
}
