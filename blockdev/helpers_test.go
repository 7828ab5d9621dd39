package blockdev_test

import (
	"bytes"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herd-cluster/herd/blockdev"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/internal/testenv"
)

// needTool skips t when a program is missing.
func needTool(t testing.TB, name, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s not installed (Debian package %s)", name, pkg)
	}
}

func needRoot(t testing.TB) {
	t.Helper()
	testenv.NeedRoot(t, "loop devices, mounts, device nodes")
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	require.NoError(t, err, "%s %s: %s", name, strings.Join(args, " "), out)
	return string(out)
}

// patterned returns size bytes with runs of zeros and random data.
func patterned(size int, seed int64) []byte {
	rng := rand.New(rand.NewSource(seed))
	b := make([]byte, size)
	for off := 0; off < size; {
		n := rng.Intn(300<<10) + 1
		if off+n > size {
			n = size - off
		}
		if rng.Intn(2) == 0 {
			rng.Read(b[off : off+n])
		}
		off += n
	}
	return b
}

// writeFile writes data to a new file in a temp dir and returns its path.
func writeFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, data, 0o600))
	return p
}

// sparseFile writes data leaving holes where data has 64 KiB-aligned zero
// blocks, and returns its path.
func sparseFile(t testing.TB, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sparse.img")
	f, err := os.Create(p)
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, f.Truncate(int64(len(data))))
	const bs = 64 << 10
	for off := 0; off < len(data); off += bs {
		end := min(off+bs, len(data))
		if !bytes.Equal(data[off:end], make([]byte, end-off)) {
			_, err := f.WriteAt(data[off:end], int64(off))
			require.NoError(t, err)
		}
	}
	return p
}

// compressFile runs a compressor (gzip, zstd, compress) on data.
func compressFile(t testing.TB, tool string, data []byte) string {
	t.Helper()
	pkg := map[string]string{"gzip": "gzip", "zstd": "zstd", "compress": "ncompress"}[tool]
	needTool(t, tool, pkg)
	in := writeFile(t, "img", data)
	out, err := exec.Command(tool, "-c", in).Output()
	require.NoError(t, err)
	ext := map[string]string{"gzip": ".gz", "zstd": ".zst", "compress": ".Z"}[tool]
	return writeFile(t, "img"+ext, out)
}

func readAll(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return b
}

// copyThrough copies src into a new file sink and returns the target path.
func copyThrough(t *testing.T, src *blockdev.Source) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "copy.img")
	s, err := blockdev.OpenSink(out, src.Size(), blockdev.SinkOptions{})
	require.NoError(t, err)
	buf := make([]byte, 1<<20)
	for {
		off, n, err := src.ReadChunk(buf)
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		_, err = s.WriteAt(buf[:n], off)
		require.NoError(t, err)
	}
	require.NoError(t, s.Sync())
	require.NoError(t, s.Close())
	return out
}

func complement(ext []blockdev.Extent, size int64) []blockdev.Extent {
	var out []blockdev.Extent
	pos := int64(0)
	for _, e := range ext {
		if e.Off > pos {
			out = append(out, blockdev.Extent{Off: pos, Len: e.Off - pos})
		}
		pos = e.End()
	}
	if pos < size {
		out = append(out, blockdev.Extent{Off: pos, Len: size - pos})
	}
	return out
}
