package ring

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/herd-cluster/herd/ring/core"
	"github.com/herd-cluster/herd/ring/wire"
)

// Send runs a whole session from the source and returns the per-node report.
// The error is non-nil only when the session could not run at all (bad
// config, source unreadable, no node reachable); node failures are in the
// Report. When a node is unreachable the session goes on with the next one
// and the report names it failed.
func Send(ctx context.Context, cfg SenderConfig) (*Report, error) {
	if len(cfg.Nodes) == 0 {
		return nil, fmt.Errorf("%w: no nodes", ErrConfig)
	}
	if len(cfg.Nodes) > wire.MaxNodes || len(cfg.Items) > wire.MaxItems {
		return nil, fmt.Errorf("%w: %d nodes and %d items (at most %d and %d)", ErrConfig, len(cfg.Nodes), len(cfg.Items), wire.MaxNodes, wire.MaxItems)
	}
	for _, n := range cfg.Nodes {
		if n == "" || len(n) > wire.MaxString {
			return nil, fmt.Errorf("%w: bad node address %q", ErrConfig, n)
		}
	}
	chunk := cfg.ChunkSize
	if chunk == 0 {
		chunk = DefaultChunkSize
	}
	if chunk < 0 || chunk > wire.MaxChunk {
		return nil, fmt.Errorf("%w: chunk size %d outside 1..%d", ErrConfig, chunk, wire.MaxChunk)
	}
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	limit := cfg.MemoryLimit
	if limit <= 0 {
		limit = DefaultMemoryLimit
	}
	slow, err := cfg.Slow.wire()
	if err != nil {
		return nil, err
	}
	slowAfter := cfg.SlowAfter
	if slowAfter <= 0 {
		slowAfter = DefaultSlowAfter
	}
	man := &wire.Manifest{ChunkSize: uint32(chunk), Nodes: append([]string(nil), cfg.Nodes...), Slow: slow, SlowAfterMs: uint32(min(slowAfter, time.Hour) / time.Millisecond)}
	man.Session = cfg.Session
	if man.Session == (SessionID{}) {
		randomBytes(man.Session[:])
	}
	var total int64
	for i, it := range cfg.Items {
		if it.Open == nil {
			return nil, fmt.Errorf("%w: item %d (%s) has no Open", ErrConfig, i, it.Name)
		}
		if len(it.Name) > wire.MaxString || len(it.Dest) > wire.MaxString {
			return nil, fmt.Errorf("%w: item %d: name or destination longer than %d bytes", ErrConfig, i, wire.MaxString)
		}
		if it.Size < -1 {
			return nil, fmt.Errorf("%w: item %d (%s) has size %d", ErrConfig, i, it.Name, it.Size)
		}
		man.Items = append(man.Items, wire.ManifestItem{Name: it.Name, Dest: it.Dest, Cook: it.Cook, Size: it.Size})
		if it.Size < 0 || total < 0 {
			total = -1
		} else {
			total += it.Size
		}
	}
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
	rejoin := cfg.Rejoin
	if rejoin == 0 {
		rejoin = DefaultRejoin
	}
	sender := core.NewSender(core.SenderConfig{Manifest: man, Dead: cfg.DeadTimeout, Rejoin: max(rejoin, 0)})
	lp := newLoop(logf)
	mode := cfg.Compress
	if mode == "" {
		mode = CompressNone
	}
	if _, err := ParseCompressMode(string(mode)); err != nil {
		return nil, err
	}
	comp, err := newCompressor(mode, chunk)
	if err != nil {
		return nil, fmt.Errorf("compression: %w", err)
	}
	if comp.codec != nil {
		man.Compress = 1
	}
	bufSize, rawOff := frameLayout(chunk, comp.codec != nil)
	pl := newPool(limit, bufSize)
	lp.pool.Store(pl)
	lp.step = sender.Step
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
	snapshot := func() Snapshot {
		return Snapshot{Elapsed: lp.now(), Total: total, Sent: sender.Bytes(), Nodes: sender.Nodes()}
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
	summer := wire.NewSummer(cfg.Key, man.Session)
	go func() {
		defer close(rpDone)
		defer rp.close()
		for {
			a, ok := rpq.pop()
			if !ok {
				return
			}
			ev := core.Event{Kind: core.EvReadBack, Item: a.Item, Seq: a.Seq, Aside: a.Aside, Index: a.Index}
			rbp := lp.rb(wire.DataHeaderSize + chunk)
			ref, buf, err := rbp.get(ctx)
			if err != nil {
				return
			}
			p, err := rp.read(a.Item, a.Off, a.Len, buf[wire.DataHeaderSize:])
			if err != nil {
				rbp.put(ref)
				ev.Err = err.Error()
			} else {
				d := &wire.Data{Session: man.Session, Item: uint32(a.Item), Seq: a.Seq, Off: a.Off, Payload: p}
				d.Sum = summer.Sum(d, p)
				wire.PutDataHeader(buf, d, len(p))
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
	}()
	lp.readBack = rpq.push
	readDone := make(chan struct{})
	readers := append([]Source(nil), srcs...)
	go func() {
		defer close(readDone)
		readSources(ctx, lp, pl, readers, man, cfg.Key, chunk, comp, rawOff)
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
		return rep, fmt.Errorf("%w: %s", ErrUnreachable, rep.Nodes[0].Err)
	}
	return rep, nil
}

// readSources reads every item in order into pool buffers, frames each
// chunk and hands it to the loop.
func readSources(ctx context.Context, lp *loop, pl *pool, srcs []Source, man *wire.Manifest, key []byte, chunk int, comp *compressor, rawOff int) {
	summer := wire.NewSummer(key, man.Session)
	var seq uint64
	for i, src := range srcs {
		for {
			ref, buf, err := pl.get(ctx)
			if err != nil {
				return
			}
			off, n, err := src.ReadChunk(buf[rawOff : rawOff+chunk])
			if n > 0 {
				d := &wire.Data{Session: man.Session, Item: uint32(i), Seq: seq, Off: off, Payload: buf[rawOff : rawOff+n]}
				seq++
				p := comp.pack(buf, d.Payload, d)
				d.Sum = summer.Sum(d, p)
				wire.PutDataHeader(buf, d, len(p))
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
