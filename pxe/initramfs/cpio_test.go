package initramfs

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sampleTree(t *testing.T) []Entry {
	t.Helper()
	var tr Tree
	require.NoError(t, tr.File("bin/busybox", 0o755, []byte("\x7fELF fake busybox")))
	require.NoError(t, tr.Symlink("bin/sh", "busybox"))
	require.NoError(t, tr.File("init", 0o755, []byte("#!/bin/sh\necho hi\n")))
	require.NoError(t, tr.File("etc/herd/empty", 0o644, nil))
	require.NoError(t, tr.CharDev("dev/console", 0o600, 5, 1))
	require.NoError(t, tr.Dir("tmp", 0o1777|fs.ModeSticky))
	return tr.Entries()
}

func TestTreeSortsAndAddsParents(t *testing.T) {
	es := sampleTree(t)
	var names []string
	for _, e := range es {
		names = append(names, e.Name)
	}
	assert.Equal(t, []string{"bin", "bin/busybox", "bin/sh", "dev", "dev/console", "etc", "etc/herd", "etc/herd/empty", "init", "tmp"}, names)
	assert.True(t, es[0].Mode.IsDir())
}

func TestTreeRefusesBadNames(t *testing.T) {
	var tr Tree
	for _, n := range []string{"", "/", "../x", "a/../../b", "a//b", "a/./b", "x\x00y"} {
		assert.ErrorIs(t, tr.File(n, 0o644, nil), ErrBadEntry, "%q", n)
	}
	assert.ErrorIs(t, tr.Add(Entry{Name: "p", Mode: fs.ModeNamedPipe}), ErrBadEntry)
}

func TestNewcRoundTrip(t *testing.T) {
	es := sampleTree(t)
	var buf bytes.Buffer
	require.NoError(t, WriteNewc(&buf, es))
	assert.Zero(t, buf.Len()%4, "archive is 4-byte aligned")
	got, err := ReadNewc(bytes.NewReader(buf.Bytes()))
	require.NoError(t, err)
	require.Len(t, got, len(es))
	for i := range es {
		assert.Equal(t, es[i].Name, got[i].Name)
		assert.Equal(t, es[i].Mode, got[i].Mode, es[i].Name)
		assert.Equal(t, string(es[i].Data), string(got[i].Data), es[i].Name)
		assert.Equal(t, es[i].Major, got[i].Major)
		assert.Equal(t, es[i].Minor, got[i].Minor)
	}
}

func TestNewcIsReproducible(t *testing.T) {
	a, err := Compress(sampleTree(t))
	require.NoError(t, err)
	b, err := Compress(sampleTree(t))
	require.NoError(t, err)
	assert.Equal(t, a, b)
	zr, err := gzip.NewReader(bytes.NewReader(a))
	require.NoError(t, err)
	assert.True(t, zr.ModTime.IsZero() || zr.ModTime.Unix() == 0, "gzip header has no time")
	assert.Empty(t, zr.Name)
	raw, err := io.ReadAll(zr)
	require.NoError(t, err)
	// Header fields: ino(1) mode ... mtime at offset 6+8*5.
	assert.Equal(t, "070701", string(raw[:6]))
	assert.Equal(t, "00000000", string(raw[6+8*5:6+8*6]), "mtime is zero")
}

// TestNewcReadByGNUCpio checks the archive with another implementation:
// GNU cpio lists and extracts it with the same names, contents and
// symlink.
func TestNewcReadByGNUCpio(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("GNU cpio is not installed (Debian cpio)")
	}
	var tr Tree
	require.NoError(t, tr.File("bin/busybox", 0o755, bytes.Repeat([]byte("x"), 1001)))
	require.NoError(t, tr.Symlink("bin/sh", "busybox"))
	require.NoError(t, tr.File("init", 0o700, []byte("#!/bin/sh\n")))
	var buf bytes.Buffer
	require.NoError(t, WriteNewc(&buf, tr.Entries()))

	list := exec.Command("cpio", "-it", "--quiet")
	list.Stdin = bytes.NewReader(buf.Bytes())
	out, err := list.Output()
	require.NoError(t, err)
	assert.Equal(t, "bin\nbin/busybox\nbin/sh\ninit\n", string(out))

	dir := t.TempDir()
	ex := exec.Command("cpio", "-id", "--quiet", "--no-absolute-filenames")
	ex.Dir = dir
	ex.Stdin = bytes.NewReader(buf.Bytes())
	out, err = ex.CombinedOutput()
	require.NoError(t, err, "%s", out)
	b, err := os.ReadFile(filepath.Join(dir, "bin/busybox"))
	require.NoError(t, err)
	assert.Len(t, b, 1001)
	l, err := os.Readlink(filepath.Join(dir, "bin/sh"))
	require.NoError(t, err)
	assert.Equal(t, "busybox", l)
	st, err := os.Stat(filepath.Join(dir, "init"))
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o700), st.Mode().Perm())
}

func TestReadNewcErrors(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, WriteNewc(&buf, sampleTree(t)))
	good := buf.Bytes()
	for name, b := range map[string][]byte{
		"empty":        nil,
		"bad magic":    append([]byte("070707"), good[6:]...),
		"truncated":    good[:len(good)-20],
		"no trailer":   good[:200],
		"bad hex size": append(append(append([]byte{}, good[:54]...), []byte("zzzzzzzz")...), good[62:]...),
	} {
		_, err := ReadNewc(bytes.NewReader(b))
		assert.ErrorIs(t, err, ErrBadCpio, name)
	}
}

func FuzzReadNewc(f *testing.F) {
	var tr Tree
	tr.File("init", 0o755, []byte("#!/bin/sh\n"))
	tr.Symlink("bin/sh", "busybox")
	tr.CharDev("dev/console", 0o600, 5, 1)
	var buf bytes.Buffer
	WriteNewc(&buf, tr.Entries())
	f.Add(buf.Bytes())
	buf.Reset()
	WriteNewc(&buf, nil)
	f.Add(buf.Bytes())
	f.Add([]byte("070701"))
	f.Fuzz(func(t *testing.T, b []byte) {
		es, err := ReadNewc(bytes.NewReader(b))
		if err != nil {
			return
		}
		// What parses must write back and parse to the same entries
		// (names that WriteNewc refuses are allowed to fail).
		var out bytes.Buffer
		if WriteNewc(&out, es) != nil {
			return
		}
		again, err := ReadNewc(&out)
		if err != nil {
			t.Fatalf("rewritten archive does not parse: %v", err)
		}
		if len(again) != len(es) {
			t.Fatalf("rewrite changed entry count %d -> %d", len(es), len(again))
		}
		for i := range es {
			if again[i].Name != es[i].Name || again[i].Mode != es[i].Mode || !bytes.Equal(again[i].Data, es[i].Data) {
				t.Fatalf("entry %d changed: %+v -> %+v", i, es[i], again[i])
			}
		}
	})
}
