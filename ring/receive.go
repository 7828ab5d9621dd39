package ring

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herd-cluster/herd/ring/core"
	"github.com/herd-cluster/herd/ring/internal/wirez"
	"github.com/herd-cluster/herd/ring/seal"
	"github.com/herd-cluster/herd/ring/wire"
)

// sinkWorker performs the sink actions of a node in order.
type sinkWorker struct {
	q      *queue[core.Action]
	l      *loop
	ctx    context.Context
	open   func(Item) (Sink, error)
	items  []Item // set by the loop before the first ActOpen
	man    *wire.Manifest
	chunks *seal.Chunks // seals chunks read back for another node
	key    []byte       // the session key (nil without), for the journal
	sinks  []Sink
	rbq    *queue[readBackJob] // read-backs, performed by their own goroutine
	wg     sync.WaitGroup
	// Journal of what was written (ReceiverConfig.StateDir).
	stateDir string
	index    uint32
	journal  *journalWriter
}

func newSinkWorker(ctx context.Context, l *loop, open func(Item) (Sink, error)) *sinkWorker {
	w := &sinkWorker{q: newQueue[core.Action](), l: l, ctx: ctx, open: open}
	w.wg.Add(1)
	go w.run()
	return w
}

func (w *sinkWorker) run() {
	defer w.wg.Done()
	closed := false
	closeAll := func() {
		if closed {
			return
		}
		closed = true
		for i, s := range w.sinks {
			if s != nil {
				if err := s.Close(); err != nil {
					w.l.logf("ring: close item %d (%s): %v", i, w.items[i].Dest, err)
				}
			}
		}
		if w.journal != nil {
			w.journal.close()
		}
	}
	defer closeAll()
	defer func() {
		if w.rbq != nil {
			w.rbq.close()
		}
	}()
	for {
		a, ok := w.q.pop()
		if !ok {
			return
		}
		switch a.Kind {
		case core.ActOpen:
			if w.sinks == nil {
				w.sinks = make([]Sink, len(w.items))
				if w.stateDir != "" && w.journal == nil && w.man != nil {
					j, err := createJournal(w.stateDir, w.index, w.man, seal.JournalKey(w.key, w.man.Session, w.index))
					if err != nil {
						w.l.logf("ring: %v (a restart will receive everything again)", err)
					}
					w.journal = j
				}
			}
			ev := core.Event{Kind: core.EvOpened, Item: a.Item}
			if closed {
				ev.Err = "node already failed"
			} else if s, err := w.open(w.items[a.Item]); err != nil {
				ev.Err = err.Error()
			} else if s == nil {
				ev.Err = "Open returned no sink"
			} else {
				w.sinks[a.Item] = s
			}
			w.l.emit(ev)
		case core.ActWrite:
			ev := core.Event{Kind: core.EvWritten, Item: a.Item, Ref: a.Ref}
			if closed || w.sinks[a.Item] == nil {
				ev.Err = "sink not open"
			} else if w.ctx.Err() != nil {
				ev.Err = "receiver stopped" // like a killed process: nothing more is written
			} else if _, err := w.sinks[a.Item].WriteAt(a.Payload, a.Off); err != nil {
				ev.Err = err.Error()
			} else if w.journal != nil {
				w.journal.chunk(a.Item, a.Off, a.Payload)
			}
			w.l.emit(ev)
		case core.ActSync:
			ev := core.Event{Kind: core.EvSynced, Item: a.Item}
			if closed || w.sinks[a.Item] == nil {
				ev.Err = "sink not open"
			} else if err := w.sinks[a.Item].Sync(); err != nil {
				ev.Err = err.Error()
			} else if ie, ok := a.Msg.(*wire.ItemEnd); ok && w.journal != nil {
				w.journal.itemEnd(ie)
			}
			w.l.emit(ev)
		case core.ActReadBack:
			// Every write queued before it is done: the chunk is on the
			// sink. The read itself waits for a read-back buffer, which
			// frees at the pace of the node it is for: it runs apart so
			// writes never wait for a slow node.
			var s Sink
			if !closed && a.Item < len(w.sinks) {
				s = w.sinks[a.Item]
			}
			if w.rbq == nil {
				w.rbq = newQueue[readBackJob]()
				w.wg.Add(1)
				go w.readBacks()
			}
			w.rbq.push(readBackJob{a, s})
		case core.ActCloseSinks:
			closeAll()
		}
	}
}

type readBackJob struct {
	a core.Action
	s Sink
}

// readBacks performs read-backs in order, apart from the writes.
func (w *sinkWorker) readBacks() {
	defer w.wg.Done()
	for {
		j, ok := w.rbq.pop()
		if !ok {
			return
		}
		if !w.l.emit(w.readBack(j.a, j.s)) {
			return
		}
	}
}

// readBack rebuilds a chunk from what this node wrote (after every write
// queued before it), for a node that lacks it.
func (w *sinkWorker) readBack(a core.Action, s Sink) core.Event {
	ev := core.Event{Kind: core.EvReadBack, Item: a.Item, Seq: a.Seq}
	ra, ok := s.(io.ReaderAt)
	switch {
	case s == nil:
		ev.Err = "sink not open"
		return ev
	case !ok:
		ev.Err = "the sink of item " + fmt.Sprint(a.Item) + " cannot be read back"
		return ev
	}
	if a.Len <= 0 || a.Len > int(w.man.ChunkSize) || a.Off < 0 {
		ev.Err = fmt.Sprintf("read back %d bytes at %d: outside the session's chunks", a.Len, a.Off)
		return ev
	}
	pl := w.l.rb(frameLayout(int(w.man.ChunkSize), false, w.chunks.Keyed()))
	ref, buf, err := pl.get(w.ctx)
	if err != nil {
		ev.Err = err.Error()
		return ev
	}
	p := pl.raw(buf)[:a.Len]
	if n, err := ra.ReadAt(p, a.Off); n < a.Len {
		pl.put(ref)
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		ev.Err = fmt.Sprintf("read %d bytes at %d of item %d: %v", a.Len, a.Off, a.Item, err)
		return ev
	}
	d := &wire.Data{Session: w.man.Session, Item: uint32(a.Item), Seq: a.Seq, Off: a.Off}
	putSealed(buf, d, w.chunks, p)
	d.Payload = p
	ev.Ref, ev.Msg = ref+rbBase, d
	if readBackHook != nil {
		readBackHook(false)
	}
	return ev
}

// accepted is an upstream connection that proved the key and was
// accepted: its hop and its Hello.
type accepted struct {
	h     *hopConn
	hello *wire.Hello
}

// Receive waits on l for one session (ignoring and logging stray or
// unauthenticated connections), takes part in it (write + forward), and
// returns this node's report. err != nil when the session failed for this
// node (digest mismatch, sink error...). Once the node is done it returns
// when its upstream hangs up (at once in a healthy chain; at most
// max(10s, 4×DeadTimeout) later when the upstream died). An upstream that
// leaves (or falls silent) before it sent the session's manifest does not
// end Receive: it waits for a session again. Receive does not close l,
// but it uses its deadline (when it has one) to stop accepting when it
// returns.
func Receive(ctx context.Context, l net.Listener, cfg ReceiverConfig) (*NodeStatus, error) {
	if cfg.Open == nil {
		return nil, fmt.Errorf("%w: ReceiverConfig.Open is nil", ErrConfig)
	}
	if _, err := checkKey(cfg.Key, cfg.Insecure); err != nil {
		return nil, err
	}
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	helloTimeout := cfg.HelloTimeout
	if helloTimeout <= 0 {
		helloTimeout = handshakeDeadline
	}
	limit := cfg.MemoryLimit
	if limit <= 0 {
		limit = DefaultMemoryLimit
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Accept loop: every connection proves itself in its own goroutine
	// (a bounded number at once, see handshakeLimit); the first good one
	// starts the session. Later ones are refused unless they continue the
	// same session at our place in the chain: a node further up
	// reconnecting to us because our upstream died.
	hops := make(chan accepted)
	var mu sync.Mutex
	var session *wire.SessionID
	var ourIndex uint32
	// upActivity points at when the current upstream last sent a frame
	// (unix ns; 0 once it is closed).
	var upActivity atomic.Pointer[atomic.Int64]
	dead := cfg.DeadTimeout
	if dead <= 0 {
		dead = DefaultDeadTimeout
	}
	handshaking := map[net.Conn]bool{} // under mu
	var hsLimit handshakeLimit
	var acceptWG, hsWG sync.WaitGroup
	acceptWG.Add(1)
	go func() {
		defer acceptWG.Done()
		for {
			conn, err := l.Accept()
			if err != nil {
				if ctx.Err() == nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						return
					}
					logf("ring: accept: %v", err)
					if errors.Is(err, net.ErrClosed) {
						return
					}
					time.Sleep(50 * time.Millisecond)
					continue
				}
				return
			}
			release, ok := hsLimit.acquire(conn)
			if !ok {
				// Too many handshakes at once (from this address, or in
				// all): not a byte read.
				conn.Close()
				continue
			}
			mu.Lock()
			handshaking[conn] = true
			mu.Unlock()
			hsWG.Add(1)
			go func() {
				defer hsWG.Done()
				defer func() {
					mu.Lock()
					delete(handshaking, conn)
					mu.Unlock()
				}()
				defer func() {
					if r := recover(); r != nil {
						logf("ring: internal error in a handshake with %s: %v\n%s", conn.RemoteAddr(), r, debug.Stack())
						conn.Close()
					}
				}()
				hello, h, err := downHandshake(conn, cfg.Key, helloTimeout, func(h *wire.Hello) string {
					mu.Lock()
					defer mu.Unlock()
					if session != nil {
						if *session != h.Session || ourIndex != h.Index {
							return errBusySession.Error()
						}
						// A replacement upstream is welcome only when the
						// current one is gone or silent (see
						// core.RefusesReplacement).
						if cur := upActivity.Load(); cur != nil && cur.Load() != 0 && core.RefusesReplacement(h.Takeover, time.Since(time.Unix(0, cur.Load())), dead) {
							return errUpstreamAlive
						}
						acceptedNow(&upActivity)
						return ""
					}
					s := h.Session
					session, ourIndex = &s, h.Index
					acceptedNow(&upActivity)
					return ""
				})
				release()
				if err != nil {
					if ctx.Err() == nil {
						logf("ring: ignoring connection from %s: %v", conn.RemoteAddr(), err)
					}
					conn.Close()
					return
				}
				select {
				case hops <- accepted{h, hello}:
				case <-ctx.Done():
					conn.Close()
				}
			}()
		}
	}()
	defer func() {
		cancel()
		if dl, ok := l.(interface{ SetDeadline(time.Time) error }); ok {
			_ = dl.SetDeadline(time.Now())
			acceptWG.Wait()
			_ = dl.SetDeadline(time.Time{})
			// No handshake may outlive us.
			mu.Lock()
			for c := range handshaking {
				c.Close()
			}
			mu.Unlock()
			hsWG.Wait()
		}
	}()

	for {
		var h accepted
		select {
		case h = <-hops:
		case <-ctx.Done():
			return &NodeStatus{Index: -1, State: StateWaiting, Err: ctx.Err().Error()}, ctx.Err()
		}
		logf("ring: session %x from %s, we are node %d", h.hello.Session[:4], h.h.conn.RemoteAddr(), h.hello.Index)
		st, err := runNode(ctx, h, hops, cfg, limit, logf, &upActivity)
		if !errors.Is(err, errNoManifest) || ctx.Err() != nil {
			return st, err
		}
		// The upstream proved the key but left, or fell silent, before
		// it sent the manifest: nothing was written. Wait for a session
		// again rather than stay bound to that one.
		logf("ring: %v; waiting for a session again", err)
		mu.Lock()
		session = nil
		mu.Unlock()
		upActivity.Store(nil)
	}
}

// errNoManifest ends a node whose upstream left before the manifest.
var errNoManifest = errors.New("ring: the upstream left before it sent the session's manifest")

// acceptedNow marks a hop just accepted as the current upstream, alive as
// of now, before its reader starts: a second hop whose handshake ends a
// moment later (a node that was bypassed and did not know it yet, dialing
// on) is refused like any replacement of a live upstream, instead of
// replacing the hop that bypassed it.
func acceptedNow(p *atomic.Pointer[atomic.Int64]) {
	a := new(atomic.Int64)
	a.Store(time.Now().UnixNano())
	p.Store(a)
}

// errUpstreamAlive is the reason a node refuses a replacement upstream
// while its own upstream still talks; the dialer retries.
const errUpstreamAlive = "upstream alive"

// poolHook, when set (by tests), sees every node's chunk pool.
var poolHook func(index uint32, p *pool)

// readBackHook, when set (by tests), sees every chunk rebuilt by a node
// (false) or the source (true).
var readBackHook func(source bool)

// upstream is one upstream connection: its reader and its ack writer.
type upstream struct {
	h   accepted
	gen int
	q   *queue[wire.Msg]
	wg  sync.WaitGroup
}

// stream is what reading a session's chunks takes, known once its manifest
// is: the buffers and the chunk sealer. Set once (by the first reader that
// sees the manifest, or from a journal).
type stream struct {
	pool   *pool
	chunks *seal.Chunks
}

// newStream returns the stream of session m for a receiver with limit
// bytes of chunk memory.
func newStream(limit int64, m *wire.Manifest, keyed bool) (*stream, error) {
	c, err := sessionChunks(m, keyed)
	if err != nil {
		return nil, err
	}
	return &stream{pool: newPool(limit, frameLayout(int(m.ChunkSize), m.Compress == 1, keyed)), chunks: c}, nil
}

// sessionChunks returns the chunk sealer of session m: under its data key
// in a keyed session, checksums only without.
func sessionChunks(m *wire.Manifest, keyed bool) (*seal.Chunks, error) {
	if !keyed {
		return seal.NewChunks(nil)
	}
	return seal.NewChunks(m.DataKey[:])
}

// upstreamReader is what reading one upstream connection takes.
type upstreamReader struct {
	lp       *loop
	h        accepted
	gen      int
	limit    int64
	word     seal.Word
	silence  time.Duration
	st       *atomic.Pointer[stream]
	activity *atomic.Int64
}

func startUpstream(ctx context.Context, r upstreamReader, current *atomic.Pointer[atomic.Int64]) *upstream {
	u := &upstream{h: r.h, gen: r.gen, q: newQueue[wire.Msg]()}
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		bw := bufio.NewWriterSize(r.h.h.conn, 64<<10)
		for {
			m, ok := u.q.pop()
			if !ok {
				bw.Flush()
				return
			}
			if ctx.Err() != nil {
				// Stopped: like a killed process, we say nothing more
				// (not the failures our stopping causes).
				continue
			}
			f, err := r.h.h.sealMsg(m)
			if err != nil {
				r.lp.logf("ring: ack upstream: %v", err)
				continue
			}
			if _, err := bw.Write(f); err == nil {
				// Flush only when nothing else is waiting.
				u.q.mu.Lock()
				more := len(u.q.items) > 0
				u.q.mu.Unlock()
				if !more {
					bw.Flush()
				}
			}
		}
	}()
	r.activity = new(atomic.Int64)
	r.activity.Store(time.Now().UnixNano())
	current.Store(r.activity)
	go r.run(ctx)
	return u
}

// stop flushes the pending acks and closes the connection.
func (u *upstream) stop() {
	u.q.close()
	u.wg.Wait()
	u.h.h.conn.Close()
}

// upstreamSilence is how long a node waits for anything from its upstream
// (which pings when it has nothing else to send, see pingEvery) before it
// takes the upstream for lost.
func upstreamSilence(dead time.Duration) time.Duration {
	if dead <= 0 {
		dead = DefaultDeadTimeout
	}
	return max(10*time.Second, 5*dead)
}

func runNode(ctx context.Context, h accepted, hops <-chan accepted, cfg ReceiverConfig, limit int64, logf func(string, ...any), activity *atomic.Pointer[atomic.Int64]) (*NodeStatus, error) {
	nodeCfg := core.NodeConfig{Dead: cfg.DeadTimeout, UpWait: cfg.UpstreamWait, Memory: limit}
	node := core.NewNode(nodeCfg)
	keyed := len(cfg.Key) > 0
	word := seal.SourceKey(cfg.Key, h.hello.Session)
	lp := newLoop(logf)
	// The pool is sized once the manifest gives the chunk size (by the
	// first reader that sees it); this one only serves before that.
	var sized atomic.Pointer[stream]
	lp.pool.Store(newPool(0, frameLayout(64, false, false)))
	var restored *restoredState
	if cfg.StateDir != "" {
		stop := keepAnswering(h)
		restored = restore(h.hello, cfg, nodeCfg, logf)
		stop()
		if restored != nil {
			node = restored.node
			st, err := newStream(limit, restored.man, keyed)
			if err != nil {
				logf("ring: restore: %v; starting afresh", err)
				restored.close()
				restored, node = nil, core.NewNode(nodeCfg)
			} else {
				sized.Store(st)
				lp.pool.Store(st.pool)
				node.SetMemory(st.pool.payloadBytes())
				if poolHook != nil {
					poolHook(h.hello.Index, st.pool)
				}
			}
		}
	}
	lp.down = newDownWorker(ctx, lp, cfg.Key, cfg.Dial, cfg.ConnectTimeout, cfg.DeadTimeout)
	lp.sink = newSinkWorker(ctx, lp, cfg.Open)
	lp.sink.stateDir, lp.sink.index, lp.sink.key = cfg.StateDir, h.hello.Index, cfg.Key
	if restored != nil {
		lp.sink.items, lp.sink.man, lp.sink.sinks, lp.sink.journal = restored.items, restored.man, restored.sinks, restored.journal
		lp.sink.chunks = sized.Load().chunks
	}
	lp.readBack = lp.sink.q.push
	var lastProgress time.Time
	progress := func(force bool) {
		if cfg.Progress != nil && (force || time.Since(lastProgress) >= progressEvery) {
			lastProgress = time.Now()
			cfg.Progress(node.Status())
		}
	}
	lp.onTick = func() { progress(false) }
	lp.step = func(ev core.Event) []core.Action {
		if ev.Kind == core.EvUpClosed && node.Manifest() == nil && !node.Finished() {
			// No manifest yet: nothing was written, and the upstream is
			// gone. Do not wait for a replacement; Receive waits for a
			// session again.
			return []core.Action{{Kind: core.ActDone, Err: errNoManifest.Error() + ": " + ev.Err}}
		}
		acts := lp.traced(ev, node.Step(ev))
		if m := node.Manifest(); m != nil && lp.sink.man == nil {
			// The manifest the core took (checked, the first one): the
			// sink worker opens its items (the ActOpen actions in acts
			// are performed after this).
			its := make([]Item, len(m.Items))
			for i, it := range m.Items {
				its[i] = Item{Name: it.Name, Dest: it.Dest, Cook: it.Cook, Size: it.Size}
			}
			lp.sink.items = its
			lp.sink.man = m
			if st := sized.Load(); st != nil {
				lp.sink.chunks = st.chunks
				node.SetMemory(st.pool.payloadBytes())
			}
		}
		return acts
	}

	gen := 0
	reader := func(a accepted, gen int) upstreamReader {
		return upstreamReader{lp: lp, h: a, gen: gen, limit: limit, word: word, silence: upstreamSilence(cfg.DeadTimeout), st: &sized}
	}
	up := startUpstream(ctx, reader(h, gen), activity)
	lp.up = up.q
	lp.hops = hops
	lp.onHop = func(nh accepted) []core.Action {
		logf("ring: new upstream %s replaces %s", nh.h.conn.RemoteAddr(), up.h.h.conn.RemoteAddr())
		old := up
		// Tell the old upstream, which may not know yet (it was not
		// scheduled, or its Detach was lost), that someone else feeds
		// us now: it must stop feeding us, and must not take our
		// hanging up for our death (a healthy node reported dead). It
		// says nothing more about us; our new upstream does.
		why := "replaced: a node before you bypassed you"
		if nh.hello.Takeover {
			why = "replaced: our upstream detached you"
		}
		_ = old.h.h.conn.SetWriteDeadline(time.Now().Add(time.Second))
		old.q.push(&wire.Detach{Reason: why})
		old.stop()
		gen++
		up = startUpstream(ctx, reader(nh, gen), activity)
		lp.up = up.q
		ev := core.Event{Kind: core.EvUpNew, Msg: nh.hello, Now: lp.now()}
		return lp.traced(ev, node.Step(ev))
	}
	lp.upGen = func() int { return gen }

	ev := core.Event{Kind: core.EvUp, Msg: h.hello, Now: lp.now()}
	acts := lp.traced(ev, node.Step(ev))
	reason, err := lp.run(ctx, acts)
	if err == nil && node.UpDone() && !node.SaidBye() {
		linger(ctx, lp, lingerTime(cfg.DeadTimeout), func() int { return gen })
	}

	// Wind down: sinks first (close), then the downstream, then the final
	// ack. Events from now on are dropped.
	close(lp.done)
	if ctx.Err() != nil {
		// Stopped from outside (like a killed process): nothing more
		// goes downstream or upstream.
		lp.down.abort()
		up.h.h.conn.Close()
	}
	lp.sink.q.close()
	lp.sink.wg.Wait()
	lp.down.stop()
	up.stop()
	if err == nil && node.Manifest() == nil && strings.HasPrefix(reason, errNoManifest.Error()) {
		st := node.Status()
		return &st, fmt.Errorf("%w (%s)", errNoManifest, strings.TrimPrefix(reason, errNoManifest.Error()+": "))
	}
	progress(true)
	st := node.Status()
	if err != nil {
		if st.Err == "" {
			st.Err = err.Error()
		}
		if !st.State.Terminal() {
			st.State = StateFailed
		}
		return &st, err
	}
	if reason != "" || st.State != StateDone {
		if reason == "" {
			reason = st.Err
		}
		return &st, fmt.Errorf("%w: node %d: %s", ErrNodeFailed, st.Index, reason)
	}
	return &st, nil
}

// keepAnswering tells the upstream of hop h, at once and then every
// heartbeat until stop is called, that we are here: checking what we wrote
// before a restart can take a while, and the upstream must neither take us
// for dead meanwhile nor, when it takes us back at the tail (a rejoin),
// end the session without us. The acks carry our index alone. The hop's
// ack writer starts only after stop returns (the frames are sealed in
// order).
func keepAnswering(h accepted) (stop func()) {
	own := wire.AckNode{Index: h.hello.Index, State: wire.StReceiving}
	if h.hello.Tail {
		own.Flags = wire.AckRejoined
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(core.HeartbeatInterval)
		defer t.Stop()
		for {
			_ = h.h.conn.SetWriteDeadline(time.Now().Add(core.HeartbeatInterval))
			err := h.h.writeMsg(&wire.Ack{Nodes: []wire.AckNode{own}})
			_ = h.h.conn.SetWriteDeadline(time.Time{})
			if err != nil {
				// A frame may be cut short: the hop is no use anymore.
				h.h.conn.Close()
				return
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

// restoredState is a session taken up again after a restart.
type restoredState struct {
	node    *core.Node
	man     *wire.Manifest
	items   []Item
	sinks   []Sink
	journal *journalWriter
}

// close closes what restore opened (when the restored state is not used).
func (r *restoredState) close() {
	for _, s := range r.sinks {
		if s != nil {
			s.Close()
		}
	}
	if r.journal != nil {
		r.journal.close()
	}
}

// restore reads the journal in cfg.StateDir and, when it is of hello's
// session and index and the source's word checks out, restores the node
// from what it wrote (nil otherwise: start afresh).
func restore(hello *wire.Hello, cfg ReceiverConfig, nodeCfg core.NodeConfig, logf func(string, ...any)) *restoredState {
	b, err := os.ReadFile(filepath.Join(cfg.StateDir, journalName))
	if err != nil {
		return nil
	}
	j, err := parseJournal(b)
	if err != nil {
		logf("ring: %v; starting afresh", err)
		return nil
	}
	if j.session != hello.Session || j.index != hello.Index {
		return nil
	}
	word := seal.SourceKey(cfg.Key, j.session)
	if !word.CheckManifest(j.man) {
		logf("ring: the journal's manifest is not the source's (another key, or changed); starting afresh")
		return nil
	}
	items := make([]Item, len(j.man.Items))
	for i, it := range j.man.Items {
		items[i] = Item{Name: it.Name, Dest: it.Dest, Cook: it.Cook, Size: it.Size}
	}
	node, sinks, end, ok := restoreNode(j, cfg, nodeCfg, items, logf)
	if !ok {
		return nil
	}
	jw, err := reopenJournal(cfg.StateDir, end, seal.JournalKey(cfg.Key, j.session, j.index))
	if err != nil {
		logf("ring: %v", err)
	}
	logf("ring: session %x taken up again as node %d: %d frames (%d bytes) already written and checked", j.session[:4], j.index, node.Restored(), node.Status().Bytes)
	return &restoredState{node: node, man: j.man, items: items, sinks: sinks, journal: jw}
}

// lingerTime is how long a finished node waits for its upstream to hang
// up: long enough for a node further up to notice a dead upstream of ours
// (DeadTimeout), bypass it and reach us.
func lingerTime(dead time.Duration) time.Duration {
	if dead <= 0 {
		dead = DefaultDeadTimeout
	}
	return max(10*time.Second, 4*dead)
}

// linger keeps a finished node reachable until its upstream says Bye: when
// the upstream died (the connection ends without a Bye) after relaying our
// final ack, or before, the node before it reconnects to us and must hear
// that we, and everyone after us, are done, instead of finding nobody.
func linger(ctx context.Context, lp *loop, d time.Duration, gen func() int) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case ev := <-lp.evc:
			if ev.Kind == core.EvUp && ev.Index == gen() {
				if _, ok := ev.Msg.(*wire.Bye); ok {
					return
				}
			}
			if ev.Kind == core.EvUp && ev.Index != gen() && ev.Ref != 0 {
				lp.release(ev.Ref)
				continue
			}
			ev.Now = lp.now()
			lp.perform(lp.step(ev))
		case h := <-lp.hops:
			lp.perform(lp.onHop(h))
		case <-t.C:
			lp.logf("ring: upstream still connected %v after the end; leaving", d)
			return
		case <-ctx.Done():
			return
		}
	}
}

// run reads frames from the upstream connection: control frames opened
// and checked (the source's word on manifest, item ends and end), chunks
// into pool buffers, their hop tag and seal checked and opened. Anything
// that fails authentication ends the connection (the node then waits for
// a replacement upstream, as when one dies). A panic here ends the
// connection too, never the process.
func (r upstreamReader) run(ctx context.Context) {
	conn, br, ch := r.h.h.conn, r.h.h.br, r.h.h.ch
	fail := func(err error) {
		r.activity.Store(0)
		conn.Close() // the upstream hears of it at once
		if isAuthFailure(err) {
			r.lp.logf("ring: upstream %s: %v (closing the hop)", conn.RemoteAddr(), err)
		}
		r.lp.emit(core.Event{Kind: core.EvUpClosed, Err: err.Error(), Index: r.gen})
	}
	defer recoverAs(r.lp, "reading the upstream", func(reason string) {
		conn.Close()
		fail(errors.New(reason))
	})
	st := r.st.Load()
	var codec *wirez.Codec
	var scratch []byte // an opened compressed chunk, before it is expanded
	for {
		// Before the manifest the upstream has no reason to be slow.
		silence := r.silence
		if st == nil {
			silence = handshakeDeadline
		}
		_ = conn.SetReadDeadline(time.Now().Add(silence))
		var hb [wire.HeaderSize]byte
		if _, err := io.ReadFull(br, hb[:]); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				err = fmt.Errorf("silent for %v (no frame, not even a ping)", silence)
			}
			fail(err)
			return
		}
		hd, err := wire.ParseHeader(hb[:])
		if err != nil {
			fail(err)
			return
		}
		if hd.Type != wire.TPing {
			// Pings say the upstream lives, not that it feeds us: an
			// upstream that lost its own upstream pings on, and a node
			// bypassing it must be let in (see errUpstreamAlive).
			r.activity.Store(time.Now().UnixNano())
		}
		if hd.Type != wire.TData {
			// The body has its own pace: a large manifest on a slow link.
			_ = conn.SetReadDeadline(time.Now().Add(r.silence))
			m, err := r.h.h.readBody(hb, hd)
			if err != nil {
				fail(err)
				return
			}
			switch m := m.(type) {
			case *wire.Ping:
				continue
			case *wire.Manifest:
				if !r.word.CheckManifest(m) {
					fail(fmt.Errorf("%w: the manifest does not carry the source's MAC", seal.ErrAuth))
					return
				}
				if m.Session != r.h.hello.Session {
					fail(errors.New("manifest of another session"))
					return
				}
				if err := core.CheckManifest(m); err != nil {
					// The core refuses it too (and fails the node);
					// nothing is sized after it.
					break
				}
				if st == nil {
					ns, err := newStream(r.limit, m, ch.Keyed())
					if err != nil {
						fail(err)
						return
					}
					if r.st.CompareAndSwap(nil, ns) {
						r.lp.pool.Store(ns.pool)
						if poolHook != nil {
							poolHook(r.h.hello.Index, ns.pool)
						}
					}
					st = r.st.Load()
				}
			case *wire.ItemEnd:
				if !r.word.CheckItemEnd(r.h.hello.Session, m) {
					fail(fmt.Errorf("%w: the end of item %d does not carry the source's MAC", seal.ErrAuth, m.Item))
					return
				}
			case *wire.End:
				if !r.word.CheckEnd(r.h.hello.Session, m) {
					fail(fmt.Errorf("%w: the end of the session does not carry the source's MAC", seal.ErrAuth))
					return
				}
			}
			if !r.lp.emit(core.Event{Kind: core.EvUp, Msg: m, Index: r.gen}) {
				return
			}
			continue
		}
		if st == nil {
			st = r.st.Load()
		}
		if st == nil {
			fail(errors.New("data before the manifest"))
			return
		}
		pl := st.pool
		if wire.HeaderSize+int(hd.Len) > pl.frame {
			fail(fmt.Errorf("chunk frame of %d bytes exceeds the session's chunk size", hd.Len))
			return
		}
		ref, buf, err := pl.get(ctx)
		if err != nil {
			return
		}
		copy(buf, hb[:])
		frame := buf[:wire.HeaderSize+int(hd.Len)]
		_ = conn.SetReadDeadline(time.Now().Add(r.silence))
		if _, err := io.ReadFull(br, frame[wire.HeaderSize:]); err != nil {
			pl.put(ref)
			fail(err)
			return
		}
		sealed, err := ch.CheckHopTag(frame)
		if err != nil {
			pl.put(ref)
			fail(err)
			return
		}
		m, err := wire.DecodeBody(wire.TData, sealed[wire.HeaderSize:])
		if err != nil {
			pl.put(ref)
			fail(err)
			return
		}
		d := m.(*wire.Data)
		d.Flags = hd.Flags
		// Opened into the buffer's room for the plain chunk, or in place
		// without key; a compressed chunk goes through scratch first.
		var dst []byte
		if pl.apart() {
			dst = pl.raw(buf)[:0]
		}
		if d.Flags&wire.FlagZstd != 0 && st.chunks.Keyed() {
			if scratch == nil {
				scratch = make([]byte, 0, pl.frame)
			}
			dst = scratch[:0]
		}
		bad := false
		plain, err := st.chunks.Open(dst, d)
		if err != nil {
			// Every node before us opened it (or failed its own hop):
			// it changed on this hop. The hop is no good; the upstream
			// resends what we lack on another (or bypasses us).
			pl.put(ref)
			fail(fmt.Errorf("hop closed: %w", err))
			return
		} else if len(plain) > pl.chunk+4 {
			r.lp.logf("ring: chunk %d of %d bytes exceeds the session's chunk size", d.Seq, len(plain))
			bad = true
		} else if d.Flags&wire.FlagZstd != 0 {
			// Written and hashed uncompressed; forwarded as it came.
			if codec == nil {
				if codec, err = wirez.NewCodec(wirez.Fastest); err != nil {
					pl.put(ref)
					fail(err)
					return
				}
			}
			raw, err := unpack(codec, plain, pl.raw(buf)[:0], pl.chunk)
			if err != nil {
				r.lp.logf("ring: chunk %d does not decompress: %v", d.Seq, err)
				bad = true
			} else {
				plain = raw
			}
		} else if len(plain) > pl.chunk {
			r.lp.logf("ring: chunk %d of %d bytes exceeds the session's chunk size", d.Seq, len(plain))
			bad = true
		}
		d.Payload = plain
		if bad {
			d.Payload = nil
		}
		if !r.lp.emit(core.Event{Kind: core.EvUp, Msg: d, Ref: ref, Bad: bad, Index: r.gen}) {
			return
		}
	}
}

// recoverAs turns a panic in one of a driver's goroutines into a failure of
// what that goroutine serves (a connection, a session): logged with its
// stack and handed to fail, never the end of the process. Use it deferred.
func recoverAs(l *loop, what string, fail func(reason string)) {
	if r := recover(); r != nil {
		reason := fmt.Sprintf("internal error %s: %v", what, r)
		l.logf("ring: %s\n%s", reason, debug.Stack())
		fail(reason)
	}
}
