package ring

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herd-cluster/herd/ring/core"
	"github.com/herd-cluster/herd/ring/wire"
)

const (
	tickEvery     = 100 * time.Millisecond
	progressEvery = 200 * time.Millisecond
	dialRetry     = 200 * time.Millisecond
	// rejoinConnectTimeout bounds the connect of a rejoin attempt (see
	// core.Action.Rejoin); the source tries again every Rejoin interval.
	rejoinConnectTimeout = 500 * time.Millisecond
	handshakeTimeout     = 10 * time.Second
	maxControl           = 16 << 20 // largest non-data frame accepted
	drainTimeout         = 10 * time.Second
)

// errStray marks a connection that did not speak the protocol.
var errStray = errors.New("ring: stray connection")

// pool is a fixed set of chunk buffers, allocated on first use. get blocks
// while all are in use: this is the backpressure that slows the upstream.
type pool struct {
	size   int
	rawOff int // > 0: buffers keep a decompressed chunk from here (see frameLayout)
	bufs   [][]byte
	free   chan int
	used   atomic.Int64
	peak   atomic.Int64
}

func newPool(limit int64, size int) *pool {
	n := int(limit / int64(size))
	if n < 4 {
		n = 4
	}
	p := &pool{size: size, bufs: make([][]byte, n), free: make(chan int, n)}
	for i := 0; i < n; i++ {
		p.free <- i
	}
	return p
}

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

func (p *pool) buf(r core.Ref) []byte { return p.bufs[int(r)-1] }

// chunk returns the session's chunk size and where a buffer keeps a
// decompressed chunk (past the frame), from the buffer size.
func (p *pool) chunk() (chunk, rawOff int) {
	if p.rawOff > 0 {
		return p.size - p.rawOff, p.rawOff
	}
	return p.size - wire.DataHeaderSize, p.size
}

// rbBase offsets the refs of read-back buffers (chunks rebuilt to resume a
// node), which come from a small pool of their own: the stream's pool may
// be full of frames waiting behind the rebuild.
const rbBase core.Ref = 1 << 40

// rbBuffers is how many read-back buffers a driver keeps (the core asks
// for at most that many at once).
const rbBuffers = 4

func (p *pool) put(r core.Ref) {
	if r == 0 {
		return
	}
	p.used.Add(-1)
	p.free <- int(r) - 1
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

// readControl reads one whole frame of at most maxControl bytes.
func readControl(r io.Reader) (wire.Msg, error) {
	var h [wire.HeaderSize]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	hd, err := wire.ParseHeader(h[:])
	if err != nil {
		return nil, err
	}
	if hd.Len > maxControl {
		return nil, fmt.Errorf("%s frame of %d bytes: %w", hd.Type, hd.Len, wire.ErrTooLarge)
	}
	body := make([]byte, hd.Len)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	return wire.DecodeBody(hd.Type, body)
}

func writeMsg(w io.Writer, m wire.Msg) error {
	_, err := w.Write(wire.Encode(m))
	return err
}

// dialHop connects to the node at addr, retrying until timeout, and runs
// the upstream side of the handshake (each step bounded by hsTimeout). A
// node that refuses because it still hears from its upstream is asked
// again until busyFor has passed. On success the node has accepted us.
func dialHop(ctx context.Context, dial func(context.Context, string, string) (net.Conn, error), addr string,
	key []byte, s wire.SessionID, index int, tail, takeover bool, timeout, busyFor, hsTimeout, connTimeout time.Duration) (net.Conn, *bufio.Reader, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	if connTimeout <= 0 {
		connTimeout = hsTimeout
	}
	for {
		conn, err := dialOnce(ctx, dial, addr, deadline, connTimeout)
		if err != nil {
			return nil, nil, err
		}
		br, err := upHandshake(conn, key, s, index, tail, takeover, hsTimeout)
		if err == nil {
			return conn, br, nil
		}
		conn.Close()
		if !errors.Is(err, errBusyHop) || time.Since(start) > busyFor {
			return nil, nil, fmt.Errorf("handshake with %s: %w", addr, err)
		}
		// The node still hears from its current upstream: it may be us
		// who are cut off, or it is about to notice. Ask again.
		select {
		case <-time.After(dialRetry):
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
}

// dialOnce connects, retrying failed connections until deadline; each
// attempt waits connTimeout at most.
func dialOnce(ctx context.Context, dial func(context.Context, string, string) (net.Conn, error), addr string, deadline time.Time, connTimeout time.Duration) (net.Conn, error) {
	for {
		dctx, cancel := context.WithTimeout(ctx, connTimeout)
		c, err := dial(dctx, "tcp", addr)
		cancel()
		if err == nil {
			return c, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("connect %s: %w", addr, err)
		}
		select {
		case <-time.After(dialRetry):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// errBusyHop is a refusal worth retrying.
var errBusyHop = errors.New("node still hears from its upstream")

func upHandshake(conn net.Conn, key []byte, s wire.SessionID, index int, tail, takeover bool, timeout time.Duration) (*bufio.Reader, error) {
	_ = conn.SetDeadline(time.Now().Add(timeout))
	defer conn.SetDeadline(time.Time{})
	hello := &wire.Hello{Session: s, Index: uint32(index), Keyed: len(key) > 0, Tail: tail, Takeover: takeover}
	randomBytes(hello.Nonce[:])
	if err := writeMsg(conn, hello); err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(conn, 64<<10)
	m, err := readControl(br)
	if err != nil {
		return nil, err
	}
	ch, ok := m.(*wire.Challenge)
	if !ok {
		if rj, ok := m.(*wire.Reject); ok {
			return nil, fmt.Errorf("rejected: %s", rj.Reason)
		}
		return nil, fmt.Errorf("unexpected %s frame instead of challenge", m.Type())
	}
	if len(key) > 0 {
		want := wire.HandshakeMAC(key, wire.RoleDown, s, uint32(index), hello.Nonce, ch.Nonce)
		if !wire.EqualMAC(want, ch.MAC) {
			return nil, errors.New("authentication failed: the node does not prove the session key")
		}
	}
	if err := writeMsg(conn, &wire.Proof{MAC: wire.HandshakeMAC(key, wire.RoleUp, s, uint32(index), hello.Nonce, ch.Nonce)}); err != nil {
		return nil, err
	}
	m, err = readControl(br)
	if err != nil {
		return nil, err
	}
	switch m := m.(type) {
	case *wire.Ack:
		return br, nil
	case *wire.Reject:
		if m.Reason == errUpstreamAlive {
			return nil, fmt.Errorf("rejected: %w", errBusyHop)
		}
		return nil, fmt.Errorf("rejected: %s", m.Reason)
	default:
		return nil, fmt.Errorf("unexpected %s frame instead of acceptance", m.Type())
	}
}

// downHandshake runs the receiving side of a hop's handshake. accept
// decides, once the peer is authenticated, whether this session is welcome
// (an empty reason accepts).
func downHandshake(conn net.Conn, key []byte, timeout time.Duration, accept func(*wire.Hello) string) (*wire.Hello, *bufio.Reader, error) {
	_ = conn.SetDeadline(time.Now().Add(timeout))
	defer conn.SetDeadline(time.Time{})
	// Smaller than a chunk, so chunk payloads are read straight into
	// their buffers instead of through this one.
	br := bufio.NewReaderSize(conn, 64<<10)
	m, err := readControl(br)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", errStray, err)
	}
	hello, ok := m.(*wire.Hello)
	if !ok {
		return nil, nil, fmt.Errorf("%w: %s frame before hello", errStray, m.Type())
	}
	reject := func(reason string) error {
		_ = writeMsg(conn, &wire.Reject{Reason: reason})
		return errors.New(reason)
	}
	if len(key) > 0 && !hello.Keyed {
		return nil, nil, reject("this node requires a session key")
	}
	ch := &wire.Challenge{}
	randomBytes(ch.Nonce[:])
	ch.MAC = wire.HandshakeMAC(key, wire.RoleDown, hello.Session, hello.Index, hello.Nonce, ch.Nonce)
	if err := writeMsg(conn, ch); err != nil {
		return nil, nil, err
	}
	m, err = readControl(br)
	if err != nil {
		return nil, nil, fmt.Errorf("waiting for proof: %w", err)
	}
	pr, ok := m.(*wire.Proof)
	if !ok {
		return nil, nil, fmt.Errorf("%s frame instead of proof", m.Type())
	}
	if len(key) > 0 {
		want := wire.HandshakeMAC(key, wire.RoleUp, hello.Session, hello.Index, hello.Nonce, ch.Nonce)
		if !wire.EqualMAC(want, pr.MAC) {
			return nil, nil, reject("authentication failed: wrong key proof")
		}
	}
	if reason := accept(hello); reason != "" {
		return nil, nil, reject(reason)
	}
	ack := &wire.Ack{Nodes: []wire.AckNode{{Index: hello.Index, State: wire.StConnected}}}
	if err := writeMsg(conn, ack); err != nil {
		return nil, nil, err
	}
	return hello, br, nil
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
	onTick func()
	// Receivers only: replacement upstream connections, and the number
	// of the current one (events of older ones are dropped).
	hops  <-chan hop
	onHop func(hop) []core.Action
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
}

// downFor is the worker an action goes to: the chain's, or an aside feed's.
func (l *loop) downFor(a core.Action) *downWorker {
	if a.Aside && l.aside != nil {
		return l.aside(a.Index)
	}
	return l.down
}

// rb returns the read-back pool for chunks of size bytes (frame included).
func (l *loop) rb(size int) *pool {
	l.rbMu.Lock()
	defer l.rbMu.Unlock()
	if l.rbPool == nil {
		l.rbPool = newPool(int64(max(l.rbCount, rbBuffers)*size), size)
	}
	return l.rbPool
}

// buf returns the buffer of ref, from either pool.
func (l *loop) buf(r core.Ref) []byte {
	if r >= rbBase {
		l.rbMu.Lock()
		defer l.rbMu.Unlock()
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
		p.put(r - rbBase)
		return
	}
	l.pool.Load().put(r)
}

func newLoop(logf func(string, ...any)) *loop {
	return &loop{evc: make(chan core.Event, 256), done: make(chan struct{}), start: time.Now(), logf: logf}
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
func (l *loop) run(ctx context.Context, initial []core.Action) (string, error) {
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
	conn    net.Conn
	idx     int
	broken  bool
	wg      sync.WaitGroup
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
	if w.conn != nil {
		w.conn.Close()
	}
	w.broken = true
	w.mu.Unlock()
}

func (w *downWorker) run() {
	defer w.wg.Done()
	defer func() {
		w.mu.Lock()
		if w.conn != nil {
			w.conn.Close()
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
			if w.conn != nil {
				w.conn.Close()
				w.conn = nil
			}
			w.mu.Unlock()
			timeout, busy, hs := w.timeout, w.timeout, handshakeTimeout
			if a.Bypass {
				// Replacing a lost node: a node that refuses the
				// connection or does not answer within about the dead
				// timeout is lost too.
				fast := max(w.dead, time.Second)
				timeout, busy, hs = 0, min(busy, fast), min(hs, fast)
			}
			var connect time.Duration
			if a.Rejoin {
				// Taking back a failed node: one that is back accepts
				// at once (a started process), or refuses (not yet);
				// a machine still off does not answer, and every node
				// up the chain waits for our answer to end the session.
				connect = min(hs, rejoinConnectTimeout)
			}
			conn, br, err := dialHop(w.ctx, w.dial, a.Addr, w.key, a.Session, a.Index, a.Tail, a.Takeover, timeout, busy, hs, connect)
			if err != nil {
				w.l.logf("ring: node %d (%s): %v", a.Index, a.Addr, err)
				w.emit(core.Event{Kind: core.EvDownFailed, Index: a.Index, Err: err.Error()})
				continue
			}
			w.mu.Lock()
			w.conn, w.idx, w.broken = conn, a.Index, false
			w.mu.Unlock()
			w.emit(core.Event{Kind: core.EvDownUp, Index: a.Index})
			go w.readAcks(conn, br, a.Index)
		case core.ActSendDown:
			w.send(a)
		case core.ActCloseDown:
			w.mu.Lock()
			if w.conn != nil {
				tc, ok := w.conn.(interface{ CloseWrite() error })
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
					c := w.conn
					time.AfterFunc(max(w.dead, time.Second), func() { c.Close() })
					w.conn = nil
				default:
					w.conn.Close()
					w.conn = nil
				}
			}
			w.broken = true
			w.mu.Unlock()
			w.detaching.Store(false)
		}
	}
}

func (w *downWorker) send(a core.Action) {
	w.mu.Lock()
	conn, broken, idx := w.conn, w.broken, w.idx
	w.mu.Unlock()
	var err error
	_, isData := a.Msg.(*wire.Data)
	skip := isData && w.detaching.Load()
	if _, ok := a.Msg.(*wire.Detach); ok && conn != nil {
		_ = conn.SetWriteDeadline(time.Now().Add(w.dead))
	}
	if conn != nil && !broken && !skip {
		if _, ok := a.Msg.(*wire.Data); ok && a.Ref != 0 {
			// The frame as built or received (maybe compressed): its
			// header says how long it is.
			buf := w.l.buf(a.Ref)
			hd, _ := wire.ParseHeader(buf)
			_, err = conn.Write(buf[:wire.HeaderSize+int(hd.Len)])
		} else {
			err = writeMsg(conn, a.Msg)
		}
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

func (w *downWorker) readAcks(conn net.Conn, br *bufio.Reader, idx int) {
	for {
		m, err := readControl(br)
		if err != nil {
			w.mu.Lock()
			if w.conn != conn {
				conn.Close() // a connection we had let go of (detached)
			}
			w.mu.Unlock()
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
