package tarstream_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/herd-cluster/herd/blockdev/tarstream"
	"github.com/herd-cluster/herd/internal/tartest"
	"github.com/stretchr/testify/require"
)

func needTar(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("tar"); err != nil {
		t.Skip("GNU tar not installed (Debian package tar)")
	}
}

// entry is what both readers agree on for one member.
type entry struct {
	Name, Link string
	Type       byte
	Mode       int64
	UID, GID   int
	Size       int64
	MTime      int64
	Data       string
	Xattr      string
}

// expand reads the current entry of tr into its logical content.
func expand(t testing.TB, h *tarstream.Header, tr *tarstream.Reader) []byte {
	out := make([]byte, h.Size)
	for _, f := range h.Fragments() {
		_, err := io.ReadFull(tr, out[f.Off:f.Off+f.Len])
		require.NoError(t, err)
	}
	return out
}

func readOurs(t testing.TB, b []byte) []entry {
	var es []entry
	tr := tarstream.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return es
		}
		require.NoError(t, err)
		e := entry{Name: h.Name, Link: h.Linkname, Type: h.Typeflag, Mode: h.Mode, UID: h.Uid, GID: h.Gid,
			MTime: h.ModTime.Unix(), Xattr: h.PAXRecords["SCHILY.xattr.user.k"]}
		if h.Typeflag == tarstream.TypeReg {
			e.Size = h.Size
			e.Data = string(expand(t, h, tr))
		}
		es = append(es, e)
	}
}

func readStd(t testing.TB, b []byte) []entry {
	var es []entry
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return es
		}
		require.NoError(t, err)
		if h.Typeflag == tar.TypeGNUSparse {
			h.Typeflag = tar.TypeReg // tarstream says what the file is
		}
		e := entry{Name: h.Name, Link: h.Linkname, Type: h.Typeflag, Mode: h.Mode, UID: h.Uid, GID: h.Gid,
			MTime: h.ModTime.Unix(), Xattr: h.PAXRecords["SCHILY.xattr.user.k"]}
		if h.Typeflag == tar.TypeReg {
			e.Size = h.Size
			d, err := io.ReadAll(tr)
			require.NoError(t, err)
			e.Data = string(d)
		}
		es = append(es, e)
	}
}

// makeTree builds a small tree with a long name, links and a sparse file
// (holes at the start, middle and end).
func makeTree(t *testing.T) (dir string, sparse []byte) {
	dir = t.TempDir()
	must := func(err error) { t.Helper(); require.NoError(t, err) }
	long := filepath.Join(dir, "d", string(bytes.Repeat([]byte("n"), 120)), string(bytes.Repeat([]byte("m"), 110)))
	must(os.MkdirAll(filepath.Dir(long), 0o755))
	must(os.WriteFile(long, []byte("long name\n"), 0o640))
	must(os.WriteFile(filepath.Join(dir, "small"), []byte("hello\n"), 0o644))
	must(os.Symlink("small", filepath.Join(dir, "ln")))
	must(os.Link(filepath.Join(dir, "small"), filepath.Join(dir, "hard")))
	sparse = make([]byte, 8<<20)
	copy(sparse[1<<20:], bytes.Repeat([]byte("A"), 5000))
	copy(sparse[5<<20:], bytes.Repeat([]byte("B"), 70000))
	f, err := os.Create(filepath.Join(dir, "sparse"))
	must(err)
	must(f.Truncate(int64(len(sparse))))
	_, err = f.WriteAt(sparse[1<<20:1<<20+5000], 1<<20)
	must(err)
	_, err = f.WriteAt(sparse[5<<20:5<<20+70000], 5<<20)
	must(err)
	must(f.Close())
	return dir, sparse
}

// TestMatchesArchiveTar: on what GNU tar writes in every format, the
// reader sees what archive/tar sees, sparse files included (expanded).
func TestMatchesArchiveTar(t *testing.T) {
	needTar(t)
	dir, sparse := makeTree(t)
	for _, args := range [][]string{
		{"--format=gnu"}, {"--format=posix"}, {"--format=ustar"}, {"--format=v7"},
		{"--format=gnu", "--sparse"},
		{"--format=posix", "--sparse", "--sparse-version=0.0"},
		{"--format=posix", "--sparse", "--sparse-version=0.1"},
		{"--format=posix", "--sparse", "--sparse-version=1.0"},
	} {
		t.Run(args[len(args)-1], func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "a.tar")
			cmd := exec.Command("tar", append(append([]string{"-C", dir, "-cf", out}, args...), ".")...)
			b, err := cmd.CombinedOutput()
			if args[0] == "--format=v7" || args[0] == "--format=ustar" {
				// The long name does not fit these formats: tar warns and skips it.
				_ = err
			} else {
				require.NoError(t, err, "%s", b)
			}
			arc, err := os.ReadFile(out)
			require.NoError(t, err)
			ours, std := readOurs(t, arc), readStd(t, arc)
			require.Equal(t, std, ours)
			found := false
			for _, e := range ours {
				if e.Name == "./sparse" {
					found = true
					require.True(t, e.Data == string(sparse), "sparse content differs")
				}
			}
			require.True(t, found)
			if len(args) > 1 { // really stored sparse: a map, not 8 MiB of data
				tr := tarstream.NewReader(bytes.NewReader(arc))
				for {
					h, err := tr.Next()
					require.NoError(t, err)
					if h.Name == "./sparse" {
						require.NotNil(t, h.Sparse)
						require.Less(t, h.DataSize(), int64(1<<20))
						break
					}
				}
			}
		})
	}
}

// TestHugeSparseIsCheap: a 1 PiB sparse file in any sparse format is one
// header and a map; reading it costs nothing, whatever its size.
func TestHugeSparseIsCheap(t *testing.T) {
	frags := []tarstream.Fragment{{Off: 1 << 30, Len: 3}, {Off: 1<<50 - 10, Len: 10}}
	for name, ent := range map[string][]byte{
		"pax1.0": tartest.SparsePAX10("big", 1<<50, frags),
		"pax0.1": tartest.SparsePAX01("big", 1<<50, frags),
		"gnu":    tartest.SparseGNU("big", 1<<50, frags),
	} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			arc := append(append(ent, tartest.File("after", []byte("x"), 0o644)...), tartest.End()...)
			tr := tarstream.NewReader(bytes.NewReader(arc))
			h, err := tr.Next()
			require.NoError(t, err)
			require.Equal(t, "big", h.Name)
			require.Equal(t, int64(1<<50), h.Size)
			require.Equal(t, frags, h.Sparse)
			require.Equal(t, int64(13), h.DataSize())
			d, err := io.ReadAll(tr)
			require.NoError(t, err)
			require.Equal(t, "ddddddddddddd", string(d))
			h, err = tr.Next()
			require.NoError(t, err)
			require.Equal(t, "after", h.Name)
			_, err = tr.Next()
			require.Equal(t, io.EOF, err)
			require.Less(t, time.Since(start), 100*time.Millisecond)
		})
	}
}

func TestManyGNUExtensionBlocks(t *testing.T) {
	var frags []tarstream.Fragment
	for i := int64(0); i < 100; i++ {
		frags = append(frags, tarstream.Fragment{Off: i * 4096, Len: 1})
	}
	arc := append(tartest.SparseGNU("f", 1<<20, frags), tartest.End()...)
	tr := tarstream.NewReader(bytes.NewReader(arc))
	h, err := tr.Next()
	require.NoError(t, err)
	require.Equal(t, frags, h.Sparse)
	require.Equal(t, int64(1<<20), h.Size)
}

// TestBadSparseMaps: maps that overlap, run past the file, disagree with
// the data or are too long are refused before any data is read.
func TestBadSparseMaps(t *testing.T) {
	for name, arc := range map[string][]byte{
		"overlap":    tartest.SparsePAX10("f", 100, []tarstream.Fragment{{0, 10}, {5, 10}}),
		"past end":   tartest.SparsePAX01("f", 100, []tarstream.Fragment{{95, 10}}),
		"negative":   tartest.SparsePAX01("f", 100, []tarstream.Fragment{{-5, 1}}),
		"overflow":   tartest.SparsePAX01("f", 1<<62, []tarstream.Fragment{{1<<63 - 2, 5}}),
		"unordered":  tartest.SparseGNU("f", 100, []tarstream.Fragment{{50, 1}, {10, 1}}),
		"pax0 order": tartest.PAX("GNU.sparse.size", "10", "GNU.sparse.numbytes", "1"),
	} {
		t.Run(name, func(t *testing.T) {
			tr := tarstream.NewReader(bytes.NewReader(append(arc, tartest.End()...)))
			_, err := tr.Next()
			require.ErrorIs(t, err, tarstream.ErrHeader)
		})
	}
	// The data section holds less than the map says.
	arc := tartest.SparsePAX01("f", 100, []tarstream.Fragment{{0, 10}})
	b := tartest.Block("GNUSparseFile.0/f", '0', 3, 0o644, false)
	i := bytes.Index(arc, []byte("GNUSparseFile.0/f"))
	copy(arc[i:i+512], b)
	_, err := tarstream.NewReader(bytes.NewReader(arc)).Next()
	require.ErrorIs(t, err, tarstream.ErrHeader)

	// A 1.0 map declaring more fragments than allowed.
	big := tartest.PAX("GNU.sparse.major", "1", "GNU.sparse.minor", "0", "GNU.sparse.realsize", "10")
	big = append(big, tartest.File("f", []byte("999999999\n"), 0o644)...)
	_, err = tarstream.NewReader(bytes.NewReader(big)).Next()
	require.ErrorIs(t, err, tarstream.ErrHeader)
	require.Contains(t, err.Error(), "fragments")
}

func TestEndAndErrors(t *testing.T) {
	_, err := tarstream.NewReader(bytes.NewReader(nil)).Next()
	require.Equal(t, io.EOF, err, "an empty stream is an empty archive")
	_, err = tarstream.NewReader(bytes.NewReader(make([]byte, 512))).Next()
	require.Equal(t, io.EOF, err, "one zero block then the end")
	bad := tartest.File("f", []byte("x"), 0o644)
	bad[0] ^= 1 // checksum no longer matches
	_, err = tarstream.NewReader(bytes.NewReader(bad)).Next()
	require.ErrorIs(t, err, tarstream.ErrHeader)
	require.Contains(t, err.Error(), "offset 0")
	short := tartest.File("f", bytes.Repeat([]byte("x"), 2000), 0o644)[:1000]
	tr := tarstream.NewReader(bytes.NewReader(short))
	_, err = tr.Next()
	require.NoError(t, err)
	_, err = io.ReadAll(tr)
	require.True(t, errors.Is(err, io.ErrUnexpectedEOF))
	huge := tartest.PAX("path", string(bytes.Repeat([]byte("p"), 10)))
	copy(huge[124:136], "77777777777\x00") // an 8 GiB PAX header
	tartest.Sum(huge)
	_, err = tarstream.NewReader(bytes.NewReader(huge)).Next()
	require.ErrorIs(t, err, tarstream.ErrHeader)
}

// FuzzReader: no input panics or takes more than a second, and the data
// of an entry never exceeds what the input holds (holes are never read).
func FuzzReader(f *testing.F) {
	frags := []tarstream.Fragment{{Off: 1 << 30, Len: 3}, {Off: 1<<50 - 10, Len: 10}}
	f.Add(append(tartest.SparsePAX10("big", 1<<50, frags), tartest.End()...))
	f.Add(append(tartest.SparsePAX01("big", 1<<50, frags), tartest.End()...))
	f.Add(append(tartest.SparseGNU("big", 1<<50, frags), tartest.End()...))
	f.Add(append(tartest.File("a", []byte("hello"), 0o644), tartest.End()...))
	f.Fuzz(func(t *testing.T, b []byte) {
		start := time.Now()
		tr := tarstream.NewReader(bytes.NewReader(b))
		var data int64
		for i := 0; ; i++ {
			h, err := tr.Next()
			if err != nil {
				break
			}
			n, err := io.Copy(io.Discard, tr)
			data += n
			if h.Sparse != nil && err == nil && n != h.DataSize() {
				t.Fatalf("entry %q: read %d data bytes, map holds %d", h.Name, n, h.DataSize())
			}
		}
		if data > int64(len(b)) {
			t.Fatalf("read %d data bytes from a %d-byte archive", data, len(b))
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("took %s", d)
		}
	})
}
