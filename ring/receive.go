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
	"sync"
	"sync/atomic"
	"time"

	"github.com/herd-cluster/herd/blockdev/wirez"
	"github.com/herd-cluster/herd/ring/core"
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
	summer *wire.Summer
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
					j, err := createJournal(w.stateDir, w.index, w.man)
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
	pl := w.l.rb(wire.DataHeaderSize + int(w.man.ChunkSize))
	ref, buf, err := pl.get(w.ctx)
	if err != nil {
		ev.Err = err.Error()
		return ev
	}
	p := buf[wire.DataHeaderSize : wire.DataHeaderSize+a.Len]
	if n, err := ra.ReadAt(p, a.Off); n < a.Len {
		pl.put(ref)
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		ev.Err = fmt.Sprintf("read %d bytes at %d of item %d: %v", a.Len, a.Off, a.Item, err)
		return ev
	}
	d := &wire.Data{Session: w.man.Session, Item: uint32(a.Item), Seq: a.Seq, Off: a.Off, Payload: p}
	d.Sum = w.summer.Sum(d, p)
	wire.PutDataHeader(buf, d, a.Len)
	ev.Ref, ev.Msg = ref+rbBase, d
	if readBackHook != nil {
		readBackHook(false)
	}
	return ev
}

type hop struct {
	conn  net.Conn
	br    *bufio.Reader
	hello *wire.Hello
}

// Receive waits on l for one session (ignoring and logging stray or
// unauthenticated connections), takes part in it (write + forward), and
// returns this node's report. err != nil when the session failed for this
// node (digest mismatch, sink error...). Once the node is done it returns
// when its upstream hangs up (at once in a healthy chain; at most
// max(10s, 4×DeadTimeout) later when the upstream died). Receive does not
// close l, but it uses its deadline (when it has one) to stop accepting
// when it returns.
func Receive(ctx context.Context, l net.Listener, cfg ReceiverConfig) (*NodeStatus, error) {
	if cfg.Open == nil {
		return nil, fmt.Errorf("%w: ReceiverConfig.Open is nil", ErrConfig)
	}
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	helloTimeout := cfg.HelloTimeout
	if helloTimeout <= 0 {
		helloTimeout = handshakeTimeout
	}
	limit := cfg.MemoryLimit
	if limit <= 0 {
		limit = DefaultMemoryLimit
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Accept loop: every connection proves itself in its own goroutine;
	// the first good one starts the session. Later ones are refused unless
	// they continue the same session at our place in the chain: a node
	// further up reconnecting to us because our upstream died.
	hops := make(chan hop)
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
				hello, br, err := downHandshake(conn, cfg.Key, helloTimeout, func(h *wire.Hello) string {
					mu.Lock()
					defer mu.Unlock()
					if session != nil {
						if *session != h.Session || ourIndex != h.Index {
							return "this node is busy with another session"
						}
						// A replacement upstream is welcome only when the
						// current one is gone or silent: a node that was
						// cut off itself must not take over a healthy hop.
						// A takeover comes from the node that just
						// detached our upstream: that one drains what
						// it had and stops.
						if cur := upActivity.Load(); !h.Takeover && cur != nil && cur.Load() != 0 && time.Since(time.Unix(0, cur.Load())) < dead/2 {
							return errUpstreamAlive
						}
						return ""
					}
					s := h.Session
					session, ourIndex = &s, h.Index
					return ""
				})
				if err != nil {
					if ctx.Err() == nil {
						logf("ring: ignoring connection from %s: %v", conn.RemoteAddr(), err)
					}
					conn.Close()
					return
				}
				select {
				case hops <- hop{conn, br, hello}:
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

	var h hop
	select {
	case h = <-hops:
	case <-ctx.Done():
		return &NodeStatus{Index: -1, State: StateWaiting, Err: ctx.Err().Error()}, ctx.Err()
	}
	logf("ring: session %x from %s, we are node %d", h.hello.Session[:4], h.conn.RemoteAddr(), h.hello.Index)
	return runNode(ctx, h, hops, cfg, limit, logf, &upActivity)
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
	h   hop
	gen int
	q   *queue[wire.Msg]
	wg  sync.WaitGroup
}

func startUpstream(ctx context.Context, lp *loop, h hop, gen int, key []byte, limit int64, pl *atomic.Pointer[pool], current *atomic.Pointer[atomic.Int64]) *upstream {
	u := &upstream{h: h, gen: gen, q: newQueue[wire.Msg]()}
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		bw := bufio.NewWriterSize(h.conn, 64<<10)
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
			if _, err := bw.Write(wire.Encode(m)); err == nil {
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
	activity := new(atomic.Int64)
	activity.Store(time.Now().UnixNano())
	current.Store(activity)
	go readUpstream(ctx, lp, h, gen, key, limit, pl, activity)
	return u
}

// stop flushes the pending acks and closes the connection.
func (u *upstream) stop() {
	u.q.close()
	u.wg.Wait()
	u.h.conn.Close()
}

func runNode(ctx context.Context, h hop, hops <-chan hop, cfg ReceiverConfig, limit int64, logf func(string, ...any), activity *atomic.Pointer[atomic.Int64]) (*NodeStatus, error) {
	nodeCfg := core.NodeConfig{Dead: cfg.DeadTimeout, UpWait: cfg.UpstreamWait, Memory: limit}
	node := core.NewNode(nodeCfg)
	lp := newLoop(logf)
	// The pool is sized once the manifest gives the chunk size (by the
	// first reader that sees it); this one only serves before that.
	var sized atomic.Pointer[pool]
	lp.pool.Store(newPool(4*(wire.DataHeaderSize+64), wire.DataHeaderSize+64))
	var restored *restoredState
	if cfg.StateDir != "" {
		stop := keepAnswering(h)
		restored = restore(h.hello, cfg, nodeCfg, logf)
		stop()
		if restored != nil {
			node = restored.node
			pl := sessionPool(limit, restored.man)
			sized.Store(pl)
			lp.pool.Store(pl)
			if poolHook != nil {
				poolHook(h.hello.Index, pl)
			}
		}
	}
	lp.down = newDownWorker(ctx, lp, cfg.Key, cfg.Dial, cfg.ConnectTimeout, cfg.DeadTimeout)
	lp.sink = newSinkWorker(ctx, lp, cfg.Open)
	lp.sink.stateDir, lp.sink.index = cfg.StateDir, h.hello.Index
	if restored != nil {
		lp.sink.items, lp.sink.man, lp.sink.sinks, lp.sink.journal = restored.items, restored.man, restored.sinks, restored.journal
		lp.sink.summer = wire.NewSummer(cfg.Key, restored.man.Session)
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
		if ev.Kind == core.EvUp {
			if m, ok := ev.Msg.(*wire.Manifest); ok {
				its := make([]Item, len(m.Items))
				for i, it := range m.Items {
					its[i] = Item{Name: it.Name, Dest: it.Dest, Cook: it.Cook, Size: it.Size}
				}
				lp.sink.items = its
				lp.sink.man = m
				lp.sink.summer = wire.NewSummer(cfg.Key, m.Session)
			}
		}
		return node.Step(ev)
	}

	gen := 0
	up := startUpstream(ctx, lp, h, gen, cfg.Key, limit, &sized, activity)
	lp.up = up.q
	lp.hops = hops
	lp.onHop = func(nh hop) []core.Action {
		logf("ring: new upstream %s replaces %s", nh.conn.RemoteAddr(), up.h.conn.RemoteAddr())
		old := up
		if nh.hello.Takeover {
			// The node that detached our upstream feeds us now: tell
			// the old upstream, which may not know yet, to stop feeding
			// us (it must not bypass us as if we had died).
			_ = old.h.conn.SetWriteDeadline(time.Now().Add(time.Second))
			old.q.push(&wire.Detach{Reason: "replaced: our upstream detached you"})
			old.stop()
		} else {
			old.q.close()
			old.h.conn.Close()
		}
		gen++
		up = startUpstream(ctx, lp, nh, gen, cfg.Key, limit, &sized, activity)
		lp.up = up.q
		return node.Step(core.Event{Kind: core.EvUpNew, Msg: nh.hello, Now: lp.now()})
	}
	lp.upGen = func() int { return gen }

	acts := node.Step(core.Event{Kind: core.EvUp, Msg: h.hello, Now: lp.now()})
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
		up.h.conn.Close()
	}
	lp.sink.q.close()
	lp.sink.wg.Wait()
	lp.down.stop()
	up.stop()
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

// sessionPool returns the chunk pool of a receiver for session m.
func sessionPool(limit int64, m *wire.Manifest) *pool {
	size, rawOff := frameLayout(int(m.ChunkSize), m.Compress == 1)
	p := newPool(limit, size)
	if m.Compress == 1 {
		p.rawOff = rawOff
	}
	return p
}

// keepAnswering tells the upstream of hop h, at once and then every
// heartbeat until stop is called, that we are here: checking what we wrote
// before a restart can take a while, and the upstream must neither take us
// for dead meanwhile nor, when it takes us back at the tail (a rejoin),
// end the session without us. The acks carry our index alone.
func keepAnswering(h hop) (stop func()) {
	own := wire.AckNode{Index: h.hello.Index, State: wire.StReceiving}
	if h.hello.Tail {
		own.Flags = wire.AckRejoined
	}
	frame := wire.Encode(&wire.Ack{Nodes: []wire.AckNode{own}})
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(core.HeartbeatInterval)
		defer t.Stop()
		for {
			_ = h.conn.SetWriteDeadline(time.Now().Add(core.HeartbeatInterval))
			_, err := h.conn.Write(frame)
			_ = h.conn.SetWriteDeadline(time.Time{})
			if err != nil {
				// A frame may be cut short: the hop is no use anymore.
				h.conn.Close()
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

// restore reads the journal in cfg.StateDir and, when it is of hello's
// session and index, restores the node from what it wrote (nil otherwise).
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
	items := make([]Item, len(j.man.Items))
	for i, it := range j.man.Items {
		items[i] = Item{Name: it.Name, Dest: it.Dest, Cook: it.Cook, Size: it.Size}
	}
	node, sinks, end, ok := restoreNode(j, cfg, nodeCfg, items, logf)
	if !ok {
		return nil
	}
	jw, err := reopenJournal(cfg.StateDir, end)
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

// readUpstream reads frames from the upstream connection into pool buffers
// and checks every chunk's sum.
func readUpstream(ctx context.Context, lp *loop, h hop, gen int, key []byte, limit int64, sized *atomic.Pointer[pool], activity *atomic.Int64) {
	summer := wire.NewSummer(key, h.hello.Session)
	br := h.br
	pl := sized.Load()
	var codec *wirez.Codec
	fail := func(err error) {
		activity.Store(0)
		lp.emit(core.Event{Kind: core.EvUpClosed, Err: err.Error(), Index: gen})
	}
	for {
		var hb [wire.HeaderSize]byte
		if _, err := io.ReadFull(br, hb[:]); err != nil {
			fail(err)
			return
		}
		activity.Store(time.Now().UnixNano())
		hd, err := wire.ParseHeader(hb[:])
		if err != nil {
			fail(err)
			return
		}
		if hd.Type != wire.TData {
			if hd.Len > maxControl {
				fail(fmt.Errorf("%s frame of %d bytes: %w", hd.Type, hd.Len, wire.ErrTooLarge))
				return
			}
			body := make([]byte, hd.Len)
			if _, err := io.ReadFull(br, body); err != nil {
				fail(err)
				return
			}
			m, err := wire.DecodeBody(hd.Type, body)
			if err != nil {
				fail(err)
				return
			}
			if man, ok := m.(*wire.Manifest); ok && pl == nil {
				pl = sessionPool(limit, man)
				if sized.CompareAndSwap(nil, pl) {
					lp.pool.Store(pl)
					if poolHook != nil {
						poolHook(h.hello.Index, pl)
					}
				} else {
					pl = sized.Load()
				}
			}
			if !lp.emit(core.Event{Kind: core.EvUp, Msg: m, Index: gen}) {
				return
			}
			continue
		}
		if pl == nil {
			pl = sized.Load()
		}
		if pl == nil {
			fail(errors.New("data before the manifest"))
			return
		}
		chunk, rawOff := pl.chunk()
		if wire.HeaderSize+int(hd.Len) > rawOff {
			fail(fmt.Errorf("chunk frame of %d bytes exceeds the session's chunk size", hd.Len))
			return
		}
		ref, buf, err := pl.get(ctx)
		if err != nil {
			return
		}
		copy(buf, hb[:])
		frame := buf[:wire.HeaderSize+int(hd.Len)]
		if _, err := io.ReadFull(br, frame[wire.HeaderSize:]); err != nil {
			pl.put(ref)
			fail(err)
			return
		}
		m, err := wire.DecodeBody(wire.TData, frame[wire.HeaderSize:])
		if err != nil {
			pl.put(ref)
			fail(err)
			return
		}
		d := m.(*wire.Data)
		d.Flags = hd.Flags
		bad := !summer.Check(d)
		if !bad && d.Flags&wire.FlagZstd != 0 {
			// Written and hashed uncompressed; forwarded as it came.
			if codec == nil {
				if codec, err = wirez.NewCodec(wirez.Fastest); err != nil {
					pl.put(ref)
					fail(err)
					return
				}
			}
			raw, err := unpack(codec, d.Payload, buf[rawOff:rawOff:rawOff+chunk], chunk)
			if err != nil {
				lp.logf("ring: chunk %d does not decompress: %v", d.Seq, err)
				bad = true
			} else {
				d.Payload = raw
			}
		}
		if !lp.emit(core.Event{Kind: core.EvUp, Msg: d, Ref: ref, Bad: bad, Index: gen}) {
			return
		}
	}
}
