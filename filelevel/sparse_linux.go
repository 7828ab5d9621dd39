package filelevel

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/zeebo/blake3"
	"golang.org/x/sys/unix"
)

// extent is a run of data in a sparse file.
type extent struct{ off, n int64 }

// dataExtents returns the data runs of f (of the given size) with
// SEEK_DATA/SEEK_HOLE. A filesystem without hole support reports one run.
func dataExtents(f *os.File, size int64) ([]extent, error) {
	var ext []extent
	fd := int(f.Fd())
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole remains
		}
		if err != nil {
			return nil, err
		}
		if data >= size {
			break
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return nil, err
		}
		hole = min(hole, size)
		ext = append(ext, extent{data, hole - data})
		off = hole
	}
	return ext, nil
}

// sparseFile writes a regular file with holes as a PAX sparse 1.0 entry
// (the format GNU tar and Go's archive/tar read): only its data runs
// travel. h is the entry's header as for a plain file. It returns false
// (writing nothing) when the file has no hole worth skipping.
func (t *tarWalker) sparseFile(p, rel string, h *tar.Header) (bool, error) {
	f, err := openNoATime(p)
	if err != nil {
		return false, fmt.Errorf("open %s: %w", p, err)
	}
	defer f.Close()
	ext, err := dataExtents(f, h.Size)
	if err != nil {
		return false, nil // no SEEK_DATA here: send it whole
	}
	var data int64
	for _, e := range ext {
		data += e.n
	}
	if h.Size-data < 64<<10 {
		return false, nil
	}

	// The sparse map: count, then offset and length of each run, one
	// number a line, padded to a block. A file ending in a hole gets a
	// last empty run at its end so its size is kept.
	if len(ext) == 0 || ext[len(ext)-1].off+ext[len(ext)-1].n < h.Size {
		ext = append(ext, extent{h.Size, 0})
	}
	var m strings.Builder
	fmt.Fprintf(&m, "%d\n", len(ext))
	for _, e := range ext {
		fmt.Fprintf(&m, "%d\n%d\n", e.off, e.n)
	}
	sparseMap := padBlock([]byte(m.String()))

	recs := map[string]string{
		"path":                h.Name,
		"mtime":               paxTime(h.ModTime),
		"uid":                 strconv.Itoa(h.Uid),
		"gid":                 strconv.Itoa(h.Gid),
		"GNU.sparse.major":    "1",
		"GNU.sparse.minor":    "0",
		"GNU.sparse.name":     h.Name,
		"GNU.sparse.realsize": strconv.FormatInt(h.Size, 10),
	}
	for k, v := range h.PAXRecords {
		recs[k] = v
	}
	total := int64(len(sparseMap)) + data
	hdrSize := total
	if total >= 1<<33 { // more than the 11 octal digits of the header
		recs["size"] = strconv.FormatInt(total, 10)
		hdrSize = 0
	}
	base := path.Base(h.Name)
	if len(base) > 80 {
		base = base[:80]
	}
	pax := paxRecords(recs)
	if err := t.tw.Flush(); err != nil {
		return false, fmt.Errorf("tar: %w", err)
	}
	w := t.out
	if _, err := w.Write(ustarHeader("PaxHeaders.0/"+base, tar.TypeXHeader, 0o644, int64(len(pax)), h.ModTime.Unix())); err != nil {
		return false, err
	}
	if _, err := w.Write(padBlock(pax)); err != nil {
		return false, err
	}
	if _, err := w.Write(ustarHeader("GNUSparseFile.0/"+base, tar.TypeReg, h.Mode, hdrSize, h.ModTime.Unix())); err != nil {
		return false, err
	}
	if _, err := w.Write(sparseMap); err != nil {
		return false, err
	}
	var hsh *blake3.Hasher
	if t.o.Sums != nil {
		hsh = blake3.New()
	}
	var at int64 // logical offset hashed so far
	for _, e := range ext {
		var r io.Reader = io.NewSectionReader(f, e.off, e.n)
		if hsh != nil {
			hashZeros(hsh, e.off-at) // the hole before this run
			at = e.off + e.n
			r = io.TeeReader(r, hsh)
		}
		n, err := io.CopyBuffer(w, r, t.buf)
		if err != nil {
			return false, fmt.Errorf("read %s: %w", p, err)
		}
		if n < e.n {
			return false, fmt.Errorf("%w: %s lost data at %d while read", ErrChanged, p, e.off+n)
		}
	}
	if pad := data % 512; pad != 0 {
		if _, err := w.Write(make([]byte, 512-pad)); err != nil {
			return false, err
		}
	}
	t.st.Bytes += data
	t.st.SparseHoles += h.Size - data
	if hsh != nil {
		hashZeros(hsh, h.Size-at) // the final hole
	}
	t.sum(rel, h.Size, hsh)
	return true, nil
}

func openNoATime(p string) (*os.File, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NOATIME, 0)
	if errors.Is(err, unix.EPERM) { // O_NOATIME needs ownership or CAP_FOWNER
		f, err = os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	}
	return f, err
}

// padBlock pads b with zeros to a multiple of 512 bytes.
func padBlock(b []byte) []byte {
	if r := len(b) % 512; r != 0 {
		b = append(b, make([]byte, 512-r)...)
	}
	return b
}

// paxRecords encodes records as "LEN key=value\n" lines, sorted by key
// (LEN counts the whole line, itself included).
func paxRecords(recs map[string]string) []byte {
	keys := make([]string, 0, len(recs))
	for k := range recs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b []byte
	for _, k := range keys {
		body := " " + k + "=" + recs[k] + "\n"
		n := len(body) + 1
		for n != len(body)+len(strconv.Itoa(n)) {
			n = len(body) + len(strconv.Itoa(n))
		}
		b = append(b, strconv.Itoa(n)+body...)
	}
	return b
}

// paxTime formats t as PAX seconds with the nanoseconds.
func paxTime(t time.Time) string {
	ns := t.UnixNano()
	sec, frac := ns/1e9, ns%1e9
	if frac < 0 {
		sec, frac = sec-1, frac+1e9
	}
	if frac == 0 {
		return strconv.FormatInt(sec, 10)
	}
	return strings.TrimRight(fmt.Sprintf("%d.%09d", sec, frac), "0")
}

// ustarHeader encodes a USTAR header block. Owners and long names travel
// in the PAX records before it, so they are left out here.
func ustarHeader(name string, typ byte, mode, size, mtime int64) []byte {
	b := make([]byte, 512)
	copy(b[0:100], name)
	octal(b[100:108], mode&0o7777)
	octal(b[108:116], 0)
	octal(b[116:124], 0)
	octal(b[124:136], size)
	octal(b[136:148], max(mtime, 0))
	b[156] = typ
	copy(b[257:263], "ustar\x00")
	copy(b[263:265], "00")
	copy(b[148:156], "        ")
	var sum int64
	for _, c := range b {
		sum += int64(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

// octal writes v as a zero-padded octal number with a NUL in field f.
func octal(f []byte, v int64) {
	s := strconv.FormatInt(v, 8)
	for len(s) < len(f)-1 {
		s = "0" + s
	}
	copy(f, s+"\x00")
}
