package ring

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herd-cluster/herd/ring/core"
	"github.com/herd-cluster/herd/ring/wire"
)

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
			if a.Err != "" {
				// A move, a drop or a bypass: say why, once.
				l.logf("ring: leaving node %d: %s", a.Index, a.Err)
			}
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
