package initramfs

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pxe/kmod"
)

func TestParseModinfo(t *testing.T) {
	sec := []byte("license=GPL\x00depends=virtio,virtio_ring\x00retpoline=Y\x00alias=virtio:d00000001v*\x00softdep=pre: crc32c post: x\x00" +
		"firmware=e1000e/fw.bin\x00intree=Y\x00name=virtio_net\x00vermagic=6.1.0 SMP mod_unload\x00\x00")
	mi, err := ParseModinfo(sec)
	require.NoError(t, err)
	assert.Equal(t, "virtio_net", mi.Name)
	assert.Equal(t, []string{"virtio", "virtio_ring"}, mi.Depends)
	assert.Equal(t, []string{"virtio:d00000001v*"}, mi.Aliases)
	assert.Equal(t, []string{"crc32c"}, mi.SoftPre)
	assert.Equal(t, []string{"e1000e/fw.bin"}, mi.Firmware)

	mi, err = ParseModinfo([]byte("depends=\x00name=virtio_ring\x00"))
	require.NoError(t, err)
	assert.Equal(t, "virtio_ring", mi.Name)
	assert.Empty(t, mi.Depends)

	_, err = ParseModinfo([]byte("name=x\x00garbage\x00"))
	assert.ErrorIs(t, err, ErrModule)
	assert.Contains(t, err.Error(), "string 1")
}

func FuzzParseModinfo(f *testing.F) {
	f.Add([]byte("license=GPL\x00depends=virtio,virtio_ring\x00name=virtio_net\x00alias=pci:v*\x00softdep=pre: a b\x00"))
	f.Add([]byte("depends=\x00name=virtio\x00"))
	f.Add([]byte("\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		mi, err := ParseModinfo(b)
		if err != nil {
			return
		}
		for _, d := range append(mi.Depends, mi.SoftPre...) {
			if d == "" || strings.ContainsAny(d, ",\x00 ") {
				t.Fatalf("bad dependency name %q", d)
			}
		}
		for _, a := range mi.Aliases {
			if a == "" || strings.ContainsAny(a, " \t\n\x00") {
				t.Fatalf("bad alias %q", a)
			}
		}
	})
}

// fakeModule compiles a relocatable ELF object carrying a .modinfo
// section, which is all ResolveModules reads from a real .ko.
func fakeModule(t *testing.T, path, name string, deps ...string) {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc is needed to make fake kernel modules")
	}
	src := filepath.Join(t.TempDir(), "m.c")
	c := fmt.Sprintf("__attribute__((section(\".modinfo\"), used)) static const char mi[] = \"depends=%s\\0name=%s\";\n", strings.Join(deps, ","), name)
	require.NoError(t, os.WriteFile(src, []byte(c), 0o644))
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	out, err := exec.Command("gcc", "-c", "-o", path, src).CombinedOutput()
	require.NoError(t, err, "%s", out)
}

// fakeKernel makes an extracted-package layout with modules a <- b <- c
// (c depends on b, b on a) and d depending on a.
func fakeKernel(t *testing.T) string {
	root := t.TempDir()
	const v = "6.1.0-99-test"
	require.NoError(t, os.MkdirAll(filepath.Join(root, "boot"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "boot", "vmlinuz-"+v), []byte("fake kernel image"), 0o644))
	md := filepath.Join(root, "lib", "modules", v, "kernel")
	fakeModule(t, filepath.Join(md, "base", "a.ko"), "a")
	fakeModule(t, filepath.Join(md, "mid", "b.ko"), "b", "a")
	fakeModule(t, filepath.Join(md, "top", "c-dev.ko"), "c_dev", "b")
	fakeModule(t, filepath.Join(md, "top", "d.ko"), "d", "a")
	fakeModule(t, filepath.Join(md, "loop", "x.ko"), "x", "y")
	fakeModule(t, filepath.Join(md, "loop", "y.ko"), "y", "x")
	return root
}

func TestResolveModulesOrdersDependenciesFirst(t *testing.T) {
	root := fakeKernel(t)
	md := filepath.Join(root, "lib", "modules", "6.1.0-99-test")
	mods, err := ResolveModules(md, []string{"d", "c-dev"})
	require.NoError(t, err)
	var names, rels []string
	for _, m := range mods {
		names = append(names, m.Name)
		rels = append(rels, m.Rel)
	}
	assert.Equal(t, []string{"a", "d", "b", "c_dev"}, names)
	assert.Equal(t, "kernel/top/c-dev.ko", rels[3])

	_, err = ResolveModules(md, []string{"nope"})
	assert.ErrorIs(t, err, ErrModule)
	assert.Contains(t, err.Error(), "nope not found")
	_, err = ResolveModules(md, []string{"x"})
	assert.ErrorIs(t, err, ErrModule)
	assert.Contains(t, err.Error(), "cycle x -> y -> x")
}

func unpack(t *testing.T, initrd []byte) map[string]Entry {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(initrd))
	require.NoError(t, err)
	raw, err := io.ReadAll(zr)
	require.NoError(t, err)
	es, err := ReadNewc(bytes.NewReader(raw))
	require.NoError(t, err)
	m := map[string]Entry{}
	for _, e := range es {
		m[e.Name] = e
	}
	return m
}

func TestBuild(t *testing.T) {
	bb := "/bin/busybox"
	if _, err := os.Stat(bb); err != nil {
		t.Skip("static busybox missing (Debian busybox-static)")
	}
	root := fakeKernel(t)
	o := Options{KernelRoot: root, Busybox: bb, Herd: bb, Modules: []string{"c_dev"}, Files: map[string][]byte{"etc/extra": []byte("x")}}
	res, err := Build(o)
	require.NoError(t, err)
	assert.Equal(t, "6.1.0-99-test", res.KernelVersion)
	assert.Equal(t, "fake kernel image", string(res.Kernel))

	again, err := Build(o)
	require.NoError(t, err)
	assert.Equal(t, res.Initrd, again.Initrd, "same inputs, same bytes")

	m := unpack(t, res.Initrd)
	con := m["dev/console"]
	assert.Equal(t, fs.ModeDevice|fs.ModeCharDevice, con.Mode.Type())
	assert.Equal(t, [2]uint32{5, 1}, [2]uint32{con.Major, con.Minor})
	assert.Equal(t, DefaultInit, string(m["init"].Data))
	assert.Equal(t, fs.FileMode(0o755), m["init"].Mode.Perm())
	x, err := kmod.Parse(m["etc/herd/modules.idx"].Data)
	require.NoError(t, err)
	order, err := x.Order([]string{"c_dev"})
	require.NoError(t, err)
	var paths []string
	for _, o := range order {
		paths = append(paths, o.Path)
	}
	assert.Equal(t, []string{"kernel/base/a.ko", "kernel/mid/b.ko", "kernel/top/c-dev.ko"}, paths)
	assert.Equal(t, AlwaysModules, res.Missing, "the fake kernel has none of the always-loaded modules: listed, not refused")
	for _, p := range []string{"lib/modules/6.1.0-99-test/kernel/base/a.ko", "lib/modules/6.1.0-99-test/kernel/top/c-dev.ko", "bin/herd", "bin/busybox", "etc/herd/udhcpc.sh", "etc/extra"} {
		assert.Contains(t, m, p)
	}
	assert.NotContains(t, m, "lib/modules/6.1.0-99-test/kernel/top/d.ko", "only what was asked for")
	for _, a := range Applets {
		assert.Equal(t, "busybox", string(m["bin/"+a].Data), a)
	}

	dir := t.TempDir()
	require.NoError(t, res.WriteFiles(dir, "vmlinuz", "initrd.img"))
	b, err := os.ReadFile(filepath.Join(dir, "initrd.img"))
	require.NoError(t, err)
	assert.Equal(t, res.Initrd, b)
}

func TestBuildRefuses(t *testing.T) {
	root := fakeKernel(t)
	_, err := Build(Options{KernelRoot: root, Busybox: "/bin/busybox", Herd: "/bin/ls", Modules: []string{"a"}})
	assert.ErrorIs(t, err, ErrNotStatic, "a dynamic binary cannot run in the initramfs")
	_, err = Build(Options{KernelRoot: root, Busybox: "/bin/busybox", Modules: []string{"a"}})
	assert.ErrorContains(t, err, "no herd binary")
	_, err = Build(Options{KernelRoot: t.TempDir(), Herd: "/bin/busybox"})
	assert.ErrorContains(t, err, "boot/vmlinuz")
	_, err = Build(Options{KernelRoot: root, Busybox: "/bin/busybox", Herd: "/bin/busybox", Modules: []string{"missing"}})
	assert.ErrorIs(t, err, ErrModule)
}

func TestParseDepends(t *testing.T) {
	p, err := parseDepends("linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-56-cloud-amd64\n")
	require.NoError(t, err)
	assert.Equal(t, "linux-image-6.1.0-56-cloud-amd64", p)
	_, err = parseDepends("linux-image-cloud-amd64\n")
	assert.Error(t, err)
}

// TestBuildWithDebianKernel uses the real generic kernel package when it
// is in the cache (the e2e suite downloads it): the default drivers and
// their dependencies resolve, dependencies first, the index the agent
// reads parses, and the image stays small.
func TestBuildWithDebianKernel(t *testing.T) {
	debs, _ := filepath.Glob("/var/cache/herd/linux-image-*[0-9]-amd64_*_amd64.deb")
	if len(debs) == 0 {
		t.Skip("no Debian generic kernel package in /var/cache/herd (run herd initramfs build once)")
	}
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("dpkg missing")
	}
	root := t.TempDir()
	require.NoError(t, ExtractDeb(t.Context(), debs[len(debs)-1], root))
	res, err := Build(Options{KernelRoot: root, Herd: "/bin/busybox"})
	require.NoError(t, err)
	assert.Empty(t, res.Missing, "the generic kernel has every default driver")
	pos := map[string]int{}
	for i, m := range res.Modules {
		pos[m.Name] = i
	}
	for _, want := range append(DefaultModules, AlwaysModules...) {
		assert.Contains(t, pos, want)
	}
	for _, m := range res.Modules {
		for _, d := range m.Deps {
			assert.Less(t, pos[d], pos[m.Name], "%s needs %s first", m.Name, d)
		}
	}
	x, err := kmod.Parse(unpack(t, res.Initrd)[strings.TrimPrefix(ModuleIndex, "/")].Data)
	require.NoError(t, err)
	assert.Equal(t, []string{"crc32c_generic", "ext4", "loop", "nls_ascii", "nls_cp437", "nls_iso8859_1", "vfat", "xfs"}, x.Always())
	assert.Equal(t, []string{"e1000e"}, x.Match("pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00"), "QEMU's e1000e")
	assert.Equal(t, []string{"megaraid_sas"}, x.Match("pci:v00001000d00000060sv00001000sd00001013bc01sc04i00"), "QEMU's megasas")
	assert.Less(t, len(res.Initrd), 48<<20, "the server image stays small enough for a thousand machines")
}
