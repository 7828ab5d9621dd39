package ring

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herd-cluster/herd/ring/core"
	"github.com/herd-cluster/herd/ring/wire"
)

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
			h, err := dialHop(w.ctx, hopDial{dial: w.dial, addr: a.Addr, key: w.key, hello: hello, timeout: timeout, busyFor: busy, handshake: hs, connect: connect})
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
