package filelevel

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/zeebo/blake3"
	"golang.org/x/sys/unix"
)

// TarOptions say which part of a golden tree WriteTar streams.
type TarOptions struct {
	// Mount is where the streamed directory sits in the golden system
	// ("/" for the root filesystem, "/var" for a /var filesystem);
	// Excludes and Skip are matched against paths in that system. "" means "/".
	Mount string
	// Excludes are paths of the golden system to leave out, like
	// `ka-d.sh -x /tmp`: a leading "/" is optional and shell globs
	// (path.Match) are allowed. An excluded directory is sent empty (its
	// entry and metadata, not its contents), so /tmp still exists on
	// the clone; an excluded file is not sent.
	Excludes []string
	// Skip are mount points of the golden system whose contents travel
	// in another stream (their own filesystem): their directory entry is
	// sent, their contents are not.
	Skip []string
	// CrossDevices streams into directories on other filesystems. By
	// default WriteTar stays on the filesystem of its directory (like
	// `tar --one-file-system`), sending such mount points empty.
	CrossDevices bool
	// Logf, when set, receives one line per file that changed size while
	// it was read.
	Logf func(format string, args ...any)
	// Sums, when set, receives the BLAKE3 digest of every regular file
	// sent (first link only), computed while it is streamed; its Mount
	// is Mount.
	Sums func(FileSum)
}

// TarStats counts what WriteTar sent.
type TarStats struct {
	Files    int   // regular files (first link)
	Dirs     int   // directories
	Links    int   // hard links to a file already sent
	Symlinks int   // symbolic links
	Special  int   // device nodes and FIFOs
	Bytes    int64 // bytes of regular file data
	Excluded int   // entries left out or sent empty by an exclude
	// Changed counts files whose size changed while they were read.
	Changed int
	// SparseHoles is the bytes of holes in sparse files, which were not
	// sent (PAX sparse entries carry only the data runs).
	SparseHoles int64
	Skipped     int // mount points sent empty (other filesystem or Skip)
}

// ErrChanged is returned when a sparse file lost data while it was
// read. (A plain file that shrank is padded with zeros, as GNU tar does,
// and logged; one that grew is cut at its listed size.) The golden tree
// should not change while it is streamed.
var ErrChanged = errors.New("filelevel: file changed while read")

// WriteTar writes the tree under dir to w as a PAX tar stream: regular
// files, directories, symbolic and hard links, device nodes and FIFOs
// with their modes, owners (numeric), modification times and extended
// attributes (SCHILY.xattr records); sockets are left out.
// Entries are in a fixed order (each directory before its entries,
// names sorted) and access times are not sent (reading a directory
// changes its own), so the same tree always gives the same stream. The first
// entry is "./", the directory itself. ctx cancels between entries.
func WriteTar(ctx context.Context, w io.Writer, dir string, o TarOptions) (TarStats, error) {
	var st TarStats
	tw := tar.NewWriter(w)
	t := &tarWalker{ctx: ctx, tw: tw, out: w, o: o, st: &st, links: map[[2]uint64]string{}, buf: make([]byte, 256<<10)}
	t.mount = path.Clean("/" + o.Mount)
	for _, e := range o.Excludes {
		if e = strings.TrimSpace(e); e != "" {
			t.excl = append(t.excl, path.Clean("/"+e))
		}
	}
	for _, s := range o.Skip {
		t.skip = append(t.skip, path.Clean("/"+s))
	}
	var root unix.Stat_t
	if err := unix.Lstat(dir, &root); err != nil {
		return st, fmt.Errorf("stat %s: %w", dir, err)
	}
	if root.Mode&unix.S_IFMT != unix.S_IFDIR {
		return st, fmt.Errorf("%s is not a directory", dir)
	}
	t.dev = root.Dev
	if err := t.walk(dir, "", &root); err != nil {
		return st, err
	}
	if err := tw.Close(); err != nil {
		return st, fmt.Errorf("end tar stream: %w", err)
	}
	return st, nil
}

type tarWalker struct {
	ctx   context.Context
	tw    *tar.Writer
	out   io.Writer // under tw, for entries tar.Writer cannot encode (sparse)
	o     TarOptions
	st    *TarStats
	mount string
	excl  []string
	skip  []string
	dev   uint64
	links map[[2]uint64]string
	buf   []byte
}

// golden returns the path of rel (relative to the streamed directory)
// in the golden system.
func (t *tarWalker) golden(rel string) string { return path.Join(t.mount, rel) }

// excluded reports whether golden path g matches an exclude.
func (t *tarWalker) excluded(g string) bool {
	for _, e := range t.excl {
		if e == g {
			return true
		}
		if ok, _ := path.Match(e, g); ok {
			return true
		}
	}
	return false
}

func (t *tarWalker) skipped(g string) bool {
	for _, s := range t.skip {
		if s == g {
			return true
		}
	}
	return false
}

// walk sends the entry at full path p (rel inside the tree, "" for the
// root) and, for a directory, its contents.
func (t *tarWalker) walk(p, rel string, st *unix.Stat_t) error {
	if err := t.ctx.Err(); err != nil {
		return err
	}
	g := t.golden(rel)
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	excl := rel != "" && t.excluded(g)
	if excl && !isDir {
		t.st.Excluded++
		return nil
	}
	if err := t.entry(p, rel, st); err != nil {
		return err
	}
	if !isDir {
		return nil
	}
	switch {
	case excl:
		t.st.Excluded++
		return nil
	case rel != "" && t.skipped(g):
		t.st.Skipped++
		return nil
	case rel != "" && !t.o.CrossDevices && st.Dev != t.dev:
		t.st.Skipped++
		return nil
	}
	ents, err := os.ReadDir(p)
	if err != nil {
		return fmt.Errorf("read directory %s: %w", p, err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for _, n := range names {
		cp := filepath.Join(p, n)
		var cst unix.Stat_t
		if err := unix.Lstat(cp, &cst); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // removed since the directory was read
			}
			return fmt.Errorf("stat %s: %w", cp, err)
		}
		if err := t.walk(cp, path.Join(rel, n), &cst); err != nil {
			return err
		}
	}
	return nil
}

func timespec(ts unix.Timespec) time.Time { return time.Unix(ts.Sec, ts.Nsec) }

// entry writes the tar header (and data) of one entry.
func (t *tarWalker) entry(p, rel string, st *unix.Stat_t) error {
	h := &tar.Header{
		Name:    rel,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: timespec(st.Mtim),
		Format:  tar.FormatPAX,
	}
	if rel == "" {
		h.Name = "./"
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		h.Typeflag = tar.TypeDir
		if rel != "" {
			h.Name += "/"
		}
		t.st.Dirs++
	case unix.S_IFREG:
		key := [2]uint64{st.Dev, st.Ino}
		if first, ok := t.links[key]; ok && st.Nlink > 1 {
			h.Typeflag, h.Linkname = tar.TypeLink, first
			h.Mode, h.Uid, h.Gid = 0, 0, 0
			t.st.Links++
			return t.writeHeader(h, p)
		}
		if st.Nlink > 1 {
			t.links[key] = rel
		}
		h.Typeflag, h.Size = tar.TypeReg, st.Size
		t.st.Files++
	case unix.S_IFLNK:
		target, err := os.Readlink(p)
		if err != nil {
			return fmt.Errorf("read link %s: %w", p, err)
		}
		h.Typeflag, h.Linkname = tar.TypeSymlink, target
		t.st.Symlinks++
	case unix.S_IFCHR, unix.S_IFBLK:
		h.Typeflag = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			h.Typeflag = tar.TypeBlock
		}
		h.Devmajor, h.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
		t.st.Special++
	case unix.S_IFIFO:
		h.Typeflag = tar.TypeFifo
		t.st.Special++
	default:
		return nil // sockets and unknown kinds are not archived
	}
	if err := t.xattrs(p, h); err != nil {
		return err
	}
	if h.Typeflag == tar.TypeReg && st.Blocks*512 < st.Size-(64<<10) {
		if done, err := t.sparseFile(p, rel, h); err != nil || done {
			return err
		}
	}
	if err := t.writeHeader(h, p); err != nil {
		return err
	}
	if h.Typeflag != tar.TypeReg {
		return nil
	}
	return t.data(p, rel, h.Size)
}

func (t *tarWalker) writeHeader(h *tar.Header, p string) error {
	if err := t.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("tar header of %s: %w", p, err)
	}
	return nil
}

// data copies exactly size bytes of file p; a file that shrank is padded
// with zeros, one that grew is cut at size (both logged and counted).
func (t *tarWalker) data(p, rel string, size int64) error {
	f, err := openNoATime(p)
	if err != nil {
		return fmt.Errorf("open %s: %w", p, err)
	}
	defer f.Close()
	var r io.Reader = io.LimitReader(f, size)
	var h *blake3.Hasher
	if t.o.Sums != nil {
		h = blake3.New()
		r = io.TeeReader(r, h)
	}
	n, err := io.CopyBuffer(t.tw, r, t.buf)
	if err != nil {
		return fmt.Errorf("read %s: %w", p, err)
	}
	if n < size {
		// It shrank (a log rotated on a live golden): pad with zeros so
		// the stream stays valid, and say so.
		t.st.Changed++
		if t.o.Logf != nil {
			t.o.Logf("%s shrank from %d to %d bytes while read: padded with zeros", p, size, n)
		}
		var zr io.Reader = io.LimitReader(zeroReader{}, size-n)
		if h != nil {
			zr = io.TeeReader(zr, h)
		}
		if _, err := io.CopyBuffer(t.tw, zr, t.buf); err != nil {
			return fmt.Errorf("tar: %w", err)
		}
	} else if extra, _ := f.Read(t.buf[:1]); extra > 0 {
		t.st.Changed++
		if t.o.Logf != nil {
			t.o.Logf("%s grew while read: sent its first %d bytes", p, size)
		}
	}
	t.st.Bytes += size
	t.sum(rel, size, h)
	return nil
}

// sum reports the digest of the file rel to o.Sums.
func (t *tarWalker) sum(rel string, size int64, h *blake3.Hasher) {
	if h == nil {
		return
	}
	fs := FileSum{Mount: t.mount, Path: rel, Size: size}
	h.Sum(fs.Sum[:0])
	t.o.Sums(fs)
}

// zeroReader reads zeros forever.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// zeros is a block of zeros for hashing holes.
var zeros = make([]byte, 64<<10)

// hashZeros feeds n zero bytes to h.
func hashZeros(h *blake3.Hasher, n int64) {
	for n > 0 {
		k := min(n, int64(len(zeros)))
		h.Write(zeros[:k])
		n -= k
	}
}

// xattrs adds p's extended attributes to h as SCHILY.xattr records.
func (t *tarWalker) xattrs(p string, h *tar.Header) error {
	names, err := listXattrs(p)
	if err != nil || len(names) == 0 {
		return nil // a filesystem without xattrs (or a race) is not an error
	}
	for _, n := range names {
		v, err := getXattr(p, n)
		if err != nil {
			continue
		}
		if h.PAXRecords == nil {
			h.PAXRecords = map[string]string{}
		}
		h.PAXRecords["SCHILY.xattr."+n] = string(v)
	}
	return nil
}

func listXattrs(p string) ([]string, error) {
	sz, err := unix.Llistxattr(p, nil)
	if err != nil || sz == 0 {
		return nil, err
	}
	buf := make([]byte, sz+256)
	sz, err = unix.Llistxattr(p, buf)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, n := range strings.Split(string(buf[:sz]), "\x00") {
		if n != "" {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names, nil
}

func getXattr(p, name string) ([]byte, error) {
	sz, err := unix.Lgetxattr(p, name, nil)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, sz+64)
	sz, err = unix.Lgetxattr(p, name, buf)
	if err != nil {
		return nil, err
	}
	return buf[:sz], nil
}

// TarSource is the source of one filesystem's tar stream, produced by
// WriteTar in a goroutine as it is read; it satisfies ring.Source. Not
// safe for concurrent use.
type TarSource struct {
	pr   *io.PipeReader
	off  int64
	done chan struct{}
	st   TarStats
	err  error
}

var errSourceClosed = errors.New("filelevel: tar source closed")

// NewTarSource starts streaming the tar of dir (see WriteTar). Close
// stops the producer and waits for it; Stats are valid after Close.
func NewTarSource(ctx context.Context, dir string, o TarOptions) *TarSource {
	return newTarSource(ctx, dir, o, nil)
}

// newTarSource is NewTarSource with a function called when WriteTar
// returns, before the reader sees the end of the stream.
func newTarSource(ctx context.Context, dir string, o TarOptions, done func(error)) *TarSource {
	pr, pw := io.Pipe()
	s := &TarSource{pr: pr, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		st, err := WriteTar(ctx, pw, dir, o)
		s.st, s.err = st, err
		if done != nil {
			done(err)
		}
		pw.CloseWithError(err) // nil: EOF for the reader
	}()
	return s
}

// ReadChunk fills p with the next bytes of the stream and returns their
// offset; io.EOF at the end.
func (s *TarSource) ReadChunk(p []byte) (int64, int, error) {
	n, err := io.ReadFull(s.pr, p)
	off := s.off
	s.off += int64(n)
	if err == io.ErrUnexpectedEOF || (err == io.EOF && n > 0) {
		err = nil
	}
	if n == 0 && err == nil {
		err = io.EOF
	}
	return off, n, err
}

// Close stops the producer (if it still runs) and waits for it.
func (s *TarSource) Close() error {
	s.pr.CloseWithError(errSourceClosed)
	<-s.done
	if s.err != nil && !errors.Is(s.err, errSourceClosed) && !errors.Is(s.err, io.ErrClosedPipe) {
		return s.err
	}
	return nil
}

// Stats returns what was streamed; valid after Close.
func (s *TarSource) Stats() TarStats { return s.st }
