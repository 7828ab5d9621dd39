package filelevel

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zeebo/blake3"
	"golang.org/x/sys/unix"

	"github.com/herd-cluster/herd/blockdev"
)

// makeGolden builds a small golden tree under dir and returns whether
// it could set a user xattr there (tmpfs before Linux 6.6 cannot).
func makeGolden(t *testing.T, dir string) (xattrs bool) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		require.NoError(t, err)
	}
	for _, d := range []string{"etc/herd", "tmp/sub", "var/cache/apt", "var/log", "home/u/.cache"} {
		must(os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	must(os.Chmod(filepath.Join(dir, "tmp"), os.ModeSticky|0o777))
	must(os.WriteFile(filepath.Join(dir, "etc/hostname"), []byte("golden\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "etc/herd/secret"), []byte("k"), 0o600))
	must(os.WriteFile(filepath.Join(dir, "tmp/sub/scratch"), []byte("not sent"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "var/cache/apt/a.deb"), []byte("deb"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "var/cache/apt/keep.txt"), []byte("kept"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "var/log/syslog"), bytes.Repeat([]byte("log line\n"), 5000), 0o640))
	must(os.WriteFile(filepath.Join(dir, "home/u/.cache/x"), []byte("x"), 0o644))
	big := make([]byte, 3<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	must(os.WriteFile(filepath.Join(dir, "etc/big.bin"), big, 0o644))
	must(os.Link(filepath.Join(dir, "etc/big.bin"), filepath.Join(dir, "etc/big.link")))
	must(os.Symlink("../etc/hostname", filepath.Join(dir, "var/hostname-link")))
	must(os.Symlink("/nonexistent/abs", filepath.Join(dir, "etc/dangling")))
	must(syscall.Mkfifo(filepath.Join(dir, "var/fifo"), 0o620))
	must(os.Chown(filepath.Join(dir, "etc/herd/secret"), 1234, 5678))
	must(os.Chown(filepath.Join(dir, "var/hostname-link"), 1234, 5678)) // follows: chown the target
	must(unix.Lchown(filepath.Join(dir, "var/hostname-link"), 4321, 8765))
	err := unix.Lsetxattr(filepath.Join(dir, "etc/hostname"), "user.herd", []byte("v\x00bin"), 0)
	old := time.Date(2001, 2, 3, 4, 5, 6, 789, time.UTC)
	must(os.Chtimes(filepath.Join(dir, "etc/hostname"), old, old))
	must(os.Chtimes(filepath.Join(dir, "etc/herd"), old, old))
	return err == nil
}

// treeList describes every entry under dir, one line each, sorted:
// path, type, mode, owner, size, content digest or link target, mtime
// of files, and user xattrs; skip(path) leaves entries out.
func treeList(t *testing.T, dir string, skip func(string) bool) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = "/" + filepath.ToSlash(rel)
		if rel == "/." {
			rel = "/"
		}
		if skip != nil && skip(rel) {
			if fi.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		st := fi.Sys().(*syscall.Stat_t)
		l := fmt.Sprintf("%s %s %o %d:%d", rel, fi.Mode().Type(), st.Mode&0o7777, st.Uid, st.Gid)
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h := sha256.Sum256(b)
			l += fmt.Sprintf(" %d %s %d links=%d", fi.Size(), hex.EncodeToString(h[:8]), fi.ModTime().UnixNano(), st.Nlink)
		case fi.Mode()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			l += " -> " + target
		}
		if v, err := getXattr(p, "user.herd"); err == nil {
			l += fmt.Sprintf(" xattr=%q", v)
		}
		out = append(out, l)
		return nil
	})
	require.NoError(t, err)
	sort.Strings(out)
	return out
}

// unpack writes a tar stream into dir through blockdev's cook sink, in
// chunks, as a node does.
func unpack(t *testing.T, stream []byte, dir string) {
	t.Helper()
	s, err := blockdev.OpenCookSink(context.Background(), "fs.tar", dir, int64(len(stream)), blockdev.SinkOptions{Special: true})
	require.NoError(t, err)
	defer s.Close()
	for off := 0; off < len(stream); off += 100000 {
		end := min(off+100000, len(stream))
		_, err := s.WriteAt(stream[off:end], int64(off))
		require.NoError(t, err)
	}
	require.NoError(t, s.Sync())
}

func TestWriteTarRoundTrip(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to set owners on the golden tree and restore them: skipping")
	}
	golden := t.TempDir()
	hasXattr := makeGolden(t, golden)
	opts := TarOptions{Mount: "/", Excludes: []string{"/tmp", "var/cache/apt/*.deb", "/home/*/.cache"}}
	var buf bytes.Buffer
	st, err := WriteTar(context.Background(), &buf, golden, opts)
	require.NoError(t, err)
	assert.Equal(t, TarStats{Files: 5, Dirs: 11, Links: 1, Symlinks: 2, Special: 1, Bytes: 3<<20 + 7 + 1 + 4 + 45000, Excluded: 3}, st)

	var again bytes.Buffer
	_, err = WriteTar(context.Background(), &again, golden, opts)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(buf.Bytes(), again.Bytes()), "the same tree gives the same stream")

	// Entry kinds as a tar reader sees them.
	tr := tar.NewReader(bytes.NewReader(buf.Bytes()))
	kinds := map[string]byte{}
	var first string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		if first == "" {
			first = h.Name
		}
		kinds[h.Name] = h.Typeflag
		if h.Name == "etc/big.link" {
			assert.Equal(t, "etc/big.bin", h.Linkname)
		}
		if h.Name == "etc/hostname" && hasXattr {
			assert.Equal(t, "v\x00bin", h.PAXRecords["SCHILY.xattr.user.herd"])
		}
	}
	assert.Equal(t, "./", first)
	assert.Equal(t, byte(tar.TypeLink), kinds["etc/big.link"])
	assert.Equal(t, byte(tar.TypeFifo), kinds["var/fifo"])
	assert.Equal(t, byte(tar.TypeDir), kinds["tmp/"], "an excluded directory is sent empty")
	assert.NotContains(t, kinds, "tmp/sub/")
	assert.NotContains(t, kinds, "var/cache/apt/a.deb")
	assert.Contains(t, kinds, "var/cache/apt/keep.txt")
	assert.Contains(t, kinds, "home/u/.cache/")
	assert.NotContains(t, kinds, "home/u/.cache/x")

	clone := t.TempDir()
	unpack(t, buf.Bytes(), clone)
	excluded := func(p string) bool {
		return strings.HasPrefix(p, "/tmp/") || p == "/var/cache/apt/a.deb" || strings.HasPrefix(p, "/home/u/.cache/")
	}
	want := treeList(t, golden, excluded)
	got := treeList(t, clone, nil)
	// Directory times are not compared (treeList has none); everything else is.
	assert.Equal(t, want, got)
	fi, err := os.Stat(filepath.Join(clone, "tmp"))
	require.NoError(t, err)
	assert.Equal(t, os.ModeSticky|0o777, fi.Mode()&(os.ModeSticky|os.ModePerm), "/tmp keeps its sticky bit")
}

func TestWriteTarSkipsOtherFilesystems(t *testing.T) {
	golden := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(golden, "var/lib"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(golden, "var/lib/x"), []byte("x"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(golden, "a"), []byte("a"), 0o644))

	// /var travels in its own stream: the root stream sends it empty.
	var buf bytes.Buffer
	st, err := WriteTar(context.Background(), &buf, golden, TarOptions{Skip: []string{"/var"}})
	require.NoError(t, err)
	assert.Equal(t, 1, st.Skipped)
	names := tarNames(t, buf.Bytes())
	assert.Equal(t, []string{"./", "a", "var/"}, names)

	// The /var stream is relative to /var; excludes still name golden paths.
	buf.Reset()
	_, err = WriteTar(context.Background(), &buf, filepath.Join(golden, "var"), TarOptions{Mount: "/var", Excludes: []string{"/var/lib/x"}})
	require.NoError(t, err)
	assert.Equal(t, []string{"./", "lib/"}, tarNames(t, buf.Bytes()))

	_, err = WriteTar(context.Background(), io.Discard, filepath.Join(golden, "a"), TarOptions{})
	require.Error(t, err, "not a directory")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = WriteTar(ctx, io.Discard, golden, TarOptions{})
	require.ErrorIs(t, err, context.Canceled)
}

func tarNames(t *testing.T, b []byte) []string {
	t.Helper()
	var names []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		require.NoError(t, err)
		names = append(names, h.Name)
	}
}

func TestTarSourceStreamsAndStops(t *testing.T) {
	golden := t.TempDir()
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	require.NoError(t, os.WriteFile(filepath.Join(golden, "big"), big, 0o644))

	var whole bytes.Buffer
	_, err := WriteTar(context.Background(), &whole, golden, TarOptions{})
	require.NoError(t, err)

	s := NewTarSource(context.Background(), golden, TarOptions{})
	var got bytes.Buffer
	p := make([]byte, 1<<20)
	for {
		off, n, err := s.ReadChunk(p)
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		require.Equal(t, int64(got.Len()), off, "offsets follow each other")
		got.Write(p[:n])
	}
	require.NoError(t, s.Close())
	assert.True(t, bytes.Equal(whole.Bytes(), got.Bytes()), "the source yields WriteTar's stream")
	assert.Equal(t, int64(len(big)), s.Stats().Bytes)

	// Closing early stops the producer without an error or a leak.
	s = NewTarSource(context.Background(), golden, TarOptions{})
	_, _, err = s.ReadChunk(p[:1000])
	require.NoError(t, err)
	require.NoError(t, s.Close())
}

// A file with holes travels as a PAX sparse entry: only its data runs
// are in the stream, and the node gets the same contents with holes.
func TestWriteTarSparse(t *testing.T) {
	golden := t.TempDir()
	p := filepath.Join(golden, "lastlog")
	f, err := os.Create(p)
	require.NoError(t, err)
	const size = 64 << 20
	data := bytes.Repeat([]byte("herd"), 4096) // 16 KiB
	for _, off := range []int64{0, 10 << 20, 40<<20 + 123} {
		_, err := f.WriteAt(data, off)
		require.NoError(t, err)
	}
	require.NoError(t, f.Truncate(size)) // ends in a hole
	require.NoError(t, f.Close())
	var st unix.Stat_t
	require.NoError(t, unix.Stat(p, &st))
	if st.Blocks*512 >= size/2 {
		t.Skip("the temporary directory's filesystem does not keep holes: skipping")
	}
	require.NoError(t, os.WriteFile(filepath.Join(golden, "z-after"), []byte("next entry"), 0o600))
	require.NoError(t, unix.Lsetxattr(p, "user.k", []byte("v"), 0)) // may fail on tmpfs: then no xattr travels
	_, xerr := getXattr(p, "user.k")

	var buf bytes.Buffer
	ts, err := WriteTar(context.Background(), &buf, golden, TarOptions{})
	require.NoError(t, err)
	assert.Less(t, buf.Len(), 1<<20, "holes do not travel")
	assert.Greater(t, ts.SparseHoles, int64(60<<20))
	assert.Equal(t, int64(size)-ts.SparseHoles+int64(len("next entry")), ts.Bytes)

	// Go's tar reader sees the whole file.
	tr := tar.NewReader(bytes.NewReader(buf.Bytes()))
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		names = append(names, h.Name)
		if h.Name == "lastlog" {
			assert.Equal(t, int64(size), h.Size)
			got, err := io.ReadAll(tr)
			require.NoError(t, err)
			want, err := os.ReadFile(p)
			require.NoError(t, err)
			assert.True(t, bytes.Equal(want, got), "contents through the sparse entry")
			if xerr == nil {
				assert.Equal(t, "v", h.PAXRecords["SCHILY.xattr.user.k"])
			}
		}
	}
	assert.Equal(t, []string{"./", "lastlog", "z-after"}, names)

	clone := t.TempDir()
	unpack(t, buf.Bytes(), clone)
	assert.Equal(t, treeList(t, golden, nil), treeList(t, clone, nil))
	var cst unix.Stat_t
	require.NoError(t, unix.Stat(filepath.Join(clone, "lastlog"), &cst))
	assert.Less(t, cst.Blocks*512, int64(size/2), "the clone keeps the holes")

	// GNU tar reads the same stream (cross-check against another reader).
	if _, err := exec.LookPath("tar"); err == nil {
		gnu := t.TempDir()
		cmd := exec.Command("tar", "-x", "-C", gnu)
		cmd.Stdin = bytes.NewReader(buf.Bytes())
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "GNU tar: %s", out)
		want, err := os.ReadFile(p)
		require.NoError(t, err)
		got, err := os.ReadFile(filepath.Join(gnu, "lastlog"))
		require.NoError(t, err)
		assert.True(t, bytes.Equal(want, got), "GNU tar extracts the same contents")
		assert.FileExists(t, filepath.Join(gnu, "z-after"))
	}
}

// A file that shrinks or grows between its listing and its reading (a
// live golden) keeps the stream valid: padded with zeros or cut, logged,
// counted, and its digest is of what was sent.
func TestWriteTarFileChangedWhileRead(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "log")
	for _, c := range []struct {
		content string
		listed  int64
		want    string
		log     string
	}{
		{"0123456789", 16, "0123456789\x00\x00\x00\x00\x00\x00", "shrank from 16 to 10 bytes"},
		{"0123456789abcdef", 10, "0123456789", "grew while read"},
	} {
		require.NoError(t, os.WriteFile(p, []byte(c.content), 0o644))
		var buf bytes.Buffer
		var logs []string
		var sums []FileSum
		st := &TarStats{}
		tw := tar.NewWriter(&buf)
		w := &tarWalker{ctx: context.Background(), tw: tw, out: &buf, st: st, buf: make([]byte, 4096),
			o: TarOptions{Logf: func(f string, a ...any) { logs = append(logs, fmt.Sprintf(f, a...)) }, Sums: func(fs FileSum) { sums = append(sums, fs) }}}
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: "log", Size: c.listed, Typeflag: tar.TypeReg, Mode: 0o644}))
		require.NoError(t, w.data(p, "log", c.listed))
		require.NoError(t, tw.Close())

		tr := tar.NewReader(&buf)
		_, err := tr.Next()
		require.NoError(t, err)
		got, err := io.ReadAll(tr)
		require.NoError(t, err)
		assert.Equal(t, c.want, string(got))
		assert.Equal(t, 1, st.Changed)
		require.Len(t, logs, 1)
		assert.Contains(t, logs[0], c.log)
		require.Len(t, sums, 1)
		assert.Equal(t, blake3.Sum256([]byte(c.want)), sums[0].Sum, "the digest is of what was sent")
	}
}
