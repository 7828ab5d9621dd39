package blockdev

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
)

// CookPlan is what a cooked transfer (Dolly+ "SRC >> DST") does with a
// source, chosen by the source's name.
type CookPlan struct {
	Compression Compression // applied first ("" for none)
	Archive     string      // "tar", "cpio", or "" to write a single file
}

// cookRules maps name suffixes to plans, longest first.
var cookRules = []struct {
	suffix string
	plan   CookPlan
}{
	{".tar.gz", CookPlan{Gzip, "tar"}},
	{".tar.Z", CookPlan{UnixZ, "tar"}},
	{".tar.zst", CookPlan{Zstd, "tar"}},
	{".cpio.gz", CookPlan{Gzip, "cpio"}},
	{".cpio.Z", CookPlan{UnixZ, "cpio"}},
	{".cpio.zst", CookPlan{Zstd, "cpio"}},
	{".tgz", CookPlan{Gzip, "tar"}},
	{".tzst", CookPlan{Zstd, "tar"}},
	{".tar", CookPlan{None, "tar"}},
	{".cpio", CookPlan{None, "cpio"}},
	{".gz", CookPlan{Gzip, ""}},
	{".Z", CookPlan{UnixZ, ""}},
	{".zst", CookPlan{Zstd, ""}},
}

// PlanCook returns the cook plan for a source name by the Dolly+ rules:
// .gz, .Z and .zst are decompressed into a file; .tar, .tar.gz (.tgz),
// .tar.Z, .tar.zst, .cpio, .cpio.gz, .cpio.Z and .cpio.zst are unpacked
// into a directory. Other names return ErrUnsupported.
func PlanCook(srcName string) (CookPlan, error) {
	base := filepath.Base(srcName)
	for _, r := range cookRules {
		if strings.HasSuffix(base, r.suffix) && len(base) > len(r.suffix) {
			return r.plan, nil
		}
	}
	return CookPlan{}, fmt.Errorf("%w: cannot cook %q (want .gz, .Z, .zst, .tar[.gz|.Z|.zst], .cpio[.gz|.Z|.zst])", ErrUnsupported, srcName)
}

// CookSink decompresses or unpacks a stream as it arrives. It satisfies
// ring.Sink. WriteAt must be called with non-decreasing offsets; a gap
// reads as zeros; an offset below the bytes already consumed fails with
// ErrOrder, and one past the declared size with ErrOutOfRange. A goroutine
// consumes the stream through a pipe, so memory stays bounded. Sync waits
// for the end of the archive and reports any unpacking error (an unsafe
// entry fails with the entry's name and ErrUnsafeEntry).
//
// What a cooked item may cost is bounded (see docs/security.md):
//   - decompressed bytes: at most max(CookRatio × the compressed bytes
//     received, the target filesystem's free bytes when the sink opened,
//     CookFloor); past that the item fails with ErrLimit naming the bound.
//     A device target is bounded by its size instead (ErrTooSmall).
//   - archive entries: their data must fit the free space (ErrTooSmall,
//     before the entry is written); a sparse file's holes cost nothing;
//     its apparent size must be one the filesystem accepts.
//   - time: when ctx is done or Close is called, every loop stops within
//     a chunk (64 KiB to 1 MiB of work), so the goroutine ends promptly
//     whatever the input.
//
// Not safe for concurrent use, except that ctx may be cancelled at any
// time.
type CookSink struct {
	plan   CookPlan
	dest   string
	size   int64 // declared stream size; < 0 unknown
	ctx    context.Context
	cancel context.CancelFunc
	pw     *io.PipeWriter
	done   chan struct{}
	err    error  // result of the consumer, valid after done
	notes  string // what the consumer left out, valid after done
	ended  atomic.Bool
	next   int64
	synced bool
	closed bool
}

// Bounds of a cooked item's decompressed output (see CookSink).
const (
	// CookRatio is how many decompressed bytes a compressed byte may
	// yield, past the free space. Real images stay far below it (mostly
	// under 10, ~100 for images that are largely zeros); gzip's format
	// tops out near 1030, zstd and .Z reach tens of thousands.
	CookRatio = 1000
	// CookFloor is the output always allowed, for small items.
	CookFloor = 64 << 20
)

var (
	errAborted = errors.New("blockdev: cook aborted by Close before Sync")
	// errEnded stops the pipe once the archive has ended: what follows
	// (tar's padding) is counted and dropped without being read.
	errEnded = errors.New("blockdev: archive ended")
)

// OpenCookSink prepares to cook the item named srcName, a stream of size
// bytes (< 0: unknown), into dest: a file or an allowed block device
// (opts.AllowDevices) for a compressed file, a directory (created if
// needed) for an archive. dest is confined by opts.Root like OpenSink; a
// file output is checked for being in use, then created or truncated.
// Archive entries overwrite existing files of the same name, as tar does.
// Device nodes, FIFOs, setuid/setgid bits, foreign owners and privileged
// extended attributes are restored only with opts.Special. Cancelling ctx
// stops the cooking (as Close does): a receiver passes the context that
// ends with it.
func OpenCookSink(ctx context.Context, srcName, dest string, size int64, opts SinkOptions) (Sink, error) {
	s, err := openCookSink(ctx, srcName, dest, size, opts, -1)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// openCookSink is OpenCookSink; free >= 0 replaces the target's free
// space in the output bound (tests).
func openCookSink(ctx context.Context, srcName, dest string, size int64, opts SinkOptions, free int64) (*CookSink, error) {
	plan, err := PlanCook(srcName)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(ctx)
	s := &CookSink{plan: plan, dest: dest, size: size, ctx: ctx, cancel: cancel, pw: pw, done: make(chan struct{})}
	fail := func(err error) (*CookSink, error) {
		cancel()
		return nil, err
	}
	var consume func(io.Reader) error
	var freeOf *os.File // where to ask for free space
	if plan.Archive == "" {
		// A file, or a block device in opts.AllowDevices (Dolly+'s
		// "image.gz >> /dev/sda1").
		fs, err := OpenFileSink(dest, -1, opts)
		if err != nil {
			return fail(err)
		}
		if !fs.isDev {
			freeOf = fs.f
		}
		consume = func(r io.Reader) error { return writeSparse(ctx, fs, r) }
	} else {
		root, err := openDestDir(dest, opts)
		if err != nil {
			return fail(err)
		}
		if d, err := root.Open("."); err == nil {
			defer d.Close()
			freeOf = d
		}
		consume = func(r io.Reader) error {
			defer root.Close()
			x := newExtractor(ctx, root, opts.Special)
			defer x.close()
			var err error
			if plan.Archive == "tar" {
				err = untar(r, x)
			} else {
				err = uncpio(r, x)
			}
			s.notes = x.notes()
			if err != nil {
				return err
			}
			if d, err := root.Open("."); err == nil {
				defer d.Close()
				if err := syncFS(d); err != nil {
					return fmt.Errorf("sync %s: %w", dest, err)
				}
			}
			return nil
		}
	}
	var bound *outputBound
	if plan.Compression != None && freeOf != nil {
		if free < 0 {
			free, _ = freeBytes(freeOf)
		}
		bound = &outputBound{ratio: CookRatio, free: free, floor: CookFloor}
	}
	// Closing the read end unblocks both the consumer's reads and a
	// WriteAt waiting on them.
	stop := context.AfterFunc(ctx, func() { pr.CloseWithError(ctx.Err()) })
	go func() {
		defer close(s.done)
		defer stop()
		in := &countReader{r: ctxReader{ctx, pr}}
		r, release, err := Decompress(in, plan.Compression)
		if err == nil {
			out := io.Reader(ctxReader{ctx, r})
			if bound != nil {
				bound.r, bound.in = out, in
				out = bound
			}
			err = consume(out)
			release()
		}
		if err == nil {
			// The archive ended before its padding: the rest of the
			// stream is dropped as it comes, never read.
			s.ended.Store(true)
			pr.CloseWithError(errEnded)
		} else {
			if ctx.Err() != nil && (errors.Is(err, ctx.Err()) || errors.Is(err, io.ErrClosedPipe)) {
				// Stopped: a read after the context's end closed the
				// pipe may see the closed pipe rather than the context's
				// error (the order is the scheduler's).
				err = fmt.Errorf("stopped: %w", ctx.Err())
			}
			err = fmt.Errorf("cook %s into %s: %w", filepath.Base(srcName), dest, err)
			pr.CloseWithError(errors.Join(err, errAborted))
		}
		s.err = err
	}()
	return s, nil
}

// outputBound fails a decompressed stream that yields more than
// max(ratio × the compressed bytes read, free, floor).
type outputBound struct {
	r                  io.Reader
	in                 *countReader
	ratio, free, floor int64
	out                int64
}

func (b *outputBound) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.out += int64(n)
	if b.out > b.free && b.out > b.floor && b.out > b.ratio*b.in.n {
		return n, fmt.Errorf("decompressed output passed %d bytes: more than %d× the %d compressed bytes received and more than the %d bytes free on the target (a decompression bomb?): %w",
			b.out, b.ratio, b.in.n, max(b.free, b.floor), ErrLimit)
	}
	return n, err
}

// countReader counts the bytes read through it.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// ctxReader fails reads once ctx is done, so a loop that reads never
// outlives its context by more than one read.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// openDestDir creates the directory dest (under opts.Root if set) and
// returns it as an os.Root.
func openDestDir(dest string, opts SinkOptions) (*os.Root, error) {
	if opts.Root == "" {
		if err := os.MkdirAll(dest, 0o755); err != nil {
			return nil, fmt.Errorf("create directory %s: %w", dest, err)
		}
		r, err := os.OpenRoot(dest)
		if err != nil {
			return nil, fmt.Errorf("open directory %s: %w", dest, err)
		}
		return r, nil
	}
	rel, err := confine(opts.Root, dest)
	if err != nil {
		return nil, fmt.Errorf("open target: %w", err)
	}
	root, err := os.OpenRoot(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("open target root %s: %w", opts.Root, err)
	}
	defer root.Close()
	if err := root.MkdirAll(rel, 0o755); err != nil {
		return nil, fmt.Errorf("create directory %s: %w", dest, notAllowed(err))
	}
	r, err := root.OpenRoot(rel)
	if err != nil {
		return nil, fmt.Errorf("open directory %s: %w", dest, notAllowed(err))
	}
	return r, nil
}

// writeSparse copies r into the file sink, leaving 64 KiB blocks of zeros
// as holes, and syncs it. It stops when ctx is done.
func writeSparse(ctx context.Context, fs *FileSink, r io.Reader) error {
	defer fs.Close()
	buf := make([]byte, 1<<20)
	var off int64
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := readFull(r, buf)
		for i := 0; i < n; {
			j := min(n, i+64<<10)
			// A device keeps what it held where nothing is written:
			// its zeros are written too.
			if fs.isDev || !allZero(buf[i:j]) {
				if fs.isDev && off+int64(j) > fs.size {
					return fmt.Errorf("write %s: the decompressed image is larger than the %d-byte device: %w", fs.name, fs.size, ErrTooSmall)
				}
				if _, err := fs.f.WriteAt(buf[i:j], off+int64(i)); err != nil {
					return fmt.Errorf("write %s: %w", fs.name, err)
				}
			}
			i = j
		}
		off += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if !fs.isDev {
		if err := fs.f.Truncate(off); err != nil {
			return fmt.Errorf("resize %s: %w", fs.name, err)
		}
	}
	if err := fs.f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", fs.name, err)
	}
	return fs.Close()
}

// readFull fills buf from r. Unlike io.ReadFull it returns io.EOF only
// for the end of the stream, so a truncated compressed stream
// (io.ErrUnexpectedEOF from its decoder) is an error, not a short image.
func readFull(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		k, err := r.Read(buf[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// WriteAt feeds p, which must start at or after the end of the previous
// write, to the cooker. Once the archive has ended, what follows is
// dropped without being read.
func (s *CookSink) WriteAt(p []byte, off int64) (int, error) {
	if s.closed || s.synced {
		return 0, ErrClosed
	}
	if off < s.next {
		return 0, fmt.Errorf("cook %s: write at %d after %d bytes: %w", s.dest, off, s.next, ErrOrder)
	}
	if s.size >= 0 && off+int64(len(p)) > s.size {
		return 0, fmt.Errorf("cook %s: %d bytes at %d, the item has %d: %w", s.dest, len(p), off, s.size, ErrOutOfRange)
	}
	if gap := off - s.next; gap > 0 && !s.ended.Load() {
		z := make([]byte, min(gap, 1<<20))
		for gap > 0 {
			k := min(gap, int64(len(z)))
			if _, err := s.pw.Write(z[:k]); err != nil {
				if err := s.pipeErr(err); err != nil {
					return 0, err
				}
				break
			}
			gap -= k
			s.next += k
		}
	}
	s.next = off
	n, err := s.pw.Write(p)
	if err != nil {
		if err := s.pipeErr(err); err != nil {
			return n, err
		}
		n = len(p)
	}
	s.next += int64(n)
	return n, nil
}

// pipeErr returns the consumer's error when it stopped early, nil when
// it stopped because the archive ended.
func (s *CookSink) pipeErr(err error) error {
	if errors.Is(err, errEnded) {
		return nil
	}
	<-s.done
	if s.err != nil {
		return s.err
	}
	return err
}

// Sync ends the stream and waits until everything is unpacked and synced;
// it returns the first unpacking error.
func (s *CookSink) Sync() error {
	if s.closed {
		return ErrClosed
	}
	if s.synced {
		return s.err
	}
	s.synced = true
	s.pw.Close()
	<-s.done
	return s.err
}

// Close aborts the cooking if Sync was not called, and waits for the
// consumer, which stops within a chunk of work. Errors are reported once,
// by Sync; after an abort the partial output stays where it is and Close
// returns nil.
func (s *CookSink) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	if !s.synced {
		s.pw.CloseWithError(errAborted)
		s.cancel()
	}
	<-s.done
	s.cancel()
	return nil
}

// Notes says what unpacking left out because the sink was opened without
// SinkOptions.Special (device nodes and FIFOs skipped, setuid/setgid bits
// removed, privileged extended attributes not set), "" when nothing was.
// Valid after Sync.
func (s *CookSink) Notes() string {
	select {
	case <-s.done:
		return s.notes
	default:
		return ""
	}
}

// Dest returns the output file or directory.
func (s *CookSink) Dest() string { return s.dest }

// Plan returns what the sink does.
func (s *CookSink) Plan() CookPlan { return s.plan }
