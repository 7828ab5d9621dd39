package fsmap

import (
	"bytes"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func needTool(t testing.TB, name, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s not installed (Debian package %s)", name, pkg)
	}
}

// garbageImage returns a file of size bytes full of random data, so that a
// map which missed a used block would copy garbage.
func garbageImage(t testing.TB, size int) string {
	t.Helper()
	b := make([]byte, size)
	rand.New(rand.NewSource(int64(size))).Read(b)
	p := filepath.Join(t.TempDir(), "fs.img")
	require.NoError(t, os.WriteFile(p, b, 0o600))
	return p
}

// populated returns a directory for mkfs -d.
func populated(t testing.TB) string {
	t.Helper()
	d := t.TempDir()
	rng := rand.New(rand.NewSource(5))
	for i := 0; i < 20; i++ {
		b := make([]byte, rng.Intn(300<<10))
		rng.Read(b)
		require.NoError(t, os.WriteFile(filepath.Join(d, "f"+strconv.Itoa(i)), b, 0o644))
	}
	require.NoError(t, os.MkdirAll(filepath.Join(d, "dir/sub"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(d, "dir/sub/x"), []byte("hello"), 0o644))
	return d
}

// copyUsed copies only the extents of img to a fresh zero (sparse) file.
func copyUsed(t testing.TB, img string, ext []Extent) string {
	t.Helper()
	in, err := os.Open(img)
	require.NoError(t, err)
	defer in.Close()
	fi, err := in.Stat()
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), "copy.img")
	out, err := os.Create(p)
	require.NoError(t, err)
	defer out.Close()
	require.NoError(t, out.Truncate(fi.Size()))
	for _, e := range ext {
		b := make([]byte, e.Len)
		_, err := in.ReadAt(b, e.Off)
		require.NoError(t, err)
		_, err = out.WriteAt(b, e.Off)
		require.NoError(t, err)
	}
	return p
}

func dumpe2fsInt(t *testing.T, img, field string) int64 {
	out, err := exec.Command("dumpe2fs", "-h", img).Output()
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^` + field + `:\s+(\d+)`).FindSubmatch(out)
	require.NotNil(t, m, "dumpe2fs has no %q", field)
	v, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return v
}

func TestExtMapAgainstE2fsprogs(t *testing.T) {
	needTool(t, "mkfs.ext4", "e2fsprogs")
	needTool(t, "e2fsck", "e2fsprogs")
	needTool(t, "debugfs", "e2fsprogs")
	src := populated(t)
	for _, tc := range []struct {
		name, typ string
		args      []string
	}{
		{"ext4-4k", "ext4", []string{"-b", "4096"}},
		{"ext4-1k", "ext4", []string{"-b", "1024"}},
		{"ext4-64bit", "ext4", []string{"-O", "64bit"}},
		{"ext3", "ext3", nil},
		{"ext2", "ext2", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := garbageImage(t, 48<<20)
			args := append([]string{"-q", "-F", "-t", tc.typ, "-E", "nodiscard", "-d", src}, tc.args...)
			out, err := exec.Command("mkfs.ext4", append(args, img)...).CombinedOutput()
			require.NoError(t, err, string(out))
			f, err := os.Open(img)
			require.NoError(t, err)
			defer f.Close()
			require.Equal(t, tc.typ, Probe(f))
			m, err := Detect(f, 48<<20)
			require.NoError(t, err)
			require.Equal(t, tc.typ, m.FS)
			// Used bytes = (block count - free blocks) * block size, as e2fsprogs counts.
			bs := dumpe2fsInt(t, img, "Block size")
			used := (dumpe2fsInt(t, img, "Block count") - dumpe2fsInt(t, img, "Free blocks")) * bs
			require.Equal(t, bs, m.BlockSize)
			total := Total(m.Extents)
			require.Equal(t, used, total, "map total vs e2fsprogs")
			require.Less(t, total, int64(24<<20), "a mostly empty fs must map to far less than its size")
			// Only the mapped ranges, on zeros: the filesystem is intact.
			cp := copyUsed(t, img, m.Extents)
			out, err = exec.Command("e2fsck", "-fn", cp).CombinedOutput()
			require.NoError(t, err, "e2fsck on the used-only copy: %s", out)
			got, err := exec.Command("debugfs", "-R", "cat /f7", cp).Output()
			require.NoError(t, err)
			want, err := os.ReadFile(filepath.Join(src, "f7"))
			require.NoError(t, err)
			require.True(t, bytes.Equal(want, got), "file content differs in the copy")
		})
	}
}

func TestFATMapMkfs(t *testing.T) {
	needTool(t, "mkfs.vfat", "dosfstools")
	needTool(t, "fsck.fat", "dosfstools")
	for _, tc := range []struct {
		bits string
		size int
	}{{"12", 4 << 20}, {"16", 32 << 20}, {"32", 64 << 20}} {
		t.Run("fat"+tc.bits, func(t *testing.T) {
			img := garbageImage(t, tc.size)
			out, err := exec.Command("mkfs.vfat", "-F", tc.bits, img).CombinedOutput()
			require.NoError(t, err, string(out))
			f, err := os.Open(img)
			require.NoError(t, err)
			defer f.Close()
			require.Equal(t, "fat", Probe(f))
			m, err := Detect(f, int64(tc.size))
			require.NoError(t, err)
			require.Equal(t, "fat"+tc.bits, m.FS)
			require.Less(t, Total(m.Extents), int64(tc.size/2))
			cp := copyUsed(t, img, m.Extents)
			out, err = exec.Command("fsck.fat", "-n", cp).CombinedOutput()
			require.NoError(t, err, "fsck.fat on the used-only copy: %s", out)
		})
	}
}

// TestFATMapCounts checks the cluster arithmetic on a hand-made FAT16
// volume with a known allocation.
func TestFATMapCounts(t *testing.T) {
	img := makeFAT16(t, []uint16{0xFFF8, 0xFFFF, 3, 0xFFFF, 0, 0, 7, 0xFFFF})
	m, err := FATMap(bytes.NewReader(img), int64(len(img)))
	require.NoError(t, err)
	require.Equal(t, "fat16", m.FS)
	dataOff := int64(4+2*64+32) * 512 // reserved + 2 FATs + root dir (512 entries)
	cl := int64(2048)
	// clusters 2,3 used, 4,5 free, 6,7 used
	require.Equal(t, []Extent{{0, dataOff + 2*cl}, {dataOff + 4*cl, 2 * cl}}, m.Extents)
}

// makeFAT16 builds a FAT16 volume (512-byte sectors, 4 per cluster, 4
// reserved, 2 FATs of 64 sectors, 512 root entries) with the given first
// table entries.
func makeFAT16(t testing.TB, entries []uint16) []byte {
	const sectors = 4 + 2*64 + 32 + 4*5000
	img := make([]byte, sectors*512)
	b := img[:512]
	b[0], b[1], b[2] = 0xEB, 0x3C, 0x90
	le16 := func(o int, v uint16) { b[o], b[o+1] = byte(v), byte(v>>8) }
	le16(11, 512)
	b[13] = 4
	le16(14, 4)
	b[16] = 2
	le16(17, 512)
	le16(19, sectors)
	b[21] = 0xF8
	le16(22, 64)
	b[510], b[511] = 0x55, 0xAA
	for i, e := range entries {
		o := 4*512 + 2*i
		img[o], img[o+1] = byte(e), byte(e>>8)
	}
	return img
}

func TestParseDomain(t *testing.T) {
	in := "# Domain logfile created by unset_name v0.3.23\n# Source: x.img\n# Offset: 0x00000000\n" +
		"# current_pos  current_status\n0x14000000     ?\n#      pos        size  status\n" +
		"0x00000000  0x00006000  +\n0x00006000  0x0000A000  ?\n0x00010000  0x00008000  +\n0x00018000  0x00008000  +\n"
	ext, err := ParseDomain(strings.NewReader(in))
	require.NoError(t, err)
	require.Equal(t, []Extent{{0, 0x6000}, {0x10000, 0x10000}}, ext)
	_, err = ParseDomain(strings.NewReader("0x0 ?\n0x0 zz +\n"))
	var pe *ParseError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, 2, pe.Line)
}

func TestPartcloneDomainXFS(t *testing.T) {
	needTool(t, "mkfs.xfs", "xfsprogs")
	needTool(t, "partclone.xfs", "partclone")
	p := filepath.Join(t.TempDir(), "xfs.img")
	f, err := os.Create(p)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(320<<20))
	f.Close()
	out, err := exec.Command("mkfs.xfs", "-q", p).CombinedOutput()
	require.NoError(t, err, string(out))
	f, err = os.Open(p)
	require.NoError(t, err)
	defer f.Close()
	require.Equal(t, "xfs", Probe(f))
	mp := filepath.Join(t.TempDir(), "map")
	out, err = exec.Command("partclone.xfs", "-D", "-s", p, "-o", mp, "-L", filepath.Join(t.TempDir(), "log")).CombinedOutput()
	require.NoError(t, err, string(out))
	mf, err := os.Open(mp)
	require.NoError(t, err)
	defer mf.Close()
	ext, err := ParseDomain(mf)
	require.NoError(t, err)
	require.NotEmpty(t, ext)
	require.Less(t, Total(ext), int64(320<<20)/2)
}

func TestNormalizeIntersect(t *testing.T) {
	n := Normalize([]Extent{{10, 5}, {0, 3}, {3, 2}, {14, 10}, {30, 0}, {-2, 4}}, 20)
	require.Equal(t, []Extent{{0, 5}, {10, 10}}, n)
	require.Equal(t, []Extent{{2, 3}, {10, 2}}, Intersect(n, []Extent{{2, 10}}))
}

func FuzzExtMap(f *testing.F) {
	if p, err := exec.LookPath("mkfs.ext4"); err == nil {
		img := filepath.Join(f.TempDir(), "seed.img")
		if os.WriteFile(img, make([]byte, 1<<20), 0o600) == nil && exec.Command(p, "-q", "-F", "-b", "1024", img).Run() == nil {
			if b, err := os.ReadFile(img); err == nil {
				f.Add(b[:64<<10])
			}
		}
	}
	if b, err := os.ReadFile("testdata/ext4-head.bin"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ExtMap(bytes.NewReader(b), int64(len(b)))
		if err == nil {
			for _, e := range m.Extents {
				if e.Off < 0 || e.End() > int64(len(b)) {
					t.Fatalf("extent %+v outside %d bytes", e, len(b))
				}
			}
		}
	})
}

func FuzzFATMap(f *testing.F) {
	f.Add(makeFAT16(f, []uint16{0xFFF8, 0xFFFF, 3, 0xFFFF})[:80<<10])
	if b, err := os.ReadFile("testdata/fat12-head.bin"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := FATMap(bytes.NewReader(b), int64(len(b)))
		if err == nil {
			for _, e := range m.Extents {
				if e.Off < 0 || e.End() > int64(len(b)) {
					t.Fatalf("extent %+v outside %d bytes", e, len(b))
				}
			}
		}
	})
}

func FuzzParseDomain(f *testing.F) {
	f.Add("# c\n0x14000000     ?\n0x00000000  0x00006000  +\n0x00006000  0x0000A000  ?\n")
	f.Fuzz(func(t *testing.T, s string) {
		ext, err := ParseDomain(strings.NewReader(s))
		if err == nil {
			for i := 1; i < len(ext); i++ {
				if ext[i].Off <= ext[i-1].End() {
					t.Fatalf("not normalized: %+v", ext)
				}
			}
		}
	})
}
