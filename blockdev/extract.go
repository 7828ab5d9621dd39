package blockdev

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/herd-cluster/herd/blockdev/cpio"
	"github.com/herd-cluster/herd/blockdev/tarstream"
	"golang.org/x/sys/unix"
)

// entry is one archive member, independent of tar or cpio.
type entry struct {
	name     string
	kind     byte // 'f' file, 'd' dir, 'l' symlink, 'h' hard link, 'c' char, 'b' block, 'p' fifo
	perm     uint32
	uid, gid int
	mtime    time.Time
	atime    time.Time
	link     string               // symlink target or hard-link source
	size     int64                // apparent size of a regular file
	frags    []tarstream.Fragment // where its data goes; the rest are holes
	major    uint32
	minor    uint32
	xattrs   map[string]string
	inoKey   string // cpio: dev/ino of a multiply-linked file
}

// SafeName cleans an archive member name for extraction under a
// directory: "./" prefixes and empty components are dropped; an absolute
// name or one with a ".." component is refused with ErrUnsafeEntry. It
// returns "" for the directory itself ("." or "./").
func SafeName(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("%w: %q is absolute", ErrUnsafeEntry, name)
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%w: %q contains NUL", ErrUnsafeEntry, name)
	}
	var parts []string
	for _, p := range strings.Split(name, "/") {
		switch p {
		case "", ".":
		case "..":
			return "", fmt.Errorf("%w: %q contains ..", ErrUnsafeEntry, name)
		default:
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, "/"), nil
}

// dense returns the fragments of a file whose size bytes of data all
// follow its header.
func dense(size int64) []tarstream.Fragment {
	if size <= 0 {
		return nil
	}
	return []tarstream.Fragment{{Off: 0, Len: size}}
}

// maxDeferred bounds what the extractor remembers across entries
// (directories whose metadata is set at the end, cpio multiply-linked
// files, names of skipped entries): an archive of millions of tiny
// entries compresses to little and must not balloon the receiver.
const maxDeferred = 1 << 20

// extractor writes entries under root, never outside it: names are
// checked by SafeName, and every path is resolved by os.Root, which refuses
// to follow a symlink out of the directory.
//
// Without special, it creates no device node or FIFO (they are skipped
// and named in notes), strips setuid and setgid bits, leaves every file
// owned by the receiver and sets only "user." extended attributes (not
// security.capability, ACLs or SELinux labels). With special (and as
// root) it restores all of them, as an OS tree needs.
//
// Every data byte is counted against the filesystem's free space before
// it is written, holes of sparse files cost nothing, and each copy loop
// stops when ctx is done.
type extractor struct {
	ctx     context.Context
	root    *os.Root
	special bool
	owners  bool
	dirs    []*entry
	links   map[string]string // inoKey -> first name
	buf     []byte

	free    int64 // free bytes not yet promised to an entry (estimate)
	freeDir *os.File

	skipped   []string            // first names of entries not created
	nskipped  int                 // how many in all
	skipSet   map[string]struct{} // all of them, so hard links to them are skipped too
	stripped  int                 // setuid/setgid bits removed
	xattrSkip int                 // extended attributes not set
}

func newExtractor(ctx context.Context, root *os.Root, special bool) *extractor {
	return &extractor{
		ctx: ctx, root: root, special: special, owners: special && os.Geteuid() == 0,
		links: map[string]string{}, skipSet: map[string]struct{}{}, buf: make([]byte, 64<<10),
	}
}

// close releases what the extractor holds (not the root).
func (x *extractor) close() {
	if x.freeDir != nil {
		x.freeDir.Close()
	}
}

// notes says what was not restored for lack of the special option; ""
// when nothing was left out.
func (x *extractor) notes() string {
	var parts []string
	if x.nskipped > 0 {
		more := ""
		if x.nskipped > len(x.skipped) {
			more = fmt.Sprintf(" and %d more", x.nskipped-len(x.skipped))
		}
		parts = append(parts, fmt.Sprintf("skipped %d device/FIFO entries (%s%s)", x.nskipped, strings.Join(x.skipped, ", "), more))
	}
	if x.stripped > 0 {
		parts = append(parts, fmt.Sprintf("removed setuid/setgid from %d entries", x.stripped))
	}
	if x.xattrSkip > 0 {
		parts = append(parts, fmt.Sprintf("left out %d non-user extended attributes", x.xattrSkip))
	}
	return strings.Join(parts, "; ")
}

// skip records an entry not created.
func (x *extractor) skip(name string) {
	if x.nskipped < 10 {
		x.skipped = append(x.skipped, name)
	}
	x.nskipped++
	if len(x.skipSet) < maxDeferred {
		x.skipSet[name] = struct{}{}
	}
}

// reserve promises n bytes of the target filesystem to an entry, or
// refuses it (ErrTooSmall) when they are not free. It asks the
// filesystem again only when its running estimate falls short.
func (x *extractor) reserve(n int64) error {
	if n <= x.free {
		x.free -= n
		return nil
	}
	if x.freeDir == nil {
		d, err := x.root.Open(".")
		if err != nil {
			return nil // cannot tell: a full disk still fails the write (ENOSPC)
		}
		x.freeDir = d
	}
	free, err := freeBytes(x.freeDir)
	if err != nil {
		return nil
	}
	x.free = free
	if n > free {
		return fmt.Errorf("its %d bytes of data do not fit the %d bytes free on the target filesystem: %w", n, free, ErrTooSmall)
	}
	x.free -= n
	return nil
}

func (x *extractor) fail(e *entry, err error) error {
	if errors.Is(err, ErrUnsafeEntry) {
		return fmt.Errorf("entry %q: %w", e.name, err)
	}
	if strings.Contains(err.Error(), "escapes") || strings.Contains(err.Error(), "path escapes") {
		return fmt.Errorf("entry %q: %w: %w", e.name, ErrUnsafeEntry, err)
	}
	return fmt.Errorf("entry %q: %w", e.name, err)
}

// add creates one entry; data is its content (regular files).
func (x *extractor) add(e *entry, data io.Reader) error {
	name, err := SafeName(e.name)
	if err != nil {
		return x.fail(e, err)
	}
	if err := x.ctx.Err(); err != nil {
		return err
	}
	if name == "" {
		if e.kind == 'd' { // "." or "./": the target directory's own metadata
			d := *e
			d.name = "."
			x.dirs = append(x.dirs, &d)
		}
		return nil
	}
	if dir := path.Dir(name); dir != "." {
		if err := x.root.MkdirAll(dir, 0o755); err != nil {
			return x.fail(e, err)
		}
	}
	switch e.kind {
	case 'd':
		fi, err := x.root.Lstat(name)
		if err == nil && !fi.IsDir() {
			if err := x.root.Remove(name); err != nil {
				return x.fail(e, err)
			}
			err = fs.ErrNotExist
		}
		if err != nil {
			if err := x.root.Mkdir(name, 0o700); err != nil {
				return x.fail(e, err)
			}
		}
		if len(x.dirs) >= maxDeferred {
			return x.fail(e, fmt.Errorf("more than %d directories in one archive", maxDeferred))
		}
		d := *e
		d.name = name
		x.dirs = append(x.dirs, &d)
		return nil
	case 'f':
		if e.inoKey != "" {
			if first, ok := x.links[e.inoKey]; ok {
				if err := x.replace(name); err != nil {
					return x.fail(e, err)
				}
				if err := x.root.Link(first, name); err != nil {
					return x.fail(e, err)
				}
				if e.size > 0 { // newc: the data comes with the last link
					if err := x.writeFile(first, e, data, os.O_WRONLY|os.O_TRUNC); err != nil {
						return x.fail(e, err)
					}
				}
				return x.fail2(e, x.meta(name, e))
			}
			if len(x.links) >= maxDeferred {
				return x.fail(e, fmt.Errorf("more than %d multiply-linked files in one archive", maxDeferred))
			}
			x.links[e.inoKey] = name
		}
		if err := x.replace(name); err != nil {
			return x.fail(e, err)
		}
		if err := x.writeFile(name, e, data, os.O_WRONLY|os.O_CREATE|os.O_EXCL); err != nil {
			return x.fail(e, err)
		}
	case 'l':
		if err := x.replace(name); err != nil {
			return x.fail(e, err)
		}
		if err := x.root.Symlink(e.link, name); err != nil {
			return x.fail(e, err)
		}
	case 'h':
		src, err := SafeName(e.link)
		if err != nil || src == "" {
			return x.fail(e, fmt.Errorf("hard link target: %w", errors.Join(err, ErrUnsafeEntry)))
		}
		if _, ok := x.skipSet[src]; ok {
			x.skip(name) // a link to a device node not created
			return nil
		}
		if err := x.replace(name); err != nil {
			return x.fail(e, err)
		}
		if err := x.root.Link(src, name); err != nil {
			return x.fail(e, err)
		}
		return nil // a hard link shares its source's metadata
	case 'c', 'b', 'p':
		if !x.special {
			x.skip(name)
			return nil
		}
		if err := x.replace(name); err != nil {
			return x.fail(e, err)
		}
		mode := map[byte]uint32{'c': unix.S_IFCHR, 'b': unix.S_IFBLK, 'p': unix.S_IFIFO}[e.kind]
		err := x.atParent(name, func(dirfd int, base string) error {
			return mknodAt(dirfd, base, mode|0o600, e.major, e.minor)
		})
		if err != nil {
			return x.fail(e, fmt.Errorf("mknod: %w", err))
		}
	default:
		return nil // unknown kinds are skipped
	}
	return x.fail2(e, x.meta(name, e))
}

func (x *extractor) fail2(e *entry, err error) error {
	if err == nil {
		return nil
	}
	return x.fail(e, err)
}

// replace removes an existing non-directory at name (as tar does).
func (x *extractor) replace(name string) error {
	fi, err := x.root.Lstat(name)
	if err != nil {
		return nil
	}
	if fi.IsDir() {
		return x.root.Remove(name) // fails unless empty
	}
	return x.root.Remove(name)
}

func (x *extractor) writeFile(name string, e *entry, data io.Reader, flag int) error {
	if flag&os.O_EXCL == 0 {
		// An existing file (the first link of a cpio set): never open
		// what a later entry may have put in its place (a device node
		// has effects on open).
		if fi, err := x.root.Lstat(name); err == nil && !fi.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file (%s)", name, fi.Mode().Type())
		}
	}
	// O_NONBLOCK: never block opening a FIFO an earlier entry put there.
	f, err := x.root.OpenFile(name, flag|unix.O_NONBLOCK|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file (%s)", name, fi.Mode().Type())
	}
	if err == nil {
		err = x.fill(f, e, data)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// fill gives f its apparent size first (a size the filesystem cannot
// hold is refused before any data is written), then writes e's data
// fragments where they go. Holes cost nothing; 64 KiB blocks of zeros in
// the data stay holes too. Its data must fit the free space.
func (x *extractor) fill(f *os.File, e *entry, data io.Reader) error {
	var n int64
	for _, fr := range e.frags {
		n += fr.Len
	}
	if err := x.reserve(n); err != nil {
		return err
	}
	if err := f.Truncate(e.size); err != nil {
		if errors.Is(err, unix.EFBIG) || errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("a %d-byte file is larger than the target filesystem allows: %w", e.size, ErrTooSmall)
		}
		return err
	}
	for _, fr := range e.frags {
		for done := int64(0); done < fr.Len; {
			if err := x.ctx.Err(); err != nil {
				return err
			}
			k := min(int64(len(x.buf)), fr.Len-done)
			b := x.buf[:k]
			if _, err := io.ReadFull(data, b); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return fmt.Errorf("read data: %w", err)
			}
			if !allZero(b) {
				if _, err := f.WriteAt(b, fr.Off+done); err != nil {
					return err
				}
			}
			done += k
		}
	}
	return nil
}

// atParent runs fn with a descriptor of name's parent directory (opened
// through the root) and name's last component, so nothing follows a
// symlink in the last component.
func (x *extractor) atParent(name string, fn func(dirfd int, base string) error) error {
	dir, base := path.Split(name)
	if dir == "" {
		dir = "."
	}
	d, err := x.root.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return fn(int(d.Fd()), base)
}

// meta applies owner, mode, xattrs and times to name without following a
// symlink in its last component.
func (x *extractor) meta(name string, e *entry) error {
	return x.atParent(name, func(dirfd int, base string) error {
		if x.owners {
			if err := unix.Fchownat(dirfd, base, e.uid, e.gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return fmt.Errorf("chown %d:%d: %w", e.uid, e.gid, err)
			}
		}
		if e.kind != 'l' {
			perm := e.perm & 0o7777
			if !x.special && perm&0o6000 != 0 {
				perm &^= 0o6000
				x.stripped++
			}
			if err := unix.Fchmodat(dirfd, base, perm, 0); err != nil {
				return fmt.Errorf("chmod %o: %w", perm, err)
			}
		}
		if len(e.xattrs) > 0 {
			p := "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + base
			keys := make([]string, 0, len(e.xattrs))
			for k := range e.xattrs {
				if !x.special && !strings.HasPrefix(k, "user.") {
					x.xattrSkip++ // capabilities, ACLs, labels: privileges
					continue
				}
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				err := unix.Lsetxattr(p, k, []byte(e.xattrs[k]), 0)
				if err != nil && !errors.Is(err, unix.ENOTSUP) && !(e.kind == 'l' && errors.Is(err, unix.EPERM)) {
					return fmt.Errorf("xattr %s: %w", k, err)
				}
			}
		}
		if !e.mtime.IsZero() {
			at := e.atime
			if at.IsZero() {
				at = e.mtime
			}
			ts := []unix.Timespec{unix.NsecToTimespec(at.UnixNano()), unix.NsecToTimespec(e.mtime.UnixNano())}
			if err := unix.UtimesNanoAt(dirfd, base, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return fmt.Errorf("set times: %w", err)
			}
		}
		return nil
	})
}

// finish applies directory metadata, deepest first, so that creating
// entries did not disturb their times.
func (x *extractor) finish() error {
	depth := func(n string) int {
		if n == "." {
			return -1
		}
		return strings.Count(n, "/")
	}
	sort.SliceStable(x.dirs, func(i, j int) bool { return depth(x.dirs[i].name) > depth(x.dirs[j].name) })
	for _, d := range x.dirs {
		if err := x.ctx.Err(); err != nil {
			return err
		}
		if err := x.meta(d.name, d); err != nil {
			return x.fail(d, err)
		}
	}
	return nil
}

// untar extracts a tar stream into x. A sparse file's holes are never
// read or written: they cost nothing whatever their size.
func untar(r io.Reader, x *extractor) error {
	tr := tarstream.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return x.finish()
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		e := &entry{
			name: h.Name, perm: uint32(h.Mode) & 0o7777, uid: h.Uid, gid: h.Gid,
			mtime: h.ModTime, atime: h.AccessTime, link: h.Linkname,
			major: uint32(h.Devmajor), minor: uint32(h.Devminor),
		}
		for k, v := range h.PAXRecords {
			if a, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				if e.xattrs == nil {
					e.xattrs = map[string]string{}
				}
				e.xattrs[a] = v
			}
		}
		switch h.Typeflag {
		case tarstream.TypeReg:
			e.kind, e.size, e.frags = 'f', h.Size, h.Fragments()
		case tarstream.TypeDir:
			e.kind = 'd'
		case tarstream.TypeSymlink:
			e.kind = 'l'
		case tarstream.TypeLink:
			e.kind = 'h'
		case tarstream.TypeChar:
			e.kind = 'c'
		case tarstream.TypeBlock:
			e.kind = 'b'
		case tarstream.TypeFifo:
			e.kind = 'p'
		default:
			continue
		}
		if err := x.add(e, tr); err != nil {
			return err
		}
	}
}

// uncpio extracts a cpio stream (newc, crc, odc or old binary) into x.
func uncpio(r io.Reader, x *extractor) error {
	cr := cpio.NewReader(r)
	for {
		h, err := cr.Next()
		if err == io.EOF {
			return x.finish()
		}
		if err != nil {
			return err
		}
		e := &entry{
			name: h.Name, perm: h.Mode & 0o7777, uid: h.UID, gid: h.GID,
			mtime: h.ModTime, link: h.Linkname, size: h.Size,
			major: h.DevMajor, minor: h.DevMinor,
		}
		switch h.Mode & cpio.TypeMask {
		case cpio.TypeReg:
			e.kind, e.frags = 'f', dense(h.Size)
			if h.Nlink > 1 {
				e.inoKey = fmt.Sprintf("%d/%d", h.Dev, h.Ino)
			}
		case cpio.TypeDir:
			e.kind = 'd'
		case cpio.TypeLink:
			e.kind = 'l'
		case cpio.TypeChar:
			e.kind = 'c'
		case cpio.TypeBlock:
			e.kind = 'b'
		case cpio.TypeFifo:
			e.kind = 'p'
		default:
			continue
		}
		if err := x.add(e, cr); err != nil {
			return err
		}
	}
}
