package blockdev

import (
	"archive/tar"
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
	link     string // symlink target or hard-link source
	size     int64
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

// extractor writes entries under root, never outside it: names are
// checked by SafeName, and every path is resolved by os.Root, which refuses
// to follow a symlink out of the directory.
type extractor struct {
	root   *os.Root
	owners bool
	dirs   []*entry
	links  map[string]string // inoKey -> first name
}

func newExtractor(root *os.Root) *extractor {
	return &extractor{root: root, owners: os.Geteuid() == 0, links: map[string]string{}}
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
					if err := x.writeFile(first, data, os.O_WRONLY|os.O_TRUNC); err != nil {
						return x.fail(e, err)
					}
				}
				return x.fail2(e, x.meta(name, e))
			}
			x.links[e.inoKey] = name
		}
		if err := x.replace(name); err != nil {
			return x.fail(e, err)
		}
		if err := x.writeFile(name, data, os.O_WRONLY|os.O_CREATE|os.O_EXCL); err != nil {
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
		if err := x.replace(name); err != nil {
			return x.fail(e, err)
		}
		if err := x.root.Link(src, name); err != nil {
			return x.fail(e, err)
		}
		return nil // a hard link shares its source's metadata
	case 'c', 'b', 'p':
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

func (x *extractor) writeFile(name string, data io.Reader, flag int) error {
	// O_NONBLOCK: never block opening a FIFO an earlier entry put there.
	f, err := x.root.OpenFile(name, flag|unix.O_NONBLOCK|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file (%s)", name, fi.Mode().Type())
	}
	if err == nil && data != nil {
		err = copySparse(f, data)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// copySparse copies r to the start of f, seeking over 64 KiB blocks of
// zeros so they stay holes, and sets f's size to the bytes copied.
func copySparse(f *os.File, r io.Reader) error {
	buf := make([]byte, 64<<10)
	var off int64
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 && !allZero(buf[:n]) {
			if _, werr := f.WriteAt(buf[:n], off); werr != nil {
				return werr
			}
		}
		off += int64(n)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return err
		}
	}
	return f.Truncate(off)
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
			if err := unix.Fchmodat(dirfd, base, e.perm&0o7777, 0); err != nil {
				return fmt.Errorf("chmod %o: %w", e.perm&0o7777, err)
			}
		}
		if len(e.xattrs) > 0 {
			p := "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + base
			keys := make([]string, 0, len(e.xattrs))
			for k := range e.xattrs {
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
		if err := x.meta(d.name, d); err != nil {
			return x.fail(d, err)
		}
	}
	return nil
}

// untar extracts a tar stream into x.
func untar(r io.Reader, x *extractor) error {
	tr := tar.NewReader(r)
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
			mtime: h.ModTime, atime: h.AccessTime, link: h.Linkname, size: h.Size,
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
		case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
			e.kind = 'f'
		case tar.TypeDir:
			e.kind = 'd'
		case tar.TypeSymlink:
			e.kind = 'l'
		case tar.TypeLink:
			e.kind = 'h'
		case tar.TypeChar:
			e.kind = 'c'
		case tar.TypeBlock:
			e.kind = 'b'
		case tar.TypeFifo:
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
			e.kind = 'f'
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
