package blockdev

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-cluster/herd/blockdev/tarstream"
	"github.com/herd-cluster/herd/internal/tartest"
	"github.com/klauspost/compress/zstd"
)

// The budget of one fuzz input: unpacking or decompressing it may take at
// most fuzzTime and put at most fuzzBytes on disk (or, decompressing,
// yield at most fuzzBytes past the ratio bound). More is a finding: a
// stall or a balloon. (The race detector, which make test runs the seeds
// under, slows everything about tenfold: so does the time budget.)
const (
	fuzzTime  = time.Second * raceSlowdown
	fuzzBytes = 16 << 20
)

// fuzzExtract unpacks b with fn under base/root and fails if anything
// appears in base outside root, if it takes longer than fuzzTime or if it
// allocates more than fuzzBytes. Inputs of even length are unpacked with
// the special option (device nodes, owners), odd ones without.
func fuzzExtract(t *testing.T, b []byte, fn func(r io.Reader, x *extractor) error) {
	base := t.TempDir()
	dir := filepath.Join(base, "root")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	// A stall is cut off (every loop honours ctx) and reported below.
	ctx, cancel := context.WithTimeout(context.Background(), 5*fuzzTime)
	defer cancel()
	x := newExtractor(ctx, root, len(b)%2 == 0)
	defer x.close()
	x.owners = false
	start := time.Now()
	_ = fn(bytes.NewReader(b), x)
	if d := time.Since(start); d > fuzzTime {
		t.Fatalf("unpacking a %d-byte archive took %s (budget %s)", len(b), d, fuzzTime)
	}
	ents, err := os.ReadDir(base)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != "root" {
		t.Fatalf("extraction escaped: %v", ents)
	}
	var used int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if fi, err := os.Lstat(p); err == nil {
			used += fi.Sys().(*syscall.Stat_t).Blocks * 512
		}
		return nil
	})
	if used > fuzzBytes {
		t.Fatalf("a %d-byte archive allocated %d bytes (budget %d)", len(b), used, fuzzBytes)
	}
}

func tarSeed(hs ...*tar.Header) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range hs {
		tw.WriteHeader(h)
		if h.Size > 0 {
			tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
		}
	}
	tw.Close()
	return b.Bytes()
}

// sparseSeeds are sparse entries declaring 1 PiB (and one a 256 GiB
// lastlog) in every sparse format, then a file after them.
func sparseSeeds() [][]byte {
	frags := []tarstream.Fragment{{Off: 1 << 30, Len: 3}, {Off: 1<<50 - 10, Len: 10}}
	after := append(tartest.File("after", []byte("x"), 0o644), tartest.End()...)
	return [][]byte{
		append(tartest.SparsePAX10("big", 1<<50, frags), after...),
		append(tartest.SparsePAX01("big", 1<<50, frags), after...),
		append(tartest.SparseGNU("big", 1<<50, frags), after...),
		append(tartest.SparsePAX10("lastlog", 256<<30, []tarstream.Fragment{{Off: 0, Len: 292}}), after...),
	}
}

func FuzzUntar(f *testing.F) {
	f.Add(tarSeed(&tar.Header{Name: "a/", Typeflag: tar.TypeDir, Mode: 0o755},
		&tar.Header{Name: "a/b", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3},
		&tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "a/b"},
		&tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "a/b"},
		&tar.Header{Name: "x", Typeflag: tar.TypeReg, Mode: 0o600, Size: 1,
			PAXRecords: map[string]string{"SCHILY.xattr.user.k": "v"}}))
	f.Add(tarSeed(&tar.Header{Name: "up", Typeflag: tar.TypeSymlink, Linkname: ".."},
		&tar.Header{Name: "up/evil", Typeflag: tar.TypeReg, Size: 1}))
	f.Add(tarSeed(&tar.Header{Name: "../evil", Typeflag: tar.TypeReg, Size: 1}))
	f.Add(tarSeed(&tar.Header{Name: "dev", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3, Mode: 0o666},
		&tar.Header{Name: "suid", Typeflag: tar.TypeReg, Mode: 0o4755, Size: 1, Uid: 1234},
		&tar.Header{Name: "fifo", Typeflag: tar.TypeFifo, Mode: 0o644}))
	// A dense entry declaring 1 TiB whose data never comes.
	f.Add(append(tartest.Block("huge", '0', 1<<40, 0o644, false), tartest.End()...))
	for _, s := range sparseSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fuzzExtract(t, b, untar)
	})
}

func FuzzUncpio(f *testing.F) {
	for _, p := range []string{"cpio/testdata/newc.cpio", "cpio/testdata/odc.cpio", "cpio/testdata/bin.cpio"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fuzzExtract(t, b, uncpio)
	})
}

// gzipOf compresses b; members > 1 concatenates that many copies (a
// multi-member stream, which gzip readers read as one).
func gzipOf(b []byte, members int) []byte {
	var z bytes.Buffer
	w, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
	w.Write(b)
	w.Close()
	return bytes.Repeat(z.Bytes(), members)
}

func zstdOf(b []byte) []byte {
	e, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
	defer e.Close()
	return e.EncodeAll(b, nil)
}

// zBomb returns a .Z stream (16-bit codes, no block mode) of zeros: each
// code names the string before it plus one zero, so n codes yield about
// n²/2 bytes (up to 65280 a code once the table is full) from 2n bytes.
func zBomb(n int) []byte {
	out := []byte{0x1f, 0x9d, 16}
	nBits, maxCode, freeEnt := 9, 511, 256
	var group []int
	flush := func(full bool) {
		k := (len(group)*nBits + 7) / 8
		if full {
			k = nBits // the reader took a whole group at this width
		}
		buf := make([]byte, nBits)
		for i, c := range group {
			for j := 0; j < nBits; j++ {
				if c>>j&1 == 1 {
					pos := i*nBits + j
					buf[pos/8] |= 1 << (pos % 8)
				}
			}
		}
		out = append(out, buf[:k]...)
		group = group[:0]
	}
	for i := 0; i < n; i++ {
		code := 0
		if i > 0 {
			if freeEnt > maxCode && nBits < 16 {
				if len(group) > 0 {
					flush(true)
				}
				nBits++
				maxCode = 1<<nBits - 1
				if nBits == 16 {
					maxCode = 1 << 16
				}
			}
			code = min(freeEnt, 1<<16-1)
			if freeEnt < 1<<16 {
				freeEnt++
			}
		}
		group = append(group, code)
		if len(group) == 8 {
			flush(true)
		}
	}
	if len(group) > 0 {
		flush(false)
	}
	return out
}

// zstdHugeWindow is a zstd frame declaring a 2 TiB window, with one raw
// byte.
var zstdHugeWindow = []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0xf8, 0x09, 0x00, 0x00, 'x'}

// decompressBudget decompresses b in format c under the cook bound with
// no free space and a 1 MiB floor, and returns the bytes it yielded.
func decompressBudget(ctx context.Context, b []byte, c Compression) (int64, error) {
	in := &countReader{r: ctxReader{ctx, bytes.NewReader(b)}}
	r, release, err := Decompress(in, c)
	if err != nil {
		return 0, err
	}
	defer release()
	bound := &outputBound{r: ctxReader{ctx, r}, in: in, ratio: CookRatio, floor: 1 << 20}
	return io.Copy(io.Discard, bound)
}

// FuzzDecompress: whatever the input, decompressing it yields no more
// than the bound (CookRatio × its size, past a 1 MiB floor) plus one read,
// within fuzzTime.
func FuzzDecompress(f *testing.F) {
	f.Add(uint8(0), gzipOf(make([]byte, 1<<20), 64))            // gzip bomb: 64 MiB of zeros
	f.Add(uint8(0), gzipOf(gzipOf(make([]byte, 64<<20), 1), 1)) // nested: decompressed once
	f.Add(uint8(1), zstdOf(make([]byte, 64<<20)))               // zstd bomb
	f.Add(uint8(1), zstdHugeWindow)
	f.Add(uint8(2), zBomb(12000)) // .Z bomb: ~72 MB from ~18 KB
	f.Fuzz(func(t *testing.T, c uint8, b []byte) {
		kind := []Compression{Gzip, Zstd, UnixZ}[int(c)%3]
		ctx, cancel := context.WithTimeout(context.Background(), 5*fuzzTime)
		defer cancel()
		start := time.Now()
		n, _ := decompressBudget(ctx, b, kind)
		if d := time.Since(start); d > fuzzTime {
			t.Fatalf("decompressing %d bytes of %s took %s (budget %s)", len(b), kind, d, fuzzTime)
		}
		if lim := max(CookRatio*int64(len(b)), 1<<20) + fuzzBytes; n > lim {
			t.Fatalf("%d bytes of %s yielded %d (bound %d)", len(b), kind, n, lim)
		}
	})
}

func FuzzSafeName(f *testing.F) {
	for _, s := range []string{"a/b", "./a", "../a", "/a", "a/../b", ".", "", "a//b/./c", "..a/b..", "a\x00b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := SafeName(s)
		if err != nil {
			return
		}
		if strings.HasPrefix(n, "/") || n == ".." || strings.HasPrefix(n, "../") || strings.Contains(n, "/../") || strings.HasSuffix(n, "/..") {
			t.Fatalf("SafeName(%q) = %q escapes", s, n)
		}
		if filepath.Clean("/x/"+n) != "/x" && !strings.HasPrefix(filepath.Clean("/x/"+n), "/x/") {
			t.Fatalf("SafeName(%q) = %q leaves the directory", s, n)
		}
	})
}

func FuzzParseMountinfo(f *testing.F) {
	f.Add("36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n" +
		"25 1 7:3 / /tmp/a\\040b rw shared:1 - ext4 /dev/loop3 rw\n")
	f.Add("1 2 x:y / / - - -\n")
	f.Fuzz(func(t *testing.T, s string) {
		ms, err := ParseMountinfo(strings.NewReader(s))
		if err == nil && len(ms) > strings.Count(s, "\n")+1 {
			t.Fatalf("%d mounts from %d lines", len(ms), strings.Count(s, "\n")+1)
		}
	})
}

func TestParseMountinfo(t *testing.T) {
	ms, err := ParseMountinfo(strings.NewReader(
		"36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n" +
			"25 1 7:3 / /tmp/a\\040b rw shared:1 - ext4 /dev/loop3 rw\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Mount{
		{ID: 36, Parent: 35, Major: 98, Minor: 0, Root: "/mnt1", Point: "/mnt2", Options: "rw,noatime", FSType: "ext3", Source: "/dev/root"},
		{ID: 25, Parent: 1, Major: 7, Minor: 3, Root: "/", Point: "/tmp/a b", Options: "rw", Shared: true, FSType: "ext4", Source: "/dev/loop3"},
	}
	if len(ms) != 2 || ms[0] != want[0] || ms[1] != want[1] {
		t.Fatalf("got %+v, want %+v", ms, want)
	}
	if ms[0].ReadOnly() || !(Mount{Options: "ro,relatime"}).ReadOnly() {
		t.Fatal("ReadOnly wrong")
	}
	_, err = ParseMountinfo(strings.NewReader("ok line missing fields\n"))
	if err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("want a line-1 error, got %v", err)
	}
}
