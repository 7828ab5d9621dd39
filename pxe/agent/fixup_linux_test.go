package agent

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/desc"
	"github.com/herd-cluster/herd/pxe/httpboot"
)

// chrootable adds a static busybox as /bin/sh to root, or skips.
func chrootable(t *testing.T, root string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root")
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("needs a static busybox (Debian busybox-static)")
	}
	b, err := os.ReadFile(bb)
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Join(root, "bin"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "bin/busybox"), b, 0o755))
	for _, l := range []string{"sh", "cat", "sleep", "env"} {
		require.NoError(t, os.Symlink("busybox", filepath.Join(root, "bin", l)))
	}
}

func TestRunHookInAChroot(t *testing.T) {
	root := t.TempDir()
	chrootable(t, root)
	require.NoError(t, os.MkdirAll(filepath.Join(root, "etc"), 0o755))
	env := HookEnv("node07", "52:54:00:00:00:07", "10.0.0.7")

	script := "echo \"$HERD_NAME $HERD_MAC $HERD_IP $(pwd)\" > /etc/stamp\necho to stdout\necho to stderr >&2\n"
	lines, err := RunHook(context.Background(), root, httpboot.Hook{Name: "stamp.sh", Script: []byte(script)}, env, time.Minute)
	require.NoError(t, err)
	assert.Equal(t, []string{"to stdout", "to stderr"}, lines)
	assert.Equal(t, "node07 52:54:00:00:00:07 10.0.0.7 /\n", readString(t, filepath.Join(root, "etc/stamp")), "the hook ran in the chroot with its environment")

	// A hook reading its standard input reads nothing (not its own
	// script); its copy and the /run made for it are gone afterwards.
	lines, err = RunHook(context.Background(), root, httpboot.Hook{Name: "reads.sh", Script: []byte("cat\necho after \"$0\"\n")}, env, time.Minute)
	require.NoError(t, err)
	assert.Len(t, lines, 1)
	assert.Regexp(t, `^after /run/herd-hook-\d+-reads\.sh$`, lines[0])
	_, err = os.Lstat(filepath.Join(root, "run"))
	assert.ErrorIs(t, err, os.ErrNotExist)
	require.NoError(t, os.Mkdir(filepath.Join(root, "run"), 0o755))
	_, err = RunHook(context.Background(), root, httpboot.Hook{Name: "a b.sh", Script: []byte("true")}, env, time.Minute)
	require.NoError(t, err)
	left, err := os.ReadDir(filepath.Join(root, "run"))
	require.NoError(t, err)
	assert.Empty(t, left, "the clone's own /run stays, without the hook")

	var many strings.Builder
	for i := range 100 {
		many.WriteString("echo line" + strings.Repeat("x", i%3) + "-" + string(rune('a'+i%26)) + "\n")
	}
	many.WriteString("echo " + strings.Repeat("y", 500) + "\necho last words; exit 3\n")
	lines, err = RunHook(context.Background(), root, httpboot.Hook{Name: "fails.sh", Script: []byte(many.String())}, env, time.Minute)
	require.Error(t, err)
	assert.Len(t, lines, HookTailLines, "the output's tail is kept")
	assert.Equal(t, "last words", lines[len(lines)-1])
	assert.Len(t, lines[len(lines)-2], HookLine, "a long line is cut")
	assert.Contains(t, err.Error(), "hook fails.sh: exit status 3: ")
	assert.True(t, strings.HasSuffix(err.Error(), " | last words"), "the reason ends with the last lines: %v", err)
	assert.Equal(t, HookReasonLines-1, strings.Count(err.Error(), " | "))

	undo, err := BindSystem(root)
	require.NoError(t, err)
	defer undo()
	start := time.Now()
	_, err = RunHook(context.Background(), root, httpboot.Hook{Name: "hangs.sh", Script: []byte("echo waiting\nsleep 1000 &\nsleep 1000\n")}, env, 500*time.Millisecond)
	require.Error(t, err)
	assert.Less(t, time.Since(start), 10*time.Second, "killed at its time limit, children too")
	assert.Equal(t, "hook hangs.sh: did not finish within 500ms, killed: waiting", err.Error())

	_, err = RunHook(context.Background(), t.TempDir(), httpboot.Hook{Name: "x.sh", Script: []byte("true")}, env, time.Minute)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "hook x.sh: the clone has no /bin/sh")
}

// ext4Disk makes an ext4 file system holding tree (name → contents) on a
// loop device of a new image, or skips. The loop device is detached at
// the end.
func ext4Disk(t *testing.T, tree map[string]string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loop devices need root")
	}
	for _, tool := range []string{"mkfs.ext4", "losetup"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skip("needs " + tool)
		}
	}
	img := filepath.Join(t.TempDir(), "disk.img")
	require.NoError(t, os.WriteFile(img, nil, 0o600))
	require.NoError(t, os.Truncate(img, 32<<20))
	src := t.TempDir()
	for name, text := range tree {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(src, name)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(src, name), []byte(text), 0o644))
	}
	out, err := exec.Command("mkfs.ext4", "-q", "-d", src, img).CombinedOutput()
	require.NoError(t, err, "%s", out)
	out, err = exec.Command("losetup", "--find", "--show", img).Output()
	require.NoError(t, err)
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", loop).Run() })
	return loop
}

// debugfsCat reads file from the ext4 file system on dev, unmounted.
func debugfsCat(t *testing.T, dev, file string) (string, bool) {
	t.Helper()
	cmd := exec.Command("debugfs", "-R", "cat "+file, dev)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "%s", stderr.String())
	return string(out), !strings.Contains(stderr.String(), "File not found")
}

func TestFixupDiskMountsTheCloneAndFixesIt(t *testing.T) {
	if _, err := exec.LookPath("debugfs"); err != nil {
		t.Skip("needs debugfs")
	}
	loop := ext4Disk(t, map[string]string{
		"etc/os-release":               "ID=golden\n",
		"etc/hostname":                 "golden\n",
		"etc/machine-id":               "0123456789abcdef0123456789abcdef\n",
		"etc/ssh/ssh_host_ed25519_key": "private",
	})
	var console bytes.Buffer
	a := &Agent{Console: &console, TempDir: t.TempDir()}
	a.defaults()
	job := FixupJob{Orders: httpboot.Fixups{Identity: true}, Name: "node07", MAC: "52:54:00:00:00:07", IP: "10.0.0.7"}
	summary, err := a.fixupDisk(context.Background(), loop, job)
	require.NoError(t, err, "console:\n%s", console.String())
	assert.Equal(t, "identity: hostname node07, machine-id emptied, 1 ssh host key files removed, no ssh-keygen in the clone: host keys made at its first boot", summary)
	assert.Contains(t, console.String(), "the clone's root file system is "+filepath.Base(loop)+" (ext4)")

	// Unmounted (debugfs reads the device itself) and written.
	mounts, err := os.ReadFile("/proc/self/mounts")
	require.NoError(t, err)
	assert.NotContains(t, string(mounts), loop+" ", "the clone is unmounted")
	host, _ := debugfsCat(t, loop, "/etc/hostname")
	assert.Equal(t, "node07\n", host)
	id, ok := debugfsCat(t, loop, "/etc/machine-id")
	assert.True(t, ok)
	assert.Equal(t, "", id)
	_, ok = debugfsCat(t, loop, "/etc/ssh/ssh_host_ed25519_key")
	assert.False(t, ok)
	left, err := os.ReadDir(a.TempDir)
	require.NoError(t, err)
	assert.Empty(t, left, "the mount point is removed")
}

func TestFixupDiskFindsNoRoot(t *testing.T) {
	loop := ext4Disk(t, map[string]string{"data/file": "not a system\n"})
	a := &Agent{TempDir: t.TempDir()}
	a.defaults()
	_, err := a.fixupDisk(context.Background(), loop, FixupJob{Orders: httpboot.Fixups{Identity: true}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no root file system found on "+loop)
	assert.Contains(t, err.Error(), "(ext4): no /etc/os-release nor /etc/fstab")

	// Identity by default (not asked for explicitly): a data disk is
	// left as it is, and the summary says why.
	done, err := a.fixupDisk(context.Background(), loop, FixupJob{Orders: httpboot.Fixups{Identity: true, IdentityIfRoot: true}})
	require.NoError(t, err)
	assert.Contains(t, done, "identity skipped: no root file system found on "+loop)
	got, _ := debugfsCat(t, loop, "/data/file")
	assert.Equal(t, "not a system\n", got, "the disk is untouched")
	// With a hook there is nothing to run it in: that fails.
	_, err = a.fixupDisk(context.Background(), loop, FixupJob{Orders: httpboot.Fixups{Identity: true, IdentityIfRoot: true,
		Hooks: []httpboot.Hook{{Name: "h.sh", Script: []byte("true\n")}}}})
	require.Error(t, err)
}

func TestFixupRootRegeneratesHostKeysAndRunsHooks(t *testing.T) {
	root := goldenRoot(t)
	chrootable(t, root)
	// A stand-in ssh-keygen: what it would make, in the chroot.
	require.NoError(t, os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "usr/bin/ssh-keygen"), []byte("#!/bin/sh\n[ \"$1\" = -A ] || exit 9\necho new > /etc/ssh/ssh_host_ed25519_key\n"), 0o755))
	var console bytes.Buffer
	a := &Agent{Console: &console, TempDir: t.TempDir()}
	a.defaults()
	job := FixupJob{Orders: httpboot.Fixups{Identity: true, Hooks: []httpboot.Hook{
		{Name: "one.sh", Script: []byte("echo $HERD_NAME > /etc/one; ls /proc/self >/dev/null && echo proc ok")},
		{Name: "two.sh", Script: []byte("cat /etc/one")},
	}}, Name: "node07", MAC: "52:54:00:00:00:07", IP: "10.0.0.7"}
	summary, err := a.fixupRoot(context.Background(), root, job)
	require.NoError(t, err, "console:\n%s", console.String())
	assert.Equal(t, "identity: hostname node07, /etc/hosts 127.0.1.1 node07, machine-id emptied, dbus machine-id removed, 3 ssh host key files removed, ssh host keys regenerated; hooks ran: one.sh, two.sh", summary)
	assert.Equal(t, "new\n", readString(t, filepath.Join(root, "etc/ssh/ssh_host_ed25519_key")))
	assert.Contains(t, console.String(), "herd: hook one.sh: proc ok\n", "the hooks see /proc")
	assert.Contains(t, console.String(), "herd: hook two.sh: node07\n", "hooks run in order, in the same clone")
	for _, d := range []string{"proc", "sys", "dev"} {
		_, err := os.Lstat(filepath.Join(root, d))
		assert.ErrorIs(t, err, os.ErrNotExist, "/%s made for the chroot is gone", d)
	}

	// A failing hook stops the fix-ups with its reason.
	job.Orders.Hooks = []httpboot.Hook{{Name: "bad.sh", Script: []byte("echo cannot configure; exit 4")}, {Name: "never.sh", Script: []byte("touch /etc/never")}}
	_, err = a.fixupRoot(context.Background(), root, job)
	require.Error(t, err)
	assert.Equal(t, "hook bad.sh: exit status 4: cannot configure", err.Error())
	_, err = os.Lstat(filepath.Join(root, "etc/never"))
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestListPartitions(t *testing.T) {
	sys := t.TempDir()
	for _, p := range []struct{ name, n string }{{"nvme0n1p10", "10"}, {"nvme0n1p2", "2"}, {"nvme0n1p1", "1"}} {
		require.NoError(t, os.MkdirAll(filepath.Join(sys, "nvme0n1", p.name), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(sys, "nvme0n1", p.name, "partition"), []byte(p.n+"\n"), 0o644))
	}
	require.NoError(t, os.MkdirAll(filepath.Join(sys, "nvme0n1", "queue"), 0o755))
	assert.Equal(t, []string{"nvme0n1p1", "nvme0n1p2", "nvme0n1p10"}, listPartitions(sys, "nvme0n1"))
	assert.Empty(t, listPartitions(sys, "vda"))
}

func TestMountCloneByTheDescsRootUUID(t *testing.T) {
	loop := ext4Disk(t, map[string]string{"etc/fstab": "UUID=x / ext4 defaults 0 1\n"})
	f, err := os.Open(loop)
	require.NoError(t, err)
	_, _, uuid := desc.ProbeFS(f)
	f.Close()
	require.NotEmpty(t, uuid)
	for _, c := range []struct{ uuid, said string }{
		{uuid, ""},
		{"00000000-0000-0000-0000-000000000000", "no single partition of " + loop + " holds the desc's root file system 00000000-0000-0000-0000-000000000000"},
	} {
		var said []string
		root, unmount, err := MountClone(context.Background(), loop, t.TempDir(), c.uuid, func(f string, a ...any) { said = append(said, fmt.Sprintf(f, a...)) })
		require.NoError(t, err)
		assert.Equal(t, "UUID=x / ext4 defaults 0 1\n", readString(t, filepath.Join(root, "etc/fstab")))
		require.NoError(t, unmount())
		if c.said != "" {
			assert.Contains(t, strings.Join(said, "\n"), c.said)
		} else {
			assert.Contains(t, said, "the desc's root file system "+uuid+" is "+filepath.Base(loop), "found by its UUID")
		}
	}
}
