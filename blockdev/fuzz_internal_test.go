package blockdev

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fuzzExtract unpacks b with fn under base/root and fails if anything
// appears in base outside root.
func fuzzExtract(t *testing.T, b []byte, fn func(r *bytes.Reader, x *extractor) error) {
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
	x := newExtractor(root)
	x.owners = false
	_ = fn(bytes.NewReader(b), x)
	ents, err := os.ReadDir(base)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != "root" {
		t.Fatalf("extraction escaped: %v", ents)
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
	f.Fuzz(func(t *testing.T, b []byte) {
		fuzzExtract(t, b, func(r *bytes.Reader, x *extractor) error { return untar(r, x) })
	})
}

func FuzzUncpio(f *testing.F) {
	for _, p := range []string{"cpio/testdata/newc.cpio", "cpio/testdata/odc.cpio", "cpio/testdata/bin.cpio"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fuzzExtract(t, b, func(r *bytes.Reader, x *extractor) error { return uncpio(r, x) })
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
	want := []Mount{{98, 0, "/mnt2", "rw,noatime", "ext3", "/dev/root"}, {7, 3, "/tmp/a b", "rw", "ext4", "/dev/loop3"}}
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
