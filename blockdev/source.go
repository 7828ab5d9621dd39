package blockdev

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/herd-cluster/herd/blockdev/fsmap"
)

// SourceOptions choose how a Source reads. The zero value copies
// everything except the holes of sparse files, and decompresses gzip, zstd
// and .Z images (detected by their magic bytes).
type SourceOptions struct {
	// UsedOnly sends only the blocks the filesystem uses: ext2/3/4 and FAT
	// through their own bitmaps, other filesystems through partclone's map
	// when partclone is installed, otherwise every block except runs of
	// zeros. The target must read unused ranges as zeros or not care
	// (a fresh file, or a sink with ZeroUnused).
	UsedOnly bool
	// SkipZeros skips all-zero blocks of ZeroBlock bytes (also on
	// decompressed streams).
	SkipZeros bool
	// ZeroBlock is the zero-skipping granularity; default 64 KiB.
	ZeroBlock int
	// Raw sends a compressed image as it is instead of decompressing it.
	Raw bool
	// Partclone is the directory holding partclone.<fs>; "" searches
	// $PATH, "-" never uses partclone.
	Partclone string
	// PartcloneTimeout bounds the partclone map run; default 10 minutes.
	PartcloneTimeout time.Duration
	// Offset and Length select a section of the file or device (a
	// partition of a whole-disk image, say) to read as if it were the whole
	// source: offsets yielded are relative to Offset. Length 0 means to the
	// end. partclone maps are not used for a section (zero skipping
	// instead).
	Offset, Length int64
	// AllowMountedRW reads a block device even while it is mounted
	// read-write; by default that is refused (ErrInUse) because the copy
	// would be inconsistent.
	AllowMountedRW bool
	// MergeGap, when > 0, also sends unused gaps shorter than this many
	// bytes between used ranges, so a fragmented map gives fewer, larger
	// runs. The gaps' bytes count in UsedBytes.
	MergeGap int64
}

// Stats are a Source's byte counts.
type Stats struct {
	DeviceBytes  int64  // logical size of the device or image (-1 while unknown)
	UsedBytes    int64  // bytes in the used/data map (or yielded, for streams)
	YieldedBytes int64  // bytes handed out by ReadChunk so far
	Method       string // how ranges were chosen: "raw", "sparse", "ext4", "fat16", "partclone:xfs", "zero-skip", "gzip"...
	Note         string // why a used-block map was not used, when Method fell back to "zero-skip"
}

// String summarizes the counts for a final report, e.g.
// "ext4: 64.0 MiB on the device, 5.2 MiB used (8.1%), 5.2 MiB sent".
func (st Stats) String() string {
	dev := "unknown size"
	if st.DeviceBytes >= 0 {
		dev = FormatBytes(st.DeviceBytes) + " on the device"
	}
	pct := ""
	if st.DeviceBytes > 0 {
		pct = fmt.Sprintf(" (%.1f%%)", 100*float64(st.UsedBytes)/float64(st.DeviceBytes))
	}
	return fmt.Sprintf("%s: %s, %s used%s, %s sent", st.Method, dev, FormatBytes(st.UsedBytes), pct, FormatBytes(st.YieldedBytes))
}

// FormatBytes renders n with a binary unit ("512 B", "1.5 MiB").
func FormatBytes(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v, u := float64(n), 0
	for v >= 1024 && u < 5 {
		v /= 1024
		u++
	}
	return fmt.Sprintf("%.1f %s", v, [...]string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}[u])
}

// Source reads a file, block device, sparse or compressed image, or the
// used blocks of a filesystem, as runs in increasing offset order. It
// satisfies ring.Source. It is used by one goroutine at a time.
type Source struct {
	name   string
	f      *os.File
	ra     io.ReaderAt // f, or the selected section of it
	size   int64
	ext    []Extent // extent mode: ranges to read; nil in stream mode
	cur    int      // current extent
	pos    int64    // offset within ext[cur]
	stream io.Reader
	sdone  func()
	spos   int64  // offset of pend[0] (or of the next stream byte)
	pend   []byte // stream bytes read but not yet yielded
	eof    bool
	zb     int64 // zero-skip block, 0 = off
	st     Stats
	closed bool
}

// OpenSource opens path for reading as a Source according to opts.
func OpenSource(path string, opts SourceOptions) (*Source, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // a *fs.PathError: "open PATH: why"
	}
	s, err := newSource(f, opts)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open source %s: %w", path, err)
	}
	return s, nil
}

func newSource(f *os.File, opts SourceOptions) (*Source, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	s := &Source{name: f.Name(), f: f}
	if opts.SkipZeros {
		s.zb = int64(opts.ZeroBlock)
		if s.zb <= 0 {
			s.zb = 64 << 10
		}
	}
	isDev := fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0
	if opts.Offset < 0 || opts.Length < 0 {
		return nil, fmt.Errorf("section at %d of %d bytes: %w", opts.Offset, opts.Length, ErrOutOfRange)
	}
	sectioned := opts.Offset != 0 || opts.Length != 0
	// section clips the full size to the selected section.
	section := func(full int64) error {
		if opts.Offset > full || (opts.Length > 0 && opts.Offset+opts.Length > full) {
			return fmt.Errorf("section [%d,+%d) of a %d-byte source: %w", opts.Offset, opts.Length, full, ErrOutOfRange)
		}
		s.size = full - opts.Offset
		if opts.Length > 0 {
			s.size = opts.Length
		}
		s.ra = io.NewSectionReader(f, opts.Offset, s.size)
		return nil
	}
	switch {
	case isDev:
		if !opts.AllowMountedRW {
			if err := sourceMountedRW(f.Name(), fi); err != nil {
				return nil, err
			}
		}
		full, err := deviceSize(f)
		if err != nil {
			return nil, err
		}
		if err := section(full); err != nil {
			return nil, err
		}
		s.st.Method = "raw"
		s.ext = whole(s.size)
	case fi.Mode().IsRegular():
		if err := section(fi.Size()); err != nil {
			return nil, err
		}
		if !opts.Raw {
			head := make([]byte, 4)
			n, _ := s.ra.ReadAt(head, 0)
			if c := Sniff(head[:n]); c != None {
				return s.openStream(c, opts)
			}
		}
		ext, ok, err := dataExtents(f, fi.Size())
		if err != nil {
			return nil, err
		}
		if ok {
			ext = fsmap.Intersect(ext, []Extent{{Off: opts.Offset, Len: s.size}})
			for i := range ext {
				ext[i].Off -= opts.Offset
			}
		}
		if ok && fsmap.Total(ext) < s.size {
			s.ext, s.st.Method = ext, "sparse"
		} else {
			s.ext, s.st.Method = whole(s.size), "raw"
		}
	default:
		if sectioned {
			return nil, fmt.Errorf("a section of a stream: %w", ErrUnsupported)
		}
		// A pipe or character device: read as a stream, decompressing.
		return s.openStreamFrom(f, opts)
	}
	if sectioned && opts.Partclone == "" {
		opts.Partclone = "-"
	}
	if opts.UsedOnly {
		if err := s.useMap(opts); err != nil {
			return nil, err
		}
	}
	if opts.MergeGap > 0 {
		s.ext = mergeGaps(s.ext, opts.MergeGap)
	}
	s.st.DeviceBytes = s.size
	s.st.UsedBytes = fsmap.Total(s.ext)
	return s, nil
}

// mergeGaps joins sorted extents separated by less than gap bytes.
func mergeGaps(ext []Extent, gap int64) []Extent {
	out := make([]Extent, 0, len(ext))
	for _, e := range ext {
		if k := len(out); k > 0 && e.Off-out[k-1].End() < gap {
			out[k-1].Len = e.End() - out[k-1].Off
			continue
		}
		out = append(out, e)
	}
	return out
}

func whole(size int64) []Extent {
	if size == 0 {
		return []Extent{}
	}
	return []Extent{{Off: 0, Len: size}}
}

// useMap narrows s.ext to the filesystem's used blocks, or falls back to
// zero skipping (with the reason in Stats.Note).
func (s *Source) useMap(opts SourceOptions) error {
	m, err := fsmap.Detect(s.ra, s.size)
	if err == nil {
		s.ext = fsmap.Intersect(s.ext, m.Extents)
		s.st.Method = m.FS
		return nil
	}
	// Whatever goes wrong with a map, skipping zeros is always safe.
	if !errors.Is(err, fsmap.ErrUnknownFS) {
		s.st.Note = err.Error()
	}
	if fs := fsmap.Probe(s.ra); fs != "" && opts.Partclone != "-" {
		ext, err := partcloneMap(s.name, fs, opts)
		if err == nil {
			s.ext = fsmap.Intersect(s.ext, fsmap.Normalize(ext, s.size))
			s.st.Method = "partclone:" + fs
			s.st.Note = ""
			return nil
		}
		s.st.Note = err.Error()
	}
	if s.zb == 0 {
		s.zb = int64(opts.ZeroBlock)
		if s.zb <= 0 {
			s.zb = 64 << 10
		}
	}
	s.st.Method = "zero-skip"
	return nil
}

// partcloneMap runs `partclone.<fs> -D` on dev and parses its domain map.
// It returns an error wrapping exec.ErrNotFound when partclone is missing.
func partcloneMap(dev, fs string, opts SourceOptions) ([]Extent, error) {
	bin := "partclone." + fs
	if fs == "hfsplus" {
		bin = "partclone.hfsp"
	}
	var path string
	var err error
	if opts.Partclone != "" {
		path = filepath.Join(opts.Partclone, bin)
		if _, err = os.Stat(path); err != nil {
			return nil, fmt.Errorf("%s: %w", path, exec.ErrNotFound)
		}
	} else if path, err = exec.LookPath(bin); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "herd-partclone-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	timeout := opts.PartcloneTimeout
	if timeout <= 0 {
		timeout = 10 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	mapFile, logFile := filepath.Join(dir, "map"), filepath.Join(dir, "log")
	out, err := exec.CommandContext(ctx, path, "-D", "-s", dev, "-o", mapFile, "-L", logFile).CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(logFile)
		return nil, fmt.Errorf("%s -D -s %s: %w: %s%s", bin, dev, err, tail(out), tail(log))
	}
	mf, err := os.Open(mapFile)
	if err != nil {
		return nil, err
	}
	defer mf.Close()
	ext, err := fsmap.ParseDomain(mf)
	if err != nil {
		return nil, fmt.Errorf("%s map: %w", bin, err)
	}
	return ext, nil
}

func tail(b []byte) string {
	if len(b) > 300 {
		b = b[len(b)-300:]
	}
	return string(b)
}

func (s *Source) openStream(c Compression, opts SourceOptions) (*Source, error) {
	r, done, err := Decompress(io.NewSectionReader(s.ra, 0, s.size), c)
	if err != nil {
		return nil, err
	}
	s.stream, s.sdone = r, done
	s.st.Method = string(c)
	s.streamOpts(opts)
	return s, nil
}

func (s *Source) openStreamFrom(r io.Reader, opts SourceOptions) (*Source, error) {
	br, c := sniffReader(r)
	if opts.Raw {
		c = None
	}
	zr, done, err := Decompress(br, c)
	if err != nil {
		return nil, err
	}
	s.stream, s.sdone = zr, done
	s.st.Method = "stream"
	if c != None {
		s.st.Method = string(c)
	}
	s.streamOpts(opts)
	return s, nil
}

// streamOpts finishes a stream source: the size is unknown until the end,
// and UsedOnly (which needs random access for a map) means zero skipping.
func (s *Source) streamOpts(opts SourceOptions) {
	s.size, s.st.DeviceBytes = -1, -1
	if opts.UsedOnly && s.zb == 0 {
		s.zb = int64(opts.ZeroBlock)
		if s.zb <= 0 {
			s.zb = 64 << 10
		}
	}
	if s.zb > 0 {
		s.st.Method += "+zero-skip"
	}
}

// NewStreamSource returns a Source over a sequential reader (offsets
// 0, 1, 2... with no holes unless SkipZeros), decompressing gzip, zstd and
// .Z streams unless opts.Raw. UsedOnly means zero skipping (a map needs
// random access). Close closes r if it is an io.Closer.
func NewStreamSource(r io.Reader, opts SourceOptions) (*Source, error) {
	s := &Source{name: "stream"}
	if c, ok := r.(io.Closer); ok {
		s.sdone = func() { c.Close() }
	}
	if opts.SkipZeros {
		s.zb = int64(opts.ZeroBlock)
		if s.zb <= 0 {
			s.zb = 64 << 10
		}
	}
	closeR := s.sdone
	s2, err := s.openStreamFrom(r, opts)
	if err != nil {
		return nil, err
	}
	if closeR != nil {
		inner := s2.sdone
		s2.sdone = func() { inner(); closeR() }
	}
	return s2, nil
}

// Size returns the logical size in bytes, or -1 for a stream whose size is
// not known until its end (then the size seen so far).
func (s *Source) Size() int64 {
	if s.stream != nil && s.eof {
		return s.spos
	}
	return s.size
}

// Extents returns the ranges the Source will yield (before zero
// skipping), or nil for a stream.
func (s *Source) Extents() []Extent {
	if s.ext == nil {
		return nil
	}
	return append([]Extent(nil), s.ext...)
}

// Stats returns the byte counts so far. For streams, DeviceBytes and
// UsedBytes are final once ReadChunk has returned io.EOF.
func (s *Source) Stats() Stats { return s.st }

// ReadChunk fills p from its start with the next run and returns its
// offset; io.EOF with n == 0 at the end. A run never crosses a hole.
func (s *Source) ReadChunk(p []byte) (int64, int, error) {
	if s.closed {
		return 0, 0, ErrClosed
	}
	if len(p) == 0 {
		return 0, 0, io.ErrShortBuffer
	}
	for {
		off, n, err := s.raw(p)
		if err != nil || n == 0 {
			return 0, 0, err
		}
		if s.zb > 0 {
			lead, keep := zeroTrim(p[:n], off, s.zb)
			if keep == 0 {
				s.unread(p[lead:n], off+int64(lead), 0)
				continue
			}
			if lead > 0 {
				copy(p, p[lead:lead+keep])
			}
			s.unread(p[lead+keep:n], off+int64(lead+keep), keep)
			off += int64(lead)
			n = keep
		}
		s.st.YieldedBytes += int64(n)
		return off, n, nil
	}
}

// unread gives back the unused tail of a raw run. For streams the bytes are
// kept (they were consumed from the stream); data is p's tail, which the
// caller may overwrite only after it returns, so it is copied. kept is the
// number of bytes the caller kept (their space is reused by copy above).
func (s *Source) unread(rest []byte, off int64, kept int) {
	if len(rest) == 0 {
		return
	}
	if s.stream != nil {
		s.pend = append(s.pend[:0:0], rest...)
		s.spos = off
		return
	}
	// Extent mode: move back within the current extent.
	s.pos -= int64(len(rest))
	_ = kept
}

// raw returns the next contiguous bytes without zero skipping.
func (s *Source) raw(p []byte) (int64, int, error) {
	if s.stream != nil {
		return s.rawStream(p)
	}
	for s.cur < len(s.ext) && s.pos >= s.ext[s.cur].Len {
		s.cur++
		s.pos = 0
	}
	if s.cur >= len(s.ext) {
		return 0, 0, io.EOF
	}
	e := s.ext[s.cur]
	n := int(min(int64(len(p)), e.Len-s.pos))
	off := e.Off + s.pos
	m, err := s.ra.ReadAt(p[:n], off)
	if m < n {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, 0, fmt.Errorf("read %s at %d: %w", s.name, off+int64(m), err)
	}
	s.pos += int64(n)
	return off, n, nil
}

func (s *Source) rawStream(p []byte) (int64, int, error) {
	off := s.spos
	n := copy(p, s.pend)
	s.pend = s.pend[n:]
	if n < len(p) && !s.eof {
		m, err := io.ReadFull(s.stream, p[n:])
		n += m
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			s.eof = true
		} else if err != nil {
			return 0, 0, fmt.Errorf("read %s at %d: %w", s.name, off+int64(n), err)
		}
	}
	s.spos = off + int64(n)
	if n == 0 {
		if s.eof {
			s.st.DeviceBytes = s.spos
			s.st.UsedBytes = s.st.YieldedBytes
		}
		return 0, 0, io.EOF
	}
	return off, n, nil
}

// zeroTrim splits a run at off into lead bytes of leading zero blocks to
// skip and keep bytes of data up to the next zero block. Blocks are aligned
// to multiples of zb in the source's offsets.
func zeroTrim(p []byte, off, zb int64) (lead, keep int) {
	i := 0
	for i < len(p) {
		end := min(len(p), i+int(zb-(off+int64(i))%zb))
		if !allZero(p[i:end]) {
			break
		}
		i = end
	}
	lead = i
	for i < len(p) {
		end := min(len(p), i+int(zb-(off+int64(i))%zb))
		if allZero(p[i:end]) {
			break
		}
		i = end
	}
	return lead, i - lead
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Close releases the Source. Calling it again returns nil.
func (s *Source) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	if s.sdone != nil {
		s.sdone()
	}
	if s.f != nil {
		return s.f.Close()
	}
	return nil
}
