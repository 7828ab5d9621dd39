package blockdev

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
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
// ErrOrder. A goroutine consumes the stream through a pipe, so memory stays
// bounded. Sync waits for the end of the archive and reports any unpacking
// error (an unsafe entry fails with the entry's name and ErrUnsafeEntry).
// Not safe for concurrent use.
type CookSink struct {
	plan   CookPlan
	dest   string
	pw     *io.PipeWriter
	done   chan struct{}
	err    error // result of the consumer, valid after done
	next   int64
	synced bool
	closed bool
}

var errAborted = errors.New("blockdev: cook aborted by Close before Sync")

// OpenCookSink prepares to cook the item named srcName into dest: a file
// or an allowed block device (opts.AllowDevices) for a compressed file, a
// directory (created if needed) for an archive.
// dest is confined by opts.Root like OpenSink; a file output is checked for
// being in use, then created or truncated. Archive entries overwrite
// existing files of the same name, as tar does.
func OpenCookSink(srcName, dest string, opts SinkOptions) (Sink, error) {
	s, err := openCookSink(srcName, dest, opts)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func openCookSink(srcName, dest string, opts SinkOptions) (*CookSink, error) {
	plan, err := PlanCook(srcName)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	s := &CookSink{plan: plan, dest: dest, pw: pw, done: make(chan struct{})}
	var consume func(io.Reader) error
	if plan.Archive == "" {
		// A file, or a block device in opts.AllowDevices (Dolly+'s
		// "image.gz >> /dev/sda1").
		fs, err := OpenFileSink(dest, -1, opts)
		if err != nil {
			return nil, err
		}
		consume = func(r io.Reader) error { return writeSparse(fs, r) }
	} else {
		root, err := openDestDir(dest, opts)
		if err != nil {
			return nil, err
		}
		consume = func(r io.Reader) error {
			defer root.Close()
			x := newExtractor(root)
			var err error
			if plan.Archive == "tar" {
				err = untar(r, x)
			} else {
				err = uncpio(r, x)
			}
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
	go func() {
		defer close(s.done)
		r, release, err := Decompress(pr, plan.Compression)
		if err == nil {
			err = consume(r)
			release()
		}
		if err == nil {
			// Archives end before their padding: drain it so the writer
			// never blocks.
			_, err = io.Copy(io.Discard, pr)
		}
		if err != nil {
			err = fmt.Errorf("cook %s into %s: %w", filepath.Base(srcName), dest, err)
		}
		s.err = err
		pr.CloseWithError(errors.Join(err, errAborted))
	}()
	return s, nil
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
// as holes, and syncs it.
func writeSparse(fs *FileSink, r io.Reader) error {
	defer fs.Close()
	buf := make([]byte, 1<<20)
	var off int64
	for {
		n, err := io.ReadFull(r, buf)
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
		if err == io.EOF || err == io.ErrUnexpectedEOF {
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

// WriteAt feeds p, which must start at or after the end of the previous
// write, to the cooker.
func (s *CookSink) WriteAt(p []byte, off int64) (int, error) {
	if s.closed || s.synced {
		return 0, ErrClosed
	}
	if off < s.next {
		return 0, fmt.Errorf("cook %s: write at %d after %d bytes: %w", s.dest, off, s.next, ErrOrder)
	}
	if gap := off - s.next; gap > 0 {
		z := make([]byte, min(gap, 1<<20))
		for gap > 0 {
			k := min(gap, int64(len(z)))
			if _, err := s.pw.Write(z[:k]); err != nil {
				return 0, s.pipeErr(err)
			}
			gap -= k
			s.next += k
		}
	}
	n, err := s.pw.Write(p)
	s.next += int64(n)
	if err != nil {
		return n, s.pipeErr(err)
	}
	return n, nil
}

// pipeErr returns the consumer's error when it stopped early.
func (s *CookSink) pipeErr(err error) error {
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
// consumer. Errors are reported once, by Sync; after an abort the partial
// output stays where it is and Close returns nil.
func (s *CookSink) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	if !s.synced {
		s.pw.CloseWithError(errAborted)
	}
	<-s.done
	return nil
}

// Dest returns the output file or directory.
func (s *CookSink) Dest() string { return s.dest }

// Plan returns what the sink does.
func (s *CookSink) Plan() CookPlan { return s.plan }
