package initramfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/herd-cluster/herd/blockdev/cpio"
)

// Errors returned by the cpio reader and the archive builder.
var (
	// ErrBadCpio means the bytes are not a well-formed newc archive.
	ErrBadCpio = errors.New("initramfs: malformed newc cpio archive")
	// ErrBadEntry means an entry cannot be stored (bad name or type).
	ErrBadEntry = errors.New("initramfs: bad archive entry")
)

// Entry is one file in a newc archive. Times, owners and inode numbers
// are not part of it: the writer fixes them so that the same entries
// always give the same bytes.
type Entry struct {
	// Name is the path inside the archive, without a leading slash.
	Name string
	// Mode holds the type bits (fs.ModeDir, fs.ModeSymlink,
	// fs.ModeDevice|fs.ModeCharDevice) and the permission bits.
	Mode fs.FileMode
	// Data is the content of a regular file or the target of a symlink.
	Data []byte
	// Major and Minor are the device numbers of a device node.
	Major, Minor uint32
}

const (
	newcMagic   = "070701"
	trailerName = "TRAILER!!!"

	sIFMT  = 0o170000
	sIFDIR = 0o040000
	sIFREG = 0o100000
	sIFLNK = 0o120000
	sIFCHR = 0o020000
	sIFBLK = 0o060000
)

func unixMode(m fs.FileMode) (uint32, error) {
	perm := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		perm |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		perm |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		perm |= 0o1000
	}
	switch {
	case m.IsDir():
		return sIFDIR | perm, nil
	case m&fs.ModeSymlink != 0:
		return sIFLNK | perm, nil
	case m&fs.ModeCharDevice != 0:
		return sIFCHR | perm, nil
	case m&fs.ModeDevice != 0:
		return sIFBLK | perm, nil
	case m.IsRegular():
		return sIFREG | perm, nil
	}
	return 0, fmt.Errorf("%w: unsupported file type %v", ErrBadEntry, m.Type())
}

func fileMode(u uint32) (fs.FileMode, error) {
	m := fs.FileMode(u & 0o777)
	if u&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if u&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if u&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	switch u & sIFMT {
	case sIFDIR:
		m |= fs.ModeDir
	case sIFREG:
	case sIFLNK:
		m |= fs.ModeSymlink
	case sIFCHR:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case sIFBLK:
		m |= fs.ModeDevice
	default:
		return 0, fmt.Errorf("%w: unsupported file type %#o", ErrBadCpio, u&sIFMT)
	}
	return m, nil
}

// cleanName checks an archive path and returns it without a leading "/".
func cleanName(name string) (string, error) {
	n := strings.TrimPrefix(name, "/")
	if n == "" || n != path.Clean(n) || n == ".." || strings.HasPrefix(n, "../") || strings.ContainsRune(n, 0) {
		return "", fmt.Errorf("%w: name %q", ErrBadEntry, name)
	}
	return n, nil
}

// WriteNewc writes entries as a newc ("070701") cpio archive to w, in
// the order given, with every mtime, uid and gid 0 and inode numbers
// counted from 1, followed by the trailer. Everything is checked before
// the first byte is written, so a bad entry leaves w untouched.
func WriteNewc(w io.Writer, entries []Entry) error {
	var buf bytes.Buffer
	for i, e := range entries {
		name, err := cleanName(e.Name)
		if err != nil {
			return err
		}
		mode, err := unixMode(e.Mode)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		var data []byte
		if mode&sIFMT == sIFREG || mode&sIFMT == sIFLNK {
			data = e.Data
		}
		var rmaj, rmin uint32
		if mode&sIFMT == sIFCHR || mode&sIFMT == sIFBLK {
			rmaj, rmin = e.Major, e.Minor
		}
		nlink := uint32(1)
		if mode&sIFMT == sIFDIR {
			nlink = 2
		}
		writeHeader(&buf, uint32(i+1), mode, nlink, uint32(len(data)), rmaj, rmin, name)
		buf.Write(data)
		pad(&buf)
	}
	writeHeader(&buf, 0, 0, 1, 0, 0, 0, trailerName)
	_, err := w.Write(buf.Bytes())
	return err
}

func writeHeader(b *bytes.Buffer, ino, mode, nlink, size, rmaj, rmin uint32, name string) {
	fmt.Fprintf(b, "%s%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		newcMagic, ino, mode, 0, 0, nlink, 0, size, 0, 0, rmaj, rmin, len(name)+1, 0)
	b.WriteString(name)
	b.WriteByte(0)
	pad(b)
}

func pad(b *bytes.Buffer) {
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
}

// ReadNewc parses a newc cpio archive up to its trailer and returns its
// entries in archive order, with blockdev/cpio's reader (the one cpio
// reader of herd). It accepts only what WriteNewc can produce (newc "070701"
// headers, data only on regular files and symlinks); an error names the
// entry index and, from the reader, the byte offset where parsing stopped.
func ReadNewc(r io.Reader) ([]Entry, error) {
	cr := cpio.NewReader(r)
	var out []Entry
	for i := 0; ; i++ {
		fail := func(err error) ([]Entry, error) {
			return nil, fmt.Errorf("%w: entry %d: %v", ErrBadCpio, i, err)
		}
		h, err := cr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return fail(err)
		}
		if h.Format != cpio.FormatNewc {
			return fail(fmt.Errorf("at byte %d: a %v header, not newc", h.Offset, h.Format))
		}
		fm, err := fileMode(h.Mode)
		if err != nil {
			return fail(fmt.Errorf("at byte %d: %v", h.Offset, err))
		}
		var data []byte
		switch {
		case fm&fs.ModeSymlink != 0:
			data = []byte(h.Linkname)
		case h.Size > 0 && !fm.IsRegular():
			return fail(fmt.Errorf("at byte %d: %s: data on a %v", h.Offset, h.Name, fm.Type()))
		case h.Size > 1<<31:
			return fail(fmt.Errorf("at byte %d: %s: size %d out of range", h.Offset, h.Name, h.Size))
		case h.Size > 0:
			// Read as it comes: a declared size is no reason to
			// allocate it before the bytes are there.
			data, err = io.ReadAll(io.LimitReader(cr, h.Size))
			if err == nil && int64(len(data)) != h.Size {
				err = io.ErrUnexpectedEOF
			}
			if err != nil {
				return fail(fmt.Errorf("at byte %d: %s: %v", h.Offset, h.Name, err))
			}
		}
		e := Entry{Name: h.Name, Mode: fm, Data: data}
		if fm&fs.ModeDevice != 0 {
			e.Major, e.Minor = h.DevMajor, h.DevMinor
		}
		out = append(out, e)
	}
}

// Tree collects entries by path and produces them sorted, with every
// missing parent directory added (mode 0755). The zero value is ready to
// use; a Tree is not safe for concurrent use.
type Tree struct {
	m map[string]Entry
}

// Add stores e, replacing an earlier entry with the same name.
func (t *Tree) Add(e Entry) error {
	n, err := cleanName(e.Name)
	if err != nil {
		return err
	}
	if _, err := unixMode(e.Mode); err != nil {
		return fmt.Errorf("%s: %w", n, err)
	}
	if t.m == nil {
		t.m = map[string]Entry{}
	}
	e.Name = n
	t.m[n] = e
	for d := path.Dir(n); d != "."; d = path.Dir(d) {
		if _, ok := t.m[d]; !ok {
			t.m[d] = Entry{Name: d, Mode: fs.ModeDir | 0o755}
		}
	}
	return nil
}

// File adds a regular file.
func (t *Tree) File(name string, perm fs.FileMode, data []byte) error {
	return t.Add(Entry{Name: name, Mode: perm.Perm(), Data: data})
}

// Symlink adds a symbolic link name pointing to target.
func (t *Tree) Symlink(name, target string) error {
	return t.Add(Entry{Name: name, Mode: fs.ModeSymlink | 0o777, Data: []byte(target)})
}

// Dir adds a directory.
func (t *Tree) Dir(name string, perm fs.FileMode) error {
	return t.Add(Entry{Name: name, Mode: fs.ModeDir | perm.Perm()})
}

// CharDev adds a character device node.
func (t *Tree) CharDev(name string, perm fs.FileMode, major, minor uint32) error {
	return t.Add(Entry{Name: name, Mode: fs.ModeDevice | fs.ModeCharDevice | perm.Perm(), Major: major, Minor: minor})
}

// Entries returns the entries sorted by name, so a directory always
// comes before what it holds.
func (t *Tree) Entries() []Entry {
	out := make([]Entry, 0, len(t.m))
	for _, e := range t.m {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
