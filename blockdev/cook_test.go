//go:build linux

package blockdev_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-cluster/herd/blockdev"
	"github.com/herd-cluster/herd/blockdev/internal/blocktest"
	"github.com/herd-cluster/herd/internal/testenv"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// cook streams the file at srcPath into a cook sink in chunks, as the chain
// would, and returns Sync's error.
func cook(t *testing.T, srcPath, srcName, dest string, opts blockdev.SinkOptions) error {
	t.Helper()
	data, err := os.ReadFile(srcPath)
	require.NoError(t, err)
	return cookBytes(t, data, srcName, dest, opts)
}

func cookBytes(t *testing.T, data []byte, srcName, dest string, opts blockdev.SinkOptions) error {
	t.Helper()
	s, err := blockdev.OpenCookSink(context.Background(), srcName, dest, int64(len(data)), opts)
	if err != nil {
		return err
	}
	defer func() { require.NoError(t, s.Close()) }()
	for off := 0; off < len(data); off += 100003 {
		end := min(off+100003, len(data))
		if _, err := s.WriteAt(data[off:end], int64(off)); err != nil {
			return err
		}
	}
	return s.Sync()
}

func TestPlanCook(t *testing.T) {
	for name, want := range map[string]blockdev.CookPlan{
		"a.gz": {Compression: blockdev.Gzip}, "a.Z": {Compression: blockdev.UnixZ}, "a.zst": {Compression: blockdev.Zstd},
		"a.tar": {Archive: "tar"}, "a.tar.gz": {Compression: blockdev.Gzip, Archive: "tar"}, "x/a.tgz": {Compression: blockdev.Gzip, Archive: "tar"},
		"a.tar.Z": {Compression: blockdev.UnixZ, Archive: "tar"}, "a.tar.zst": {Compression: blockdev.Zstd, Archive: "tar"},
		"a.cpio": {Archive: "cpio"}, "a.cpio.gz": {Compression: blockdev.Gzip, Archive: "cpio"}, "a.cpio.Z": {Compression: blockdev.UnixZ, Archive: "cpio"},
	} {
		got, err := blockdev.PlanCook(name)
		require.NoError(t, err, name)
		require.Equal(t, want, got, name)
	}
	for _, bad := range []string{"a.img", "a.bz2", ".gz", "tar"} {
		_, err := blockdev.PlanCook(bad)
		require.ErrorIs(t, err, blockdev.ErrUnsupported, bad)
	}
}

func TestCookDecompressToFile(t *testing.T) {
	data := patterned(3<<20, 21)
	for _, tool := range []string{"gzip", "zstd", "compress"} {
		t.Run(tool, func(t *testing.T) {
			z := compressFile(t, tool, data)
			root := t.TempDir()
			require.NoError(t, cook(t, z, filepath.Base(z), "out/disk.img", blockdev.SinkOptions{Root: root}))
			got, err := os.ReadFile(filepath.Join(root, "out/disk.img"))
			require.NoError(t, err)
			require.True(t, bytes.Equal(data, got), "decompressed content differs")
		})
	}
}

// Dolly+'s "image.gz >> /dev/sda1": decompressed onto an allowed block
// device, zeros included (the device held other data); an image larger
// than the device is refused with ErrTooSmall; a device not allowed is
// refused before a byte is written.
func TestCookDecompressToDevice(t *testing.T) {
	needRoot(t)
	img := filepath.Join(t.TempDir(), "disk.img")
	require.NoError(t, os.WriteFile(img, patterned(4<<20, 8), 0o600))
	dev := testenv.AttachLoop(t, img)
	data := make([]byte, 3<<20)
	copy(data[1<<20:], patterned(1<<20, 22)) // zeros, data, zeros
	z := compressFile(t, "gzip", data)
	require.NoError(t, cook(t, z, "disk.img.gz", dev, blockdev.SinkOptions{AllowDevices: []string{dev}}))
	got, err := os.ReadFile(img)
	require.NoError(t, err)
	require.True(t, bytes.Equal(data, got[:3<<20]), "decompressed content differs on the device")
	require.True(t, bytes.Equal(patterned(4<<20, 8)[3<<20:], got[3<<20:]), "past the image the device is unchanged")

	big := compressFile(t, "gzip", make([]byte, 5<<20))
	err = cook(t, big, "big.img.gz", dev, blockdev.SinkOptions{AllowDevices: []string{dev}})
	require.ErrorIs(t, err, blockdev.ErrTooSmall)

	_, err = blockdev.OpenCookSink(context.Background(), "disk.img.gz", dev, -1, blockdev.SinkOptions{})
	require.ErrorIs(t, err, blockdev.ErrNotAllowed)
}

// node is what the tree comparison checks for one path.
type node struct {
	Kind     string
	Perm     fs.FileMode
	UID, GID uint32
	MTime    int64
	Data     string
	Link     string
	Rdev     uint64
	Ino      uint64 `json:"-"`
	Xattr    string
}

func snapshot(t *testing.T, dir string, withXattr bool) map[string]node {
	t.Helper()
	out := map[string]node{}
	inoName := map[uint64]string{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		require.NoError(t, err)
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		st := fi.Sys().(*syscall.Stat_t)
		n := node{Kind: fi.Mode().Type().String(), Perm: fi.Mode().Perm() | fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky),
			UID: st.Uid, GID: st.Gid, MTime: fi.ModTime().Unix()}
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			n.Data = string(b)
			if first, ok := inoName[st.Ino]; ok {
				n.Link = "hardlink-of:" + first
			} else {
				inoName[st.Ino] = rel
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			n.Link, _ = os.Readlink(p)
			n.Perm = 0
		case fi.Mode()&fs.ModeDevice != 0:
			n.Rdev = st.Rdev
		}
		if withXattr && fi.Mode()&fs.ModeSymlink == 0 {
			buf := make([]byte, 256)
			if k, err := unix.Lgetxattr(p, "user.herd", buf); err == nil {
				n.Xattr = string(buf[:k])
			}
		}
		out[rel] = n
		return nil
	})
	require.NoError(t, err)
	return out
}

// buildTree makes a tree exercising modes, owners, times, links, a fifo,
// a device node and an xattr (the last three only as root).
func buildTree(t *testing.T) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "tree")
	must := func(err error) { t.Helper(); require.NoError(t, err) }
	must(os.MkdirAll(filepath.Join(d, "etc/deep/er"), 0o755))
	must(os.WriteFile(filepath.Join(d, "etc/hosts"), []byte("127.0.0.1 localhost\n"), 0o644))
	must(os.WriteFile(filepath.Join(d, "etc/deep/er/secret"), bytes.Repeat([]byte("s3cr3t"), 50000), 0o600))
	must(os.WriteFile(filepath.Join(d, "empty"), nil, 0o640))
	must(os.WriteFile(filepath.Join(d, "suid"), []byte("x"), 0o755))
	must(os.Link(filepath.Join(d, "etc/hosts"), filepath.Join(d, "hosts.hard")))
	must(os.Symlink("etc/hosts", filepath.Join(d, "hosts.rel")))
	must(os.Symlink("/etc/passwd", filepath.Join(d, "abs.link")))
	must(os.Chmod(filepath.Join(d, "etc/deep"), 0o750))
	if os.Geteuid() == 0 {
		must(unix.Mkfifo(filepath.Join(d, "fifo"), 0o644))
		must(unix.Mknod(filepath.Join(d, "null2"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
		must(os.Lchown(filepath.Join(d, "etc/hosts"), 1234, 5678))
		must(os.Lchown(filepath.Join(d, "hosts.rel"), 4321, 8765))
		must(os.Chown(filepath.Join(d, "etc/deep"), 42, 43))
	}
	_ = unix.Setxattr(filepath.Join(d, "etc/hosts"), "user.herd", []byte("cloned"), 0)
	must(os.Chmod(filepath.Join(d, "suid"), 0o755|os.ModeSetuid)) // after chown, which clears it
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	must(filepath.Walk(d, func(p string, fi os.FileInfo, err error) error {
		must(err)
		ts := []unix.Timespec{unix.NsecToTimespec(old.UnixNano()), unix.NsecToTimespec(old.UnixNano())}
		return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
	}))
	return d
}

func hasXattr(t *testing.T, dir string) bool {
	buf := make([]byte, 64)
	_, err := unix.Getxattr(filepath.Join(dir, "etc/hosts"), "user.herd", buf)
	return err == nil
}

func TestCookArchives(t *testing.T) {
	needTool(t, "tar", "tar")
	needTool(t, "cpio", "cpio")
	tree := buildTree(t)
	xattr := hasXattr(t, tree)
	want := snapshot(t, tree, xattr)
	// The tree really holds what the comparison is meant to cover.
	require.Equal(t, "hardlink-of:etc/hosts", want["hosts.hard"].Link)
	require.Equal(t, fs.ModeSetuid|0o755, want["suid"].Perm)
	if os.Geteuid() == 0 {
		require.Equal(t, uint32(1234), want["etc/hosts"].UID)
		require.Equal(t, uint32(4321), want["hosts.rel"].UID)
		require.NotZero(t, want["null2"].Rdev)
	}
	if xattr {
		require.Equal(t, "cloned", want["etc/hosts"].Xattr)
	} else {
		t.Log("user xattrs unsupported on the temp filesystem: xattr round trip not checked")
	}
	type arc struct{ name, cmd, tool string }
	arcs := []arc{
		{"a.tar", "tar --format=posix --xattrs --numeric-owner -C TREE -cf OUT .", ""},
		{"a.tar.gz", "tar --format=posix --xattrs --numeric-owner -C TREE -czf OUT .", "gzip"},
		{"a.tar.Z", "tar --format=posix --xattrs --numeric-owner -C TREE -Zcf OUT .", "compress"},
		{"a.tar.zst", "tar --format=posix --xattrs --numeric-owner -C TREE --zstd -cf OUT .", "zstd"},
		{"newc.cpio", "cd TREE && find . | cpio -o --quiet -H newc > OUT", ""},
		{"odc.cpio", "cd TREE && find . | cpio -o --quiet -H odc > OUT", ""},
		{"bin.cpio", "cd TREE && find . | cpio -o --quiet -H bin > OUT", ""},
		{"crc.cpio.gz", "cd TREE && find . | cpio -o --quiet -H crc | gzip > OUT", "gzip"},
		{"newc.cpio.Z", "cd TREE && find . | cpio -o --quiet -H newc | compress -c > OUT", "compress"},
		{"newc.cpio.zst", "cd TREE && find . | cpio -o --quiet -H newc | zstd -q -c > OUT", "zstd"},
	}
	for _, a := range arcs {
		t.Run(a.name, func(t *testing.T) {
			if a.tool != "" {
				needTool(t, a.tool, map[string]string{"gzip": "gzip", "compress": "ncompress", "zstd": "zstd"}[a.tool])
			}
			out := filepath.Join(t.TempDir(), a.name)
			cmd := strings.NewReplacer("TREE", tree, "OUT", out).Replace(a.cmd)
			b, err := exec.Command("sh", "-c", cmd).CombinedOutput()
			require.NoError(t, err, "%s: %s", cmd, b)
			root := t.TempDir()
			require.NoError(t, cook(t, out, a.name, "unpacked", blockdev.SinkOptions{Root: root, Special: true}))
			got := snapshot(t, filepath.Join(root, "unpacked"), xattr && strings.Contains(a.name, "tar"))
			w := want
			if !strings.Contains(a.name, "tar") { // cpio has no xattrs
				w = map[string]node{}
				for k, v := range want {
					v.Xattr = ""
					w[k] = v
				}
			}
			require.Equal(t, keys(w), keys(got))
			for k := range w {
				require.Equal(t, w[k], got[k], "entry %s", k)
			}
		})
	}
}

func keys(m map[string]node) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}

// tarOf builds a tar archive from headers (with bodies for regular files).
func tarOf(t *testing.T, hs ...*tar.Header) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range hs {
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		body := []byte{}
		if h.Typeflag == tar.TypeReg {
			body = []byte("evil")
			h.Size = int64(len(body))
		}
		require.NoError(t, tw.WriteHeader(h))
		_, err := tw.Write(body)
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	return b.Bytes()
}

func TestCookRefusesEscapes(t *testing.T) {
	cases := map[string][]*tar.Header{
		"../evil": {{Name: "../evil"}},
		"/abs":    {{Name: "/abs"}},
		"a/../../evil": {{Name: "a/", Typeflag: tar.TypeDir, Mode: 0o755},
			{Name: "a/../../evil"}},
		"link/evil": {{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "OUTSIDE"},
			{Name: "link/evil"}},
		"dotdot/evil": {{Name: "dotdot", Typeflag: tar.TypeSymlink, Linkname: "../../.."},
			{Name: "dotdot/evil"}},
		"hard": {{Name: "hard", Typeflag: tar.TypeLink, Linkname: "../../etc/passwd"}},
		"over": {{Name: "over", Typeflag: tar.TypeSymlink, Linkname: "OUTSIDE/x"},
			{Name: "over"}},
	}
	for bad, hs := range cases {
		t.Run(strings.ReplaceAll(bad, "/", "_"), func(t *testing.T) {
			base := t.TempDir()
			outside := filepath.Join(base, "outside")
			require.NoError(t, os.Mkdir(outside, 0o755))
			for _, h := range hs {
				h.Linkname = strings.ReplaceAll(h.Linkname, "OUTSIDE", outside)
			}
			err := cookBytes(t, tarOf(t, hs...), "x.tar", filepath.Join(base, "root", "dst"), blockdev.SinkOptions{})
			if bad == "over" {
				// Replacing a symlink with a file is fine: the link is removed,
				// nothing is written through it.
				require.NoError(t, err)
				fi, err := os.Lstat(filepath.Join(base, "root", "dst", "over"))
				require.NoError(t, err)
				require.True(t, fi.Mode().IsRegular())
			} else {
				require.ErrorIs(t, err, blockdev.ErrUnsafeEntry)
				require.Contains(t, err.Error(), fmt.Sprintf("%q", hs[len(hs)-1].Name))
			}
			ents, err := os.ReadDir(outside)
			require.NoError(t, err)
			require.Empty(t, ents, "something was written outside the target")
			_, err = os.Stat(filepath.Join(base, "evil"))
			require.True(t, os.IsNotExist(err))
		})
	}
}

func TestCookOrderAndAbort(t *testing.T) {
	data := patterned(1<<20, 5)
	z := compressFile(t, "gzip", data)
	gz, err := os.ReadFile(z)
	require.NoError(t, err)
	s, err := blockdev.OpenCookSink(context.Background(), "x.gz", filepath.Join(t.TempDir(), "o"), -1, blockdev.SinkOptions{})
	require.NoError(t, err)
	_, err = s.WriteAt(gz[:1000], 0)
	require.NoError(t, err)
	_, err = s.WriteAt(gz[:10], 500)
	require.ErrorIs(t, err, blockdev.ErrOrder)
	require.NoError(t, s.Close(), "closing without Sync aborts quietly")

	// Corrupt data: Sync reports the decompression error.
	bad := append([]byte(nil), gz...)
	for i := 100; i < 400; i++ {
		bad[i] ^= 0x5a
	}
	err = cookBytes(t, bad, "x.gz", filepath.Join(t.TempDir(), "o"), blockdev.SinkOptions{})
	require.Error(t, err)
	require.Contains(t, err.Error(), "x.gz")
}

func TestCookRootConfinement(t *testing.T) {
	root := t.TempDir()
	_, err := blockdev.OpenCookSink(context.Background(), "a.tar", "../elsewhere", -1, blockdev.SinkOptions{Root: root})
	require.ErrorIs(t, err, blockdev.ErrNotAllowed)
	_, err = blockdev.OpenCookSink(context.Background(), "a.gz", "/etc/x", -1, blockdev.SinkOptions{Root: root})
	require.ErrorIs(t, err, blockdev.ErrNotAllowed)
}

func TestCookSinkConformance(t *testing.T) {
	var out string
	for _, tc := range []struct {
		name, tool string
	}{{"disk.img.gz", "gzip"}, {"disk.img.zst", "zstd"}, {"disk.img.Z", "compress"}} {
		t.Run(tc.name, func(t *testing.T) {
			blocktest.TestSink(t, blocktest.SinkCase{
				Open: func(t *testing.T, size int64) blocktest.Sink {
					out = filepath.Join(t.TempDir(), "disk.img")
					s, err := blockdev.OpenCookSink(context.Background(), tc.name, out, -1, blockdev.SinkOptions{})
					require.NoError(t, err)
					return s
				},
				ReadBack: func(t *testing.T) []byte { return readAll(t, out) },
				Encode: func(t *testing.T, img []byte) []byte {
					return readAll(t, compressFile(t, tc.tool, img))
				},
			})
		})
	}
}

func TestCookDotEntrySetsTargetDir(t *testing.T) {
	mt := time.Date(2010, 1, 2, 3, 4, 5, 0, time.UTC)
	arc := tarOf(t,
		&tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o751, ModTime: mt},
		&tar.Header{Name: "./etc/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mt},
		&tar.Header{Name: "./etc/motd", ModTime: mt})
	dst := filepath.Join(t.TempDir(), "target")
	require.NoError(t, cookBytes(t, arc, "root.tar", dst, blockdev.SinkOptions{}))
	fi, err := os.Stat(dst)
	require.NoError(t, err)
	require.Equal(t, fs.FileMode(0o751), fi.Mode().Perm())
	require.Equal(t, mt.Unix(), fi.ModTime().Unix())
	b, err := os.ReadFile(filepath.Join(dst, "etc/motd"))
	require.NoError(t, err)
	require.Equal(t, "evil", string(b))
}
