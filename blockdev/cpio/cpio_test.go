package cpio

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// makeTree builds a small tree with a file, a directory, a symlink and a
// hard link and returns its directory.
func makeTree(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(d, "sub"), 0o750))
	require.NoError(t, os.WriteFile(filepath.Join(d, "sub", "a.txt"), []byte("alpha\n"), 0o640))
	require.NoError(t, os.WriteFile(filepath.Join(d, "odd"), []byte("xyz"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(d, "big"), bytes.Repeat([]byte("0123456789"), 10000), 0o644))
	require.NoError(t, os.Symlink("sub/a.txt", filepath.Join(d, "ln")))
	require.NoError(t, os.Link(filepath.Join(d, "odd"), filepath.Join(d, "hard")))
	return d
}

// gnuCpio archives dir with GNU cpio -o -H format.
func gnuCpio(t *testing.T, dir, format string) []byte {
	t.Helper()
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("GNU cpio not installed (Debian package cpio)")
	}
	cmd := exec.Command("sh", "-c", "find . | LC_ALL=C sort | cpio -o --quiet -H "+format)
	cmd.Dir = dir
	out, err := cmd.Output()
	require.NoError(t, err)
	return out
}

func TestGNUFormats(t *testing.T) {
	for _, tc := range []struct {
		flag string
		want Format
	}{{"newc", FormatNewc}, {"crc", FormatCRC}, {"odc", FormatODC}, {"bin", FormatBinLE}} {
		t.Run(tc.flag, func(t *testing.T) {
			dir := makeTree(t)
			arc := gnuCpio(t, dir, tc.flag)
			cr := NewReader(bytes.NewReader(arc))
			got := map[string]*Header{}
			data := map[string][]byte{}
			for {
				h, err := cr.Next()
				if err == io.EOF {
					break
				}
				require.NoError(t, err)
				require.Equal(t, tc.want, h.Format)
				b, err := io.ReadAll(cr)
				require.NoError(t, err)
				got[h.Name] = h
				data[h.Name] = b
			}
			require.Contains(t, got, "sub/a.txt")
			require.Equal(t, "alpha\n", string(data["sub/a.txt"]))
			require.Equal(t, uint32(TypeReg|0o640), got["sub/a.txt"].Mode)
			require.Equal(t, uint32(TypeDir|0o750), got["sub"].Mode)
			require.Equal(t, uint32(TypeLink), got["ln"].Mode&TypeMask)
			require.Equal(t, "sub/a.txt", got["ln"].Linkname)
			require.Empty(t, data["ln"])
			require.Equal(t, 100000, len(data["big"]))
			require.Equal(t, got["odd"].Ino, got["hard"].Ino)
			require.Equal(t, 2, got["hard"].Nlink)
			// newc stores the data of a hard-link set once, with the last
			// link (the first is empty); odc and bin store it with every link.
			require.Equal(t, "xyz", string(data["odd"]))
			require.Contains(t, []string{"", "xyz"}, string(data["hard"]))
			fi, err := os.Stat(filepath.Join(dir, "sub", "a.txt"))
			require.NoError(t, err)
			require.Equal(t, fi.ModTime().Unix(), got["sub/a.txt"].ModTime.Unix())
		})
	}
}

func TestDeviceNode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("creating a device node needs root")
	}
	for _, f := range []string{"newc", "odc", "bin"} {
		t.Run(f, func(t *testing.T) {
			dir := t.TempDir()
			out, err := exec.Command("mknod", filepath.Join(dir, "null2"), "c", "1", "3").CombinedOutput()
			require.NoError(t, err, string(out))
			arc := gnuCpio(t, dir, f)
			cr := NewReader(bytes.NewReader(arc))
			found := false
			for {
				h, err := cr.Next()
				if err == io.EOF {
					break
				}
				require.NoError(t, err)
				if h.Name == "null2" {
					found = true
					require.Equal(t, uint32(TypeChar), h.Mode&TypeMask)
					require.Equal(t, uint32(1), h.DevMajor)
					require.Equal(t, uint32(3), h.DevMinor)
				}
			}
			require.True(t, found)
		})
	}
}

func TestBigEndianBinary(t *testing.T) {
	// A hand-made big-endian old binary archive: one file "a" with "hi".
	hdr := func(name string, mode, size uint16) []byte {
		var b bytes.Buffer
		words := []uint16{0o70707, 1, 2, mode, 0, 0, 1, 0, 0, 100, uint16(len(name) + 1), 0, size}
		for _, w := range words {
			b.WriteByte(byte(w >> 8))
			b.WriteByte(byte(w))
		}
		b.WriteString(name)
		b.WriteByte(0)
		if (len(name)+1)%2 == 1 {
			b.WriteByte(0)
		}
		return b.Bytes()
	}
	var arc bytes.Buffer
	arc.Write(hdr("a", TypeReg|0o644, 2))
	arc.WriteString("hi")
	arc.Write(hdr("TRAILER!!!", 0, 0))
	cr := NewReader(&arc)
	h, err := cr.Next()
	require.NoError(t, err)
	require.Equal(t, FormatBinBE, h.Format)
	require.Equal(t, "a", h.Name)
	require.Equal(t, int64(100), h.ModTime.Unix())
	b, err := io.ReadAll(cr)
	require.NoError(t, err)
	require.Equal(t, "hi", string(b))
	_, err = cr.Next()
	require.Equal(t, io.EOF, err)
}

func TestMalformed(t *testing.T) {
	cases := map[string]string{
		"bad magic":     "070799" + strings.Repeat("0", 104),
		"truncated":     "070701" + strings.Repeat("0", 20),
		"bad hex":       "070701" + strings.Repeat("z", 104),
		"no trailer":    "",
		"name too long": "070701" + strings.Repeat("0", 88) + "FFFFFFFF" + strings.Repeat("0", 8),
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := NewReader(strings.NewReader(in)).Next()
			require.Error(t, err)
			if name != "truncated" {
				require.True(t, errors.Is(err, ErrHeader), "%v", err)
			}
		})
	}
}

func FuzzReader(f *testing.F) {
	for _, p := range []string{"testdata/newc.cpio", "testdata/odc.cpio", "testdata/bin.cpio"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("070701"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cr := NewReader(bytes.NewReader(b))
		for i := 0; i < 1000; i++ {
			h, err := cr.Next()
			if err != nil {
				return
			}
			if len(h.Name) > MaxNameLen || len(h.Linkname) > MaxLinkLen {
				t.Fatalf("limits not enforced: %d %d", len(h.Name), len(h.Linkname))
			}
			if _, err := io.Copy(io.Discard, io.LimitReader(cr, 1<<20)); err != nil {
				return
			}
		}
	})
}
