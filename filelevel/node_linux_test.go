package filelevel

import (
	"bytes"
	"context"
	"debug/elf"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/herd-cluster/herd/desc"
	"github.com/herd-cluster/herd/internal/testenv"
	"github.com/herd-cluster/herd/ring"
)

// needTools skips unless running as root with every tool installed.

// testKey keys the test sessions.
var testKey = bytes.Repeat([]byte("filelevel test key "), 2)

func needTools(t *testing.T, tools ...string) {
	t.Helper()
	testenv.NeedRoot(t, "loop devices, mkfs, mount", tools...)
}

// sparseFile creates a sparse file of size bytes, removed at the end.
func sparseFile(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(size))
	require.NoError(t, f.Close())
	return p
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// isStatic reports whether the ELF binary at p has no interpreter.
func isStatic(p string) bool {
	f, err := elf.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

// writeGoldenSystem builds a golden system tree: the test tree of
// makeGolden plus an fstab naming the golden's own filesystems, an
// extlinux configuration, and busybox as /bin/sh when it is installed
// (for hooks). It returns whether hooks can run in a chroot of it.
func writeGoldenSystem(t *testing.T, dir string) (shell bool) {
	t.Helper()
	makeGolden(t, dir)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "etc/fstab"), []byte(debianFstab), 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "boot/extlinux"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "boot/extlinux/extlinux.conf"),
		[]byte("DEFAULT linux\nLABEL linux\n  KERNEL /boot/vmlinuz\n  APPEND root=UUID=11111111-1111-4111-8111-111111111111 ro\n"), 0o644))
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return false
	}
	if !isStatic(bb) {
		return false // a dynamic busybox cannot run in the bare chroot
	}
	b, err := os.ReadFile(bb)
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "bin"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bin/busybox"), b, 0o755))
	require.NoError(t, os.Symlink("busybox", filepath.Join(dir, "bin/sh")))
	return true
}

const testDesc = `linux 200 fs=ext4 mount=/ boot
swap 16
linux fill fs=xfs mount=/var
`

// TestFileLevelSessionOverTCP runs a whole file-level session through a
// real chain on loopback: two nodes with disks of different sizes are
// partitioned for their size, filled, fixed up, and left unmounted.
func TestFileLevelSessionOverTCP(t *testing.T) {
	needTools(t, "losetup", "mkfs.ext4", "mkfs.xfs", "mkswap", "e2fsck", "xfs_repair", "blkid")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	golden := t.TempDir()
	shell := writeGoldenSystem(t, golden)
	var hooks []string
	if shell {
		hook := filepath.Join(t.TempDir(), "hook.sh")
		require.NoError(t, os.WriteFile(hook, []byte("#!/bin/sh\necho \"hooked $HERD_HOOK\" > /etc/hooked\ntest -d /proc/self\n"), 0o755))
		hooks = []string{hook}
	} else {
		t.Log("no static busybox: the hook part is not tested")
	}

	s, err := NewSender(ctx, testDesc, SendOptions{From: golden, Excludes: []string{"/tmp"}})
	require.NoError(t, err)
	assert.Equal(t, []string{"/", "/var"}, s.Header.Mounts)

	// The middle node's disk is too small for the desc: it fails alone,
	// keeps forwarding, and the node after it finishes.
	sizes := []int64{600 * desc.MiB, 100 * desc.MiB, 900 * desc.MiB}
	const small = 1
	var (
		addrs []string
		recvs []*Receiver
		imgs  []string
		logs  []*bytes.Buffer
		wg    sync.WaitGroup
		errs  = make([]error, len(sizes))
	)
	for i, size := range sizes {
		img := sparseFile(t, size)
		log := &bytes.Buffer{}
		r, err := NewReceiver(ctx, ReceiverOptions{Disk: img, Hooks: hooks, Log: log})
		require.NoError(t, err)
		t.Cleanup(func() { assert.NoError(t, r.Close()) })
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		t.Cleanup(func() { l.Close() })
		addrs = append(addrs, l.Addr().String())
		recvs, imgs, logs = append(recvs, r), append(imgs, img), append(logs, log)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = ring.Receive(ctx, l, ring.ReceiverConfig{Key: testKey, Open: r.Open})
		}()
	}
	rep, err := ring.Send(ctx, ring.SenderConfig{Key: testKey, Nodes: addrs, Items: s.Items()})
	require.NoError(t, err)
	wg.Wait()
	for i := range sizes {
		if i == small {
			require.Error(t, errs[i])
			continue
		}
		require.NoError(t, errs[i], "node %d log:\n%s", i, logs[i])
	}
	require.False(t, rep.OK())
	for i, n := range rep.Nodes {
		if i == small {
			assert.Equal(t, ring.StateFailed, n.State)
			assert.Contains(t, n.Err, "does not fit", "the reason reaches the source")
			continue
		}
		assert.Equal(t, ring.StateDone, n.State, "node %d: %s", i, n.Err)
		for _, it := range n.Items {
			assert.True(t, it.Verified, "node %d item %s", i, it.Dest)
		}
	}
	st := s.Stats()
	assert.Equal(t, 1, st["/"].Excluded, "/tmp sent empty")
	assert.Equal(t, 1, st["/"].Skipped, "/var travels in its own stream")
	assert.Positive(t, st["/var"].Bytes)

	for i, r := range recvs {
		if i == small {
			assert.False(t, r.Result().Done)
			continue
		}
		res := r.Result()
		require.True(t, res.Done, "node %d", i)
		checkNode(t, imgs[i], sizes[i], res, golden, shell)
	}
}

// checkNode checks one node's disk: the table is the desc laid out for
// the disk, every filesystem passes fsck and has the UUID the node
// reported, the files are the golden's, fstab and extlinux.conf name the
// new filesystems, and nothing is left mounted.
func checkNode(t *testing.T, img string, size int64, res Result, golden string, shell bool) {
	t.Helper()
	f, err := os.Open(img)
	require.NoError(t, err)
	got, err := desc.ReadTable(f, size)
	f.Close()
	require.NoError(t, err)
	d, err := desc.Parse(testDesc)
	require.NoError(t, err)
	want, err := d.Layout(size, 512)
	require.NoError(t, err)
	require.Len(t, got.Parts, len(want.Parts))
	for i := range want.Parts {
		assert.Equal(t, want.Parts[i].Start, got.Parts[i].Start, "partition %d start", i+1)
		assert.Equal(t, want.Parts[i].Sectors, got.Parts[i].Sectors, "partition %d size", i+1)
		assert.Equal(t, want.Parts[i].Type.MBR, got.Parts[i].Type.MBR, "partition %d type", i+1)
	}
	mountsOf, err := os.ReadFile("/proc/self/mountinfo")
	require.NoError(t, err)
	assert.NotContains(t, string(mountsOf), "herd-files-", "the node left a staging mount")

	stage := t.TempDir()
	uuids := map[string]string{}
	for i, pp := range got.Parts {
		fs := res.FS[i]
		dev := testenv.AttachLoop(t, img, "--read-only", "--offset", itoa(pp.Offset(512)), "--sizelimit", itoa(pp.Bytes(512)))
		out, err := exec.Command("blkid", "-p", "-o", "value", "-s", "UUID", dev).Output()
		require.NoError(t, err)
		assert.Equal(t, fs.UUID, strings.TrimSpace(string(out)), "UUID of partition %d", i+1)
		uuids[fs.UUID] = fs.FS
		switch fs.FS {
		case "ext4":
			out, err := exec.Command("e2fsck", "-n", "-f", dev).CombinedOutput()
			require.NoError(t, err, "e2fsck: %s", out)
		case "xfs":
			out, err := exec.Command("xfs_repair", "-n", dev).CombinedOutput()
			require.NoError(t, err, "xfs_repair: %s", out)
		}
		if fs.Mount == "" {
			continue
		}
		dir := filepath.Join(stage, fs.Mount)
		require.NoError(t, os.MkdirAll(dir, 0o755))
		opts := ""
		if fs.FS == "xfs" {
			opts = "norecovery"
		}
		require.NoError(t, unix.Mount(dev, dir, fs.FS, unix.MS_RDONLY, opts))
		t.Cleanup(func() { assert.NoError(t, unix.Unmount(dir, 0)) })
	}
	skip := func(p string) bool {
		return strings.HasPrefix(p, "/tmp/") || p == "/lost+found" || p == "/etc/fstab" ||
			p == "/boot/extlinux/extlinux.conf" || p == "/boot/extlinux/ldlinux.sys" ||
			p == "/boot/extlinux/ldlinux.c32" || p == "/etc/hooked"
	}
	assert.Equal(t, treeList(t, golden, skip), treeList(t, stage, skip), "file trees")

	fstab, err := os.ReadFile(filepath.Join(stage, "etc/fstab"))
	require.NoError(t, err)
	ents, err := ParseFstab(fstab)
	require.NoError(t, err)
	named := 0
	for _, e := range ents {
		if u, ok := strings.CutPrefix(e.Spec, "UUID="); ok {
			assert.Contains(t, uuids, u, "fstab line %d names a filesystem of this node", e.Line)
			named++
		}
	}
	assert.Equal(t, 3, named, "/, /var and swap")
	conf, err := os.ReadFile(filepath.Join(stage, "boot/extlinux/extlinux.conf"))
	require.NoError(t, err)
	assert.Contains(t, string(conf), "root=UUID="+res.FS[0].UUID+" ro")
	if _, err := exec.LookPath("extlinux"); err == nil {
		assert.Equal(t, "/boot/extlinux", res.Bootloader)
		assert.FileExists(t, filepath.Join(stage, "boot/extlinux/ldlinux.sys"))
		code, err := os.ReadFile("/usr/lib/EXTLINUX/mbr.bin")
		require.NoError(t, err)
		head := make([]byte, 440)
		f, err := os.Open(img)
		require.NoError(t, err)
		_, err = f.ReadAt(head, 0)
		f.Close()
		require.NoError(t, err)
		assert.True(t, bytes.Equal(code[:min(440, len(code))], head[:min(440, len(code))]), "MBR boot code")
	}
	if shell {
		b, err := os.ReadFile(filepath.Join(stage, "etc/hooked"))
		require.NoError(t, err, "the hook ran in the new system")
		assert.Equal(t, "hooked hook.sh\n", string(b))
		assert.NoFileExists(t, filepath.Join(stage, "herd-hook-"+itoa(int64(os.Getpid()))))
	}
}

// TestReceiverTooSmallDiskFailsCleanly: a disk too small for the desc
// fails at the header, the filesystem items report it, and nothing is
// written or left mounted.
func TestReceiverTooSmallDiskFailsCleanly(t *testing.T) {
	needTools(t, "losetup")
	img := sparseFile(t, 100*desc.MiB)
	r, err := NewReceiver(context.Background(), ReceiverOptions{Disk: img})
	require.NoError(t, err)
	defer r.Close()
	h := Header{Version: HeaderVersion, Desc: testDesc, Mounts: []string{"/", "/var"}}
	hb, err := h.Encode()
	require.NoError(t, err)
	hs, err := r.Open(ring.Item{Name: HeaderItemName, Dest: "header", Size: int64(len(hb))})
	require.NoError(t, err)
	root, err := r.Open(ring.Item{Name: "files:/", Dest: "/", Size: -1})
	require.NoError(t, err)
	_, err = r.Open(ring.Item{Name: "files:/var", Dest: "/var", Size: -1})
	require.NoError(t, err)
	_, err = hs.WriteAt(hb, 0)
	require.NoError(t, err)
	err = hs.Sync()
	require.ErrorIs(t, err, desc.ErrTooSmall)
	_, err = root.WriteAt([]byte("x"), 0)
	require.ErrorIs(t, err, ErrNotPrepared)
	assert.Contains(t, err.Error(), "does not fit")
	require.NoError(t, root.Close())
	require.NoError(t, r.Close())
	b, err := os.ReadFile(img)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(b[:4096], make([]byte, 4096)), "nothing written")

	// A session that is not file-level is refused at its first item.
	r2, err := NewReceiver(context.Background(), ReceiverOptions{Disk: img})
	require.NoError(t, err)
	defer r2.Close()
	_, err = r2.Open(ring.Item{Name: "disk.img", Dest: "/dev/sda"})
	require.ErrorIs(t, err, ErrHeader)
}

// TestKeepUUIDsOverTCP: with KeepUUIDs the node's filesystems get the
// golden's UUIDs, so fstab needs no change.
func TestKeepUUIDsOverTCP(t *testing.T) {
	needTools(t, "losetup", "mkfs.ext4", "mkfs.xfs", "mkswap", "blkid")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	golden := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(golden, "etc"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(golden, "var"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(golden, "etc/fstab"), []byte(debianFstab), 0o644))
	s, err := NewSender(ctx, testDesc, SendOptions{From: golden, KeepUUIDs: true})
	require.NoError(t, err)

	img := sparseFile(t, 600*desc.MiB)
	r, err := NewReceiver(ctx, ReceiverOptions{Disk: img, NoBootloader: true, Log: tlog{t}})
	require.NoError(t, err)
	defer r.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	done := make(chan error, 1)
	go func() {
		_, err := ring.Receive(ctx, l, ring.ReceiverConfig{Key: testKey, Open: r.Open})
		done <- err
	}()
	rep, err := ring.Send(ctx, ring.SenderConfig{Key: testKey, Nodes: []string{l.Addr().String()}, Items: s.Items()})
	require.NoError(t, err)
	require.NoError(t, <-done)
	require.True(t, rep.OK())
	res := r.Result()
	require.True(t, res.Done)
	assert.Empty(t, res.Changes, "fstab already names the filesystems")
	want := []string{"11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222", "33333333-3333-4333-8333-333333333333"}
	for i, pp := range res.Plan.Parts {
		dev := testenv.AttachLoop(t, img, "--read-only", "--offset", itoa(pp.Offset(512)), "--sizelimit", itoa(pp.Bytes(512)))
		out, err := exec.Command("blkid", "-p", "-o", "value", "-s", "UUID", dev).Output()
		require.NoError(t, err)
		assert.Equal(t, want[i], strings.TrimSpace(string(out)), "partition %d", i+1)
	}
}

// tlog writes to the test log with the time.
type tlog struct{ t *testing.T }

func (l tlog) Write(b []byte) (int, error) {
	l.t.Logf("%s %s", time.Now().Format("15:04:05.000"), strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// TestGPTWithESPOverTCP: a GPT desc with an EFI system partition (vfat)
// mounted at /boot/efi inside /: the ESP is mounted after /, and files
// whose owner or mode vfat cannot hold do not fail the node.
func TestGPTWithESPOverTCP(t *testing.T) {
	needTools(t, "losetup", "mkfs.ext4", "mkfs.vfat", "blkid")
	needFilesystem(t, "vfat")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	golden := t.TempDir()
	efi := filepath.Join(golden, "boot/efi/EFI/debian")
	require.NoError(t, os.MkdirAll(efi, 0o700))
	require.NoError(t, os.MkdirAll(filepath.Join(golden, "etc"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(efi, "grubx64.efi"), bytes.Repeat([]byte("EFI"), 1000), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(efi, "grub.cfg"), []byte("search.fs_uuid 11111111-1111-4111-8111-111111111111 root\n"), 0o600))
	require.NoError(t, os.Chown(filepath.Join(efi, "grub.cfg"), 1000, 1000))
	require.NoError(t, os.WriteFile(filepath.Join(golden, "etc/fstab"), []byte("UUID=11111111-1111-4111-8111-111111111111 / ext4 defaults 0 1\nUUID=ABCD-1234 /boot/efi vfat umask=0077 0 1\n"), 0o644))
	const gptDesc = "table gpt\nesp 64M mount=/boot/efi\nlinux fill fs=ext4 mount=/ boot\n"
	s, err := NewSender(ctx, gptDesc, SendOptions{From: golden})
	require.NoError(t, err)
	assert.Equal(t, []string{"/", "/boot/efi"}, s.Header.Mounts)

	img := sparseFile(t, 300*desc.MiB)
	r, err := NewReceiver(ctx, ReceiverOptions{Disk: img, Log: tlog{t}})
	require.NoError(t, err)
	defer r.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	done := make(chan error, 1)
	go func() {
		_, err := ring.Receive(ctx, l, ring.ReceiverConfig{Key: testKey, Open: r.Open})
		done <- err
	}()
	rep, err := ring.Send(ctx, ring.SenderConfig{Key: testKey, Nodes: []string{l.Addr().String()}, Items: s.Items()})
	require.NoError(t, err)
	require.NoError(t, <-done)
	require.True(t, rep.OK(), "%+v", rep.Nodes)
	res := r.Result()
	require.True(t, res.Done)
	require.Equal(t, desc.GPT, res.Plan.Table)
	esp := res.FS[0]
	require.Equal(t, "vfat", esp.FS)
	assert.Regexp(t, `^[0-9A-F]{4}-[0-9A-F]{4}$`, esp.UUID)

	dev := testenv.AttachLoop(t, img, "--read-only", "--offset", itoa(res.Plan.Parts[0].Offset(512)), "--sizelimit", itoa(res.Plan.Parts[0].Bytes(512)))
	out, err := exec.Command("blkid", "-p", "-o", "value", "-s", "UUID", dev).Output()
	require.NoError(t, err)
	assert.Equal(t, esp.UUID, strings.TrimSpace(string(out)))
	mnt := t.TempDir()
	require.NoError(t, unix.Mount(dev, mnt, "vfat", unix.MS_RDONLY, ""))
	defer unix.Unmount(mnt, 0)
	b, err := os.ReadFile(filepath.Join(mnt, "EFI/debian/grubx64.efi"))
	require.NoError(t, err)
	assert.Equal(t, bytes.Repeat([]byte("EFI"), 1000), b)
	var fstabChanged bool
	for _, c := range res.Changes {
		if c.File == "/etc/fstab" && c.New == "UUID="+esp.UUID {
			fstabChanged = true
		}
	}
	assert.True(t, fstabChanged, "the ESP's fstab entry names its new volume id: %v", res.Changes)
	assert.Equal(t, "", res.Bootloader, "no extlinux.conf: no boot loader installed")
}

// needFilesystem skips unless the kernel can mount fs (after modprobe).
func needFilesystem(t *testing.T, fs string) {
	t.Helper()
	has := func() bool {
		b, _ := os.ReadFile("/proc/filesystems")
		for _, l := range strings.Split(string(b), "\n") {
			if strings.TrimSpace(strings.TrimPrefix(l, "nodev")) == fs {
				return true
			}
		}
		return false
	}
	if !has() {
		_ = exec.Command("modprobe", fs).Run()
		if !has() {
			t.Skipf("this kernel cannot mount %s (not in /proc/filesystems, modprobe %s failed): skipping", fs, fs)
		}
	}
}

// runOne runs a session from s to one receiver on img and returns what
// the receiver did.
func runOne(t *testing.T, ctx context.Context, s *Sender, o ReceiverOptions) Result {
	t.Helper()
	o.Log = tlog{t}
	r, err := NewReceiver(ctx, o)
	require.NoError(t, err)
	defer r.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	done := make(chan error, 1)
	go func() {
		_, err := ring.Receive(ctx, l, ring.ReceiverConfig{Key: testKey, Open: r.Open})
		done <- err
	}()
	rep, err := ring.Send(ctx, ring.SenderConfig{Key: testKey, Nodes: []string{l.Addr().String()}, Items: s.Items()})
	require.NoError(t, err)
	require.NoError(t, <-done)
	require.True(t, rep.OK(), "%+v", rep.Nodes)
	res := r.Result()
	require.True(t, res.Done)
	return res
}

// TestGPTSeparateBootOverTCP: GPT with a separate /boot holding the
// extlinux configuration: /boot is mounted inside /, extlinux goes onto
// /boot, and the GPT flavour of the MBR boot code is written.
func TestGPTSeparateBootOverTCP(t *testing.T) {
	needTools(t, "losetup", "mkfs.ext4", "blkid", "extlinux")
	gptmbr, err := os.ReadFile("/usr/lib/EXTLINUX/gptmbr.bin")
	if err != nil {
		t.Skip("no /usr/lib/EXTLINUX/gptmbr.bin (Debian package syslinux-common): skipping")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	golden := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(golden, "boot/extlinux"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(golden, "etc"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(golden, "boot/extlinux/extlinux.conf"), []byte("DEFAULT l\nLABEL l\n  KERNEL /vmlinuz\n  APPEND root=/dev/sda2 ro\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(golden, "etc/fstab"), []byte("/dev/sda2 / ext4 defaults 0 1\n/dev/sda1 /boot ext4 defaults 0 2\n"), 0o644))
	s, err := NewSender(ctx, "table gpt\nlinux 64M fs=ext4 mount=/boot boot\nlinux fill fs=ext4 mount=/\n", SendOptions{From: golden})
	require.NoError(t, err)
	assert.Equal(t, []string{"/", "/boot"}, s.Header.Mounts)

	img := sparseFile(t, 300*desc.MiB)
	res := runOne(t, ctx, s, ReceiverOptions{Disk: img})
	require.Equal(t, desc.GPT, res.Plan.Table)
	assert.Equal(t, "/boot/extlinux", res.Bootloader)
	head := make([]byte, 440)
	f, err := os.Open(img)
	require.NoError(t, err)
	_, err = f.ReadAt(head, 0)
	f.Close()
	require.NoError(t, err)
	assert.True(t, bytes.Equal(gptmbr[:440], head), "gptmbr.bin in the protective MBR")

	boot := res.Plan.Parts[0]
	mnt := t.TempDir()
	require.NoError(t, unix.Mount(testenv.AttachLoop(t, img, "--read-only", "--offset", itoa(boot.Offset(512)), "--sizelimit", itoa(boot.Bytes(512))), mnt, "ext4", unix.MS_RDONLY, ""))
	defer unix.Unmount(mnt, 0)
	assert.FileExists(t, filepath.Join(mnt, "extlinux/ldlinux.sys"))
	conf, err := os.ReadFile(filepath.Join(mnt, "extlinux/extlinux.conf"))
	require.NoError(t, err)
	assert.Contains(t, string(conf), "APPEND root=UUID="+res.FS[1].UUID+" ro\n")
}

// drain reads a whole source.
func drain(t *testing.T, src ring.Source) []byte {
	t.Helper()
	var b bytes.Buffer
	p := make([]byte, 1<<20)
	for {
		_, n, err := src.ReadChunk(p)
		b.Write(p[:n])
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
	}
	require.NoError(t, src.Close())
	return b.Bytes()
}

// TestReceiverVerifiesUnpackedFiles drives a receiver item by item: it
// checks every unpacked file against the golden's digests (read back
// from the disk), and a file that differs fails the node with its name.
func TestReceiverVerifiesUnpackedFiles(t *testing.T) {
	needTools(t, "losetup", "mkfs.ext4", "mkfs.xfs", "mkswap")
	ctx := context.Background()
	golden := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(golden, "etc"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(golden, "var/lib"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(golden, "etc/hostname"), []byte("golden\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(golden, "var/lib/data"), bytes.Repeat([]byte("d"), 100000), 0o644))
	s, err := NewSender(ctx, testDesc, SendOptions{From: golden})
	require.NoError(t, err)
	var items []ring.Item
	var data [][]byte
	for _, it := range s.Items() {
		src, err := it.Open()
		require.NoError(t, err)
		items = append(items, it.Item)
		data = append(data, drain(t, src))
	}
	require.Len(t, items, 4)
	list := string(data[3])
	assert.Equal(t, 2, strings.Count(list, "\n"), "two files: %s", list)
	assert.Contains(t, list, `"/var" "lib/data"`)

	run := func(list []byte) (Result, error) {
		img := sparseFile(t, 600*desc.MiB)
		r, err := NewReceiver(ctx, ReceiverOptions{Disk: img, DropCache: true})
		require.NoError(t, err)
		defer func() { assert.NoError(t, r.Close()) }()
		sinks := make([]ring.Sink, len(items))
		for i, it := range items {
			sinks[i], err = r.Open(it)
			require.NoError(t, err)
		}
		for i, sk := range sinks {
			b := data[i]
			if i == 3 {
				b = list
			}
			for off := 0; off < len(b); off += 100 { // small writes split lines
				_, err := sk.WriteAt(b[off:min(off+100, len(b))], int64(off))
				require.NoError(t, err)
			}
			if err := sk.Sync(); err != nil {
				require.Equal(t, 3, i, "only the check fails: %v", err)
				return r.Result(), err
			}
		}
		return r.Result(), nil
	}
	res, err := run(data[3])
	require.NoError(t, err)
	assert.Equal(t, 2, res.Verified)
	assert.True(t, res.FromDisk)
	assert.True(t, res.Done)

	// The golden's data file had other contents: the node fails, naming it.
	bad := []byte(list)
	i := strings.Index(list, `"/var" "lib/data"`)
	start := strings.LastIndex(list[:i], "\n") + 1
	if bad[start] == '0' {
		bad[start] = '1'
	} else {
		bad[start] = '0'
	}
	res, err = run(bad)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "1 of 2 files differ from the golden: /var/lib/data: contents differ")
	assert.False(t, res.Done)
}

// TestHookFailureFailsNode: a hook that fails fails its node with the
// hook's name, exit status and last line, and leaves nothing mounted.
func TestHookFailureFailsNode(t *testing.T) {
	needTools(t, "losetup", "mkfs.ext4", "chroot")
	golden := t.TempDir()
	if !writeGoldenSystem(t, golden) {
		t.Skip("no static busybox to run a hook in the new system: skipping")
	}
	hook := filepath.Join(t.TempDir(), "regen-initrd")
	require.NoError(t, os.WriteFile(hook, []byte("#!/bin/sh\necho 'no initrd tool here' >&2\nexit 3\n"), 0o755))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := NewSender(ctx, "linux fill mount=/\n", SendOptions{From: golden})
	require.NoError(t, err)
	img := sparseFile(t, 300*desc.MiB)
	r, err := NewReceiver(ctx, ReceiverOptions{Disk: img, Hooks: []string{hook}, NoBootloader: true})
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	done := make(chan error, 1)
	go func() {
		_, err := ring.Receive(ctx, l, ring.ReceiverConfig{Key: testKey, Open: r.Open})
		done <- err
	}()
	rep, err := ring.Send(ctx, ring.SenderConfig{Key: testKey, Nodes: []string{l.Addr().String()}, Items: s.Items()})
	require.NoError(t, err)
	require.Error(t, <-done)
	require.False(t, rep.OK())
	assert.Contains(t, rep.Nodes[0].Err, "regen-initrd in a chroot of the new system: exit status 3: no initrd tool here")
	assert.False(t, r.Result().Done)
	require.NoError(t, r.Close())
	b, err := os.ReadFile("/proc/self/mountinfo")
	require.NoError(t, err)
	assert.NotContains(t, string(b), "herd-files-", "Close unmounted the new system")
}
