package ring

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/herd-cluster/herd/ring/core"
	"github.com/herd-cluster/herd/ring/seal"
	"github.com/herd-cluster/herd/ring/wire"
)

// Send runs a whole session from the source and returns the per-node report.
// The error is non-nil only when the session could not run at all (bad
// config, source unreadable, no node reachable); node failures are in the
// Report. When a node is unreachable the session goes on with the next one
// and the report names it failed.
func Send(ctx context.Context, cfg SenderConfig) (*Report, error) {
	st, err := cfg.settings()
	if err != nil {
		return nil, err
	}
	man, keyed, chunk, total, logf := st.man, st.keyed, st.chunk, st.total, st.logf
	// Open every source first: an unreadable source stops the session
	// before any node is touched.
	srcs := make([]Source, len(cfg.Items))
	closeSrcs := func() {
		for i, s := range srcs {
			if s != nil {
				s.Close()
				srcs[i] = nil
			}
		}
	}
	for i, it := range cfg.Items {
		s, err := it.Open()
		if err != nil {
			closeSrcs()
			return nil, fmt.Errorf("open source item %d (%s): %w", i, it.Name, err)
		}
		srcs[i] = s
	}
	defer closeSrcs()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sender := core.NewSender(core.SenderConfig{Manifest: man, Dead: cfg.DeadTimeout, Rejoin: st.rejoin})
	lp := newLoop(logf)
	comp, err := newCompressor(st.mode, chunk)
	if err != nil {
		return nil, fmt.Errorf("compression: %w", err)
	}
	if comp.codec != nil {
		man.Compress = 1
	}
	word := seal.SourceKey(cfg.Key, man.Session)
	word.SignManifest(man)
	chunks, err := sessionChunks(man, keyed)
	if err != nil {
		return nil, err
	}
	lay := frameLayout(chunk, comp.codec != nil, keyed)
	pl := newPool(st.limit, lay)
	lp.pool.Store(pl)
	lp.step = func(ev core.Event) []core.Action {
		acts := lp.traced(ev, sender.Step(ev))
		for _, a := range acts {
			// The source's word on every item end and the end, end to
			// end: every node checks it.
			if a.Kind == core.ActSendDown {
				switch m := a.Msg.(type) {
				case *wire.ItemEnd:
					word.SignItemEnd(man.Session, m)
				case *wire.End:
					word.SignEnd(man.Session, m)
				}
			}
		}
		return acts
	}
	lp.down = newDownWorker(ctx, lp, cfg.Key, cfg.Dial, cfg.ConnectTimeout, cfg.DeadTimeout)
	// Aside feeds (nodes the source feeds itself, off the chain): one
	// worker per node, used by the loop's goroutine only.
	asides := map[int]*downWorker{}
	// A slow aside node holds its read-back buffers until it takes them:
	// room for the chain's replays and a few aside feeds at once.
	lp.rbCount = 4 * rbBuffers
	lp.aside = func(index int) *downWorker {
		w := asides[index]
		if w == nil {
			w = newDownWorker(ctx, lp, cfg.Key, cfg.Dial, cfg.ConnectTimeout, cfg.DeadTimeout)
			w.aside, w.asideOf = true, index
			asides[index] = w
		}
		return w
	}
	lp.asides = func() []*downWorker {
		out := make([]*downWorker, 0, len(asides))
		for _, w := range asides {
			out = append(out, w)
		}
		return out
	}
	snapshot := func() Snapshot {
		return Snapshot{Elapsed: lp.now(), Total: total, Sent: sender.Bytes(), Nodes: sender.Nodes(), Route: sender.Route()}
	}
	var lastProgress time.Time
	lp.onTick = func() {
		if cfg.Progress != nil && time.Since(lastProgress) >= progressEvery {
			lastProgress = time.Now()
			cfg.Progress(snapshot())
		}
	}
	// Chunks asked again (to resume a node beyond what anyone retained)
	// are read in a worker of their own.
	rp := newReplayer(cfg.Items, chunk)
	rpq := newQueue[core.Action]()
	rpDone := make(chan struct{})
	go func() {
		defer close(rpDone)
		defer rp.close()
		serveReadBacks(ctx, lp, rp, rpq, man, chunks, frameLayout(chunk, false, keyed))
	}()
	lp.readBack = rpq.push
	readDone := make(chan struct{})
	readers := append([]Source(nil), srcs...)
	go func() {
		defer close(readDone)
		readSources(ctx, lp, pl, readers, man, chunks, comp)
	}()

	reason, err := lp.run(ctx, sender.Start(lp.now()))
	close(lp.done)
	cancel()
	select {
	case <-readDone:
	case <-time.After(time.Second):
		// The reader is stuck in a read (a pipe that is not finished):
		// closing the sources unblocks it.
		closeSrcs()
		<-readDone
	}
	lp.down.stop()
	for _, w := range asides {
		w.stop()
	}
	rpq.close()
	<-rpDone
	rep := &Report{Nodes: sender.Nodes(), Items: sender.Items(), Bytes: sender.Bytes(), Elapsed: lp.now(),
		WireBytes: comp.wire.Load(), Compress: comp.describe()}
	if cfg.Progress != nil {
		cfg.Progress(snapshot())
	}
	if err != nil {
		return rep, fmt.Errorf("send session: %w", err)
	}
	if reason != "" {
		return rep, fmt.Errorf("send session: %s", reason)
	}
	if !sender.Reached() {
		// The node's reason starts with "unreachable", which the
		// sentinel already says.
		return rep, fmt.Errorf("%w: %s", ErrUnreachable, strings.TrimPrefix(rep.Nodes[0].Err, "unreachable: "))
	}
	return rep, nil
}

// sendSettings is a SenderConfig checked, with its defaults filled in,
// and the manifest it makes.
type sendSettings struct {
	man    *wire.Manifest
	keyed  bool
	chunk  int
	total  int64 // bytes of every item, -1 when one's size is unknown
	limit  int64
	rejoin time.Duration
	mode   CompressMode
	logf   func(string, ...any)
}

// settings checks cfg and builds the session's manifest: nothing is
// opened or dialed before it says yes.
func (cfg SenderConfig) settings() (sendSettings, error) {
	var st sendSettings
	if len(cfg.Nodes) == 0 {
		return st, fmt.Errorf("%w: no nodes", ErrConfig)
	}
	if len(cfg.Items) == 0 {
		return st, fmt.Errorf("%w: no items", ErrConfig)
	}
	keyed, err := checkKey(cfg.Key, cfg.Insecure)
	if err != nil {
		return st, err
	}
	st.keyed = keyed
	if len(cfg.Nodes) > wire.MaxNodes || len(cfg.Items) > wire.MaxItems {
		return st, fmt.Errorf("%w: %d nodes and %d items (at most %d and %d)", ErrConfig, len(cfg.Nodes), len(cfg.Items), wire.MaxNodes, wire.MaxItems)
	}
	for _, n := range cfg.Nodes {
		if n == "" || len(n) > wire.MaxString {
			return st, fmt.Errorf("%w: bad node address %q", ErrConfig, n)
		}
	}
	st.chunk = cfg.ChunkSize
	if st.chunk == 0 {
		st.chunk = DefaultChunkSize
	}
	if st.chunk < 0 || st.chunk > wire.MaxChunk {
		return st, fmt.Errorf("%w: chunk size %d outside 1..%d", ErrConfig, st.chunk, wire.MaxChunk)
	}
	st.logf = cfg.Logf
	if st.logf == nil {
		st.logf = func(string, ...any) {}
	}
	st.limit = cfg.MemoryLimit
	if st.limit <= 0 {
		st.limit = DefaultMemoryLimit
	}
	slow, err := cfg.Slow.wire()
	if err != nil {
		return st, err
	}
	slowAfter := cfg.SlowAfter
	if slowAfter <= 0 {
		slowAfter = DefaultSlowAfter
	}
	st.rejoin = cfg.Rejoin
	if st.rejoin == 0 {
		st.rejoin = DefaultRejoin
	}
	st.rejoin = max(st.rejoin, 0)
	st.mode = cfg.Compress
	if st.mode == "" {
		st.mode = CompressNone
	}
	if _, err := ParseCompressMode(string(st.mode)); err != nil {
		return st, err
	}
	man := &wire.Manifest{ChunkSize: uint32(st.chunk), Nodes: append([]string(nil), cfg.Nodes...), Slow: slow, SlowAfterMs: uint32(min(slowAfter, time.Hour) / time.Millisecond)}
	man.Session = cfg.Session
	if man.Session == (SessionID{}) {
		randomBytes(man.Session[:])
	}
	if keyed {
		// The key chunks are sealed with: new for every session (so
		// recorded traffic stays sealed when the session key leaks later),
		// kept only by a source that may resume it (ResumeFile).
		switch {
		case len(cfg.DataKey) == wire.KeySize:
			copy(man.DataKey[:], cfg.DataKey)
		case len(cfg.DataKey) == 0:
			randomBytes(man.DataKey[:])
		default:
			return st, fmt.Errorf("%w: data key of %d bytes (want %d)", ErrConfig, len(cfg.DataKey), wire.KeySize)
		}
	}
	for i, it := range cfg.Items {
		if it.Open == nil {
			return st, fmt.Errorf("%w: item %d (%s) has no Open", ErrConfig, i, it.Name)
		}
		if len(it.Name) > wire.MaxString || len(it.Dest) > wire.MaxString {
			return st, fmt.Errorf("%w: item %d: name or destination longer than %d bytes", ErrConfig, i, wire.MaxString)
		}
		if it.Size < -1 {
			return st, fmt.Errorf("%w: item %d (%s) has size %d", ErrConfig, i, it.Name, it.Size)
		}
		man.Items = append(man.Items, wire.ManifestItem{Name: it.Name, Dest: it.Dest, Cook: it.Cook, Size: it.Size})
		if it.Size < 0 || st.total < 0 {
			st.total = -1
		} else {
			st.total += it.Size
		}
	}
	if err := core.CheckManifest(man); err != nil {
		return st, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	st.man = man
	return st, nil
}

// serveReadBacks reads the chunks the chain asks again (q, closed at the
// end) from the sources (rp) into read-back buffers of layout lay, seals
// them and hands them to the loop, until q closes or the loop ends.
func serveReadBacks(ctx context.Context, lp *loop, rp *replayer, q *queue[core.Action], man *wire.Manifest, chunks *seal.Chunks, lay layout) {
	for {
		a, ok := q.pop()
		if !ok {
			return
		}
		ev := core.Event{Kind: core.EvReadBack, Item: a.Item, Seq: a.Seq, Aside: a.Aside, Index: a.Index}
		rbp := lp.rb(lay)
		ref, buf, err := rbp.get(ctx)
		if err != nil {
			return
		}
		p, err := rp.read(a.Item, a.Off, a.Len, rbp.raw(buf))
		if err != nil {
			rbp.put(ref)
			ev.Err = err.Error()
		} else {
			d := &wire.Data{Session: man.Session, Item: uint32(a.Item), Seq: a.Seq, Off: a.Off}
			d.Payload = p
			putSealed(buf, d, chunks, p)
			ev.Ref, ev.Msg = ref+rbBase, d
			if readBackHook != nil {
				readBackHook(true)
			}
		}
		if !lp.emit(ev) {
			if ev.Ref != 0 {
				rbp.put(ref)
			}
			return
		}
	}
}

// readSources reads every item in order into pool buffers, seals each
// chunk into its frame and hands it to the loop.
func readSources(ctx context.Context, lp *loop, pl *pool, srcs []Source, man *wire.Manifest, chunks *seal.Chunks, comp *compressor) {
	var seq uint64
	for i, src := range srcs {
		for {
			ref, buf, err := pl.get(ctx)
			if err != nil {
				return
			}
			off, n, err := src.ReadChunk(pl.raw(buf))
			if n > 0 {
				if seq >= seal.MaxChunksPerKey {
					pl.put(ref)
					lp.emit(core.Event{Kind: core.EvReadEnd, Item: i, Err: fmt.Sprintf("more than %d chunks in one session: use larger chunks", uint64(seal.MaxChunksPerKey))})
					return
				}
				raw := buf[pl.rawOff : pl.rawOff+n]
				d := &wire.Data{Session: man.Session, Item: uint32(i), Seq: seq, Off: off}
				seq++
				p := comp.pack(buf, raw, d)
				putSealed(buf, d, chunks, p)
				d.Payload = raw // what the source hashes
				if !lp.emit(core.Event{Kind: core.EvRead, Msg: d, Ref: ref, Item: i}) {
					return
				}
			} else {
				pl.put(ref)
			}
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				lp.emit(core.Event{Kind: core.EvReadEnd, Item: i, Err: err.Error()})
				return
			}
			if n == 0 {
				lp.emit(core.Event{Kind: core.EvReadEnd, Item: i, Err: "source returned no data and no error"})
				return
			}
		}
		if !lp.emit(core.Event{Kind: core.EvReadEnd, Item: i}) {
			return
		}
	}
}

// putSealed seals p (the chunk's bytes as they travel, compressed or not;
// d.Flags says which) into buf's frame after the data header and writes
// the header: the frame is then ready to go on any hop (with a key, its
// last seal.TagSize bytes are room for the hop's tag).
func putSealed(buf []byte, d *wire.Data, chunks *seal.Chunks, p []byte) {
	sealed := chunks.Seal(buf[wire.DataHeaderSize:wire.DataHeaderSize], d, p)
	n := len(sealed)
	if chunks.Keyed() {
		n += seal.TagSize
	}
	wire.PutDataHeader(buf, d, n)
}
