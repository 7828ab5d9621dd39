package blockdev

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/herd-cluster/herd/blockdev/fsmap"
)

// SinkOptions choose where and how a Sink may write. The zero value
// writes regular files anywhere the process may, and refuses every block
// device.
type SinkOptions struct {
	// Root confines file targets: a relative destination is resolved under
	// Root and an absolute one must lie inside it; symlinks are followed
	// only while they stay inside (os.Root). "" means no confinement.
	Root string
	// AllowDevices lists the block devices that may be written, as
	// AllowList patterns ("/dev/sda", "/dev/sd?", "/dev/loop*"), matched
	// against the destination with its symlinks resolved (a pattern
	// without glob characters may itself be a link, like
	// /dev/disk/by-id/X). Directory patterns ("/dev/**") allow no
	// device, and a malformed pattern allows nothing.
	AllowDevices []string
	// ZeroUnused makes ranges never written read as zeros on devices
	// (BLKZEROOUT, else written zeros), so the whole target is byte for
	// byte the source. File targets are recreated and their holes read as
	// zeros already.
	ZeroUnused bool
	// Need is how many bytes will really be written to a file target
	// (e.g. Source.Stats().UsedBytes); when > 0 the filesystem's free
	// space is checked against it before anything is written.
	Need int64
	// FileMode is the permission of created files; default 0o600.
	FileMode os.FileMode
	// Offset shifts every write by this many bytes: the sink is the
	// section of the file or device that starts there (a partition of a
	// whole disk, when the kernel shows no partition node). The size check
	// counts from Offset. A file target with an Offset is not truncated,
	// only grown to Offset+size.
	Offset int64
	// Keep opens an existing file target without truncating it (it is
	// only grown to size): a restarted receiver takes up what it wrote
	// before (ring.Item.Keep). Devices are never truncated.
	Keep bool
	// Special lets a cooked archive create device nodes and FIFOs, keep
	// setuid/setgid bits, give files the owners the archive names (when
	// running as root) and set privileged extended attributes (file
	// capabilities, ACLs, SELinux labels). Off by default: such entries
	// are skipped or stripped and named in CookSink.Notes. Turn it on
	// only to unpack an operating system tree onto a filesystem made for
	// it (file-level deploys, PXE stage 2).
	Special bool
}

// FileSink writes runs to a regular file or a block device. It satisfies
// ring.Sink. WriteAt may be called with any offsets (re-sends after a
// failure may go back) but is fastest with increasing ones; it must not be
// called concurrently.
type FileSink struct {
	f       *os.File
	name    string
	base    int64 // SinkOptions.Offset
	size    int64 // declared size (< 0: unknown)
	isDev   bool
	zero    bool
	next    int64 // end of the highest write so far
	written []Extent
	sorted  bool
	synced  bool
	closed  bool
}

// OpenSink opens dest for writing size bytes (size < 0: unknown) after the
// checks in OpenFileSink. It returns a nil Sink on error.
func OpenSink(dest string, size int64, opts SinkOptions) (Sink, error) {
	s, err := OpenFileSink(dest, size, opts)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// OpenFileSink opens dest for writing. Before anything is written it
// refuses: a block device not in opts.AllowDevices or a file outside
// opts.Root (ErrNotAllowed); a device smaller than size or a filesystem
// without opts.Need free bytes (ErrTooSmall, naming both sizes); a target
// that is mounted, used as swap, backing a loop device or held by another
// user (ErrInUse). Files and their parent directories are created; an
// existing file is truncated (unless opts.Keep) and resized to size.
func OpenFileSink(dest string, size int64, opts SinkOptions) (*FileSink, error) {
	if dest == "" {
		return nil, fmt.Errorf("open target: empty path: %w", ErrNotAllowed)
	}
	if fi, err := os.Stat(dest); err == nil && isBlockDevice(fi) && (opts.Root == "" || filepath.IsAbs(dest)) {
		return openDeviceSink(dest, fi, size, opts)
	}
	return openFileTarget(dest, size, opts)
}

func isBlockDevice(fi os.FileInfo) bool {
	return fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0
}

// deviceAllowed reports whether the device dest is in allow (AllowList
// patterns, AllowsDevice). Only dest's real path counts: a link matching
// a pattern does not carry its target in.
func deviceAllowed(dest string, allow []string) bool {
	l, err := ParseAllowList(allow)
	if err != nil {
		return false
	}
	abs, err := filepath.Abs(dest)
	if err != nil {
		return false
	}
	real, err := ResolvePath(abs)
	return err == nil && l.AllowsDevice(real)
}

func openDeviceSink(dest string, fi os.FileInfo, size int64, opts SinkOptions) (*FileSink, error) {
	if !deviceAllowed(dest, opts.AllowDevices) {
		return nil, fmt.Errorf("open target %s: block device not in the allowed list %v: %w", dest, opts.AllowDevices, ErrNotAllowed)
	}
	if err := deviceInUse(dest, fi); err != nil {
		return nil, fmt.Errorf("open target %s: %w", dest, err)
	}
	f, err := openExclusive(dest)
	if err != nil {
		if isBusy(err) {
			return nil, fmt.Errorf("open target %s: exclusive open refused (mounted or held): %w", dest, ErrInUse)
		}
		return nil, fmt.Errorf("open target %s: %w", dest, err)
	}
	devSize, err := deviceSize(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open target %s: %w", dest, err)
	}
	if opts.Offset < 0 || opts.Offset > devSize {
		f.Close()
		return nil, fmt.Errorf("open target %s: offset %d outside the %d-byte device: %w", dest, opts.Offset, devSize, ErrOutOfRange)
	}
	if avail := devSize - opts.Offset; size > avail {
		f.Close()
		if opts.Offset > 0 {
			return nil, fmt.Errorf("open target %s: device has %d bytes after offset %d, %d must fit: %w", dest, avail, opts.Offset, size, ErrTooSmall)
		}
		return nil, fmt.Errorf("open target %s: device has %d bytes, %d must fit: %w", dest, devSize, size, ErrTooSmall)
	}
	if size < 0 {
		size = devSize - opts.Offset
	}
	return &FileSink{f: f, name: dest, base: opts.Offset, size: size, isDev: true, zero: opts.ZeroUnused, sorted: true}, nil
}

// confine returns dest relative to root, refusing paths that leave it.
func confine(root, dest string) (string, error) {
	rel := dest
	if filepath.IsAbs(dest) {
		r, err := filepath.Rel(filepath.Clean(root), filepath.Clean(dest))
		if err != nil {
			return "", err
		}
		rel = r
	}
	rel = filepath.Clean(rel)
	if rel == "." || rel == ".." || strings.HasPrefix(rel, "../") || filepath.IsAbs(rel) {
		return "", fmt.Errorf("%s is outside root %s: %w", dest, root, ErrNotAllowed)
	}
	return rel, nil
}

func openFileTarget(dest string, size int64, opts SinkOptions) (*FileSink, error) {
	mode := opts.FileMode
	if mode == 0 {
		mode = 0o600
	}
	var f *os.File
	name := dest
	if opts.Root != "" {
		rel, err := confine(opts.Root, dest)
		if err != nil {
			return nil, fmt.Errorf("open target: %w", err)
		}
		root, err := os.OpenRoot(opts.Root)
		if err != nil {
			return nil, fmt.Errorf("open target root %s: %w", opts.Root, err)
		}
		defer root.Close()
		if dir := filepath.Dir(rel); dir != "." {
			if err := root.MkdirAll(dir, 0o755); err != nil {
				return nil, fmt.Errorf("open target %s: create parent: %w", dest, notAllowed(err))
			}
		}
		if fi, err := root.Stat(rel); err == nil && !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("open target %s: not a regular file under the root (%s): %w", dest, fi.Mode().Type(), ErrNotAllowed)
		}
		f, err = root.OpenFile(rel, os.O_RDWR|os.O_CREATE, mode)
		if err != nil {
			return nil, fmt.Errorf("open target %s: %w", dest, notAllowed(err))
		}
		name = filepath.Join(opts.Root, rel)
	} else {
		// Not even opened when it is not a regular file (a character
		// device may act on open).
		if fi, err := os.Stat(dest); err == nil && !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("open target %s: not a regular file (%s) and not an allowed block device: %w", dest, fi.Mode().Type(), ErrNotAllowed)
		}
		if dir := filepath.Dir(dest); dir != "." {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, fmt.Errorf("open target %s: create parent: %w", dest, err)
			}
		}
		var err error
		f, err = os.OpenFile(dest, os.O_RDWR|os.O_CREATE, mode)
		if err != nil {
			return nil, fmt.Errorf("open target %s: %w", dest, err)
		}
	}
	fail := func(err error) (*FileSink, error) {
		f.Close()
		return nil, fmt.Errorf("open target %s: %w", dest, err)
	}
	fi, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	if !fi.Mode().IsRegular() {
		return fail(fmt.Errorf("not a regular file (%s) and not an allowed block device: %w", fi.Mode().Type(), ErrNotAllowed))
	}
	if err := fileInUse(fi); err != nil {
		return fail(err)
	}
	if opts.Need > 0 {
		if free, err := freeBytes(f); err == nil && free+fi.Size() < opts.Need {
			return fail(fmt.Errorf("filesystem has %d bytes free, %d must fit: %w", free+fi.Size(), opts.Need, ErrTooSmall))
		}
	}
	if opts.Offset < 0 {
		return fail(fmt.Errorf("offset %d: %w", opts.Offset, ErrOutOfRange))
	}
	cur := fi.Size()
	if opts.Offset == 0 && !opts.Keep {
		if err := f.Truncate(0); err != nil {
			return fail(err)
		}
		cur = 0
	}
	if size > 0 && cur < opts.Offset+size {
		if err := f.Truncate(opts.Offset + size); err != nil {
			return fail(fmt.Errorf("resize to %d bytes: %w", opts.Offset+size, err))
		}
	}
	return &FileSink{f: f, name: name, base: opts.Offset, size: size, zero: opts.ZeroUnused, sorted: true}, nil
}

// notAllowed marks os.Root escapes as ErrNotAllowed.
func notAllowed(err error) error {
	if err != nil && strings.Contains(err.Error(), "escapes") {
		return fmt.Errorf("%w: %w", ErrNotAllowed, err)
	}
	return err
}

// WriteAt writes p at off. It refuses writes past the declared size. With
// ZeroUnused on a device, the gap since the previous write is zeroed.
func (s *FileSink) WriteAt(p []byte, off int64) (int, error) {
	if s.closed {
		return 0, ErrClosed
	}
	if off < 0 || (s.size >= 0 && off+int64(len(p)) > s.size) {
		return 0, fmt.Errorf("write %s: %d bytes at %d, target has %d: %w", s.name, len(p), off, s.size, ErrOutOfRange)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if s.zero && s.isDev && off > s.next {
		if err := zeroRange(s.f, s.base+s.next, off-s.next, true); err != nil {
			return 0, fmt.Errorf("zero %s [%d,%d): %w", s.name, s.next, off, err)
		}
	}
	n, err := s.f.WriteAt(p, s.base+off)
	s.record(off, int64(n))
	if err != nil {
		return n, fmt.Errorf("write %s at %d: %w", s.name, off+int64(n), err)
	}
	return n, nil
}

func (s *FileSink) record(off, n int64) {
	if n <= 0 {
		return
	}
	if k := len(s.written); k > 0 && s.written[k-1].End() == off {
		s.written[k-1].Len += n
	} else {
		if k > 0 && off < s.written[k-1].End() {
			s.sorted = false
		}
		s.written = append(s.written, Extent{Off: off, Len: n})
	}
	s.next = max(s.next, off+n)
}

// Sync zeroes the unwritten tail of a device (ZeroUnused) and flushes
// everything to stable storage.
func (s *FileSink) Sync() error {
	if s.closed {
		return ErrClosed
	}
	if s.zero && s.isDev && s.size > s.next {
		if err := zeroRange(s.f, s.base+s.next, s.size-s.next, true); err != nil {
			return fmt.Errorf("zero %s tail: %w", s.name, err)
		}
		s.next = s.size
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", s.name, err)
	}
	s.synced = true
	return nil
}

// Close closes the target. Calling it again returns nil.
func (s *FileSink) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", s.name, err)
	}
	return nil
}

// Name returns the target's path.
func (s *FileSink) Name() string { return s.name }

// Written returns the ranges written so far, sorted and coalesced.
func (s *FileSink) Written() []Extent {
	if !s.sorted {
		s.written = fsmap.Normalize(s.written, -1)
		s.sorted = true
	}
	return append([]Extent(nil), s.written...)
}

// ReadBack re-reads the written ranges from the target (after dropping
// them from the page cache where the OS allows, so the bytes come from
// the disk) and returns their RunDigest Sum, to compare with the stream's
// (--verify). Call it after Sync, preferably before Close: then it reads
// through the descriptor it wrote with; after Close it reopens the path.
func (s *FileSink) ReadBack() ([32]byte, error) {
	h, err := s.ReadBackRuns()
	if err != nil {
		return [32]byte{}, err
	}
	return h.Sum(), nil
}

// ReadBackRuns is ReadBack returning the RunDigest, whose DataSum
// compares with ring's item digest.
func (s *FileSink) ReadBackRuns() (*RunDigest, error) {
	f := s.f
	if s.closed {
		var err error
		if f, err = os.Open(s.name); err != nil {
			return nil, fmt.Errorf("read back %s: %w", s.name, err)
		}
		defer f.Close()
	}
	dropCache(f)
	end := int64(1 << 62)
	if s.size >= 0 {
		end = s.size
	}
	return ReadBackRuns(io.NewSectionReader(f, s.base, end), s.Written())
}

func writeZeros(f *os.File, off, n int64) error {
	buf := make([]byte, min(n, 1<<20))
	for n > 0 {
		k := min(n, int64(len(buf)))
		if _, err := f.WriteAt(buf[:k], off); err != nil {
			return err
		}
		off += k
		n -= k
	}
	return nil
}

var _ io.WriterAt = (*FileSink)(nil)
