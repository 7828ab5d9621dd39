package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/herd-cluster/herd/desc"
	"github.com/herd-cluster/herd/pxe/httpboot"
)

// DefaultHookTimeout bounds a hook when the server sets no limit.
const DefaultHookTimeout = 5 * time.Minute

// Hook output kept: HookTailLines lines of HookLine bytes go to the
// console (and the agent's log); the last HookReasonLines of them make
// a failed hook's reason.
const (
	HookTailLines   = 40
	HookLine        = 200
	HookReasonLines = 5
)

// HookEnv returns the environment a hook runs with.
func HookEnv(name, mac, ip string) []string {
	return []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root",
		"HERD_NAME=" + name,
		"HERD_MAC=" + mac,
		"HERD_IP=" + ip,
	}
}

// RunHook runs h's script in a chroot of root: copied to
// /run/herd-hook-PID-NAME in the clone (made 0700, removed afterwards;
// /run is made for it, and removed, when the clone lacks it), run as
// /bin/sh FILE with standard input from /dev/null, env as its
// environment and / as its working folder, in a process group of its
// own that is killed when timeout (DefaultHookTimeout if 0) passes or
// ctx ends. It returns the last HookTailLines lines of its output
// (standard output and error) and, unless it exited 0, an error that
// names the hook and holds the last HookReasonLines lines. The caller
// mounts what the hook needs (see BindSystem).
func RunHook(ctx context.Context, root string, h httpboot.Hook, env []string, timeout time.Duration) (lines []string, err error) {
	if timeout <= 0 {
		timeout = DefaultHookTimeout
	}
	if fi, err := os.Lstat(filepath.Join(root, "bin", "sh")); err != nil {
		return nil, fmt.Errorf("hook %s: the clone has no /bin/sh to run it: %v", h.Name, err)
	} else if fi.IsDir() {
		return nil, fmt.Errorf("hook %s: the clone's /bin/sh is a folder", h.Name)
	}
	if err := httpboot.CheckHookName(h.Name); err != nil {
		return nil, err
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, fmt.Errorf("hook %s: %w", h.Name, err)
	}
	defer r.Close()
	if _, err := r.Lstat("run"); errors.Is(err, os.ErrNotExist) {
		if err := r.Mkdir("run", 0o755); err != nil {
			return nil, fmt.Errorf("hook %s: /run in the clone: %w", h.Name, err)
		}
		defer r.Remove("run")
	}
	name := fmt.Sprintf("run/herd-hook-%d-%s", os.Getpid(), strings.Map(func(c rune) rune {
		if c == ' ' || c > 0x7e {
			return '_'
		}
		return c
	}, h.Name))
	f, err := r.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o700)
	if err != nil {
		return nil, fmt.Errorf("hook %s: copy into the clone: %w", h.Name, err)
	}
	_, werr := f.Write(h.Script)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	defer r.Remove(name)
	if werr != nil {
		return nil, fmt.Errorf("hook %s: copy into the clone: %w", h.Name, werr)
	}
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out := newTailBuffer(HookTailLines, HookLine)
	cmd := exec.CommandContext(tctx, "/bin/sh", "/"+name)
	cmd.Dir = "/"
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root, Setpgid: true}
	cmd.Cancel = func() error { return unix.Kill(-cmd.Process.Pid, unix.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	lines = out.Lines()
	if err == nil {
		return lines, nil
	}
	why := err.Error()
	if tctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
		why = fmt.Sprintf("did not finish within %v, killed", timeout)
	} else if ctx.Err() != nil {
		why = "interrupted"
	}
	tail := lines
	if len(tail) > HookReasonLines {
		tail = tail[len(tail)-HookReasonLines:]
	}
	if len(tail) == 0 {
		return lines, fmt.Errorf("hook %s: %s (no output)", h.Name, why)
	}
	return lines, fmt.Errorf("hook %s: %s: %s", h.Name, why, strings.Join(tail, " | "))
}

// BindSystem bind-mounts /dev, /proc and /sys into root (creating the
// folders it lacks) for programs run in a chroot of it; undo unmounts
// them and removes the folders it made.
func BindSystem(root string) (undo func() error, err error) {
	var binds, made []string
	undo = func() error {
		var errs []error
		for i := len(binds) - 1; i >= 0; i-- {
			if err := unix.Unmount(binds[i], unix.MNT_DETACH); err != nil {
				errs = append(errs, fmt.Errorf("unmount %s: %w", binds[i], err))
			}
		}
		for _, d := range made {
			os.Remove(d)
		}
		binds, made = nil, nil
		return errors.Join(errs...)
	}
	for _, d := range []string{"dev", "proc", "sys"} {
		target := filepath.Join(root, d)
		fi, err := os.Lstat(target)
		if errors.Is(err, os.ErrNotExist) {
			if err := os.Mkdir(target, 0o755); err != nil {
				undo()
				return nil, fmt.Errorf("/%s in the clone: %w", d, err)
			}
			made = append(made, target)
		} else if err != nil || !fi.IsDir() {
			undo()
			return nil, fmt.Errorf("/%s in the clone is not a folder", d)
		}
		if err := unix.Mount("/"+d, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			undo()
			return nil, fmt.Errorf("bind /%s into the clone: %w", d, err)
		}
		binds = append(binds, target)
	}
	return undo, nil
}

// sshKeygen returns the clone's ssh-keygen (its path in the clone), ""
// when it has none.
func sshKeygen(root string) string {
	for _, p := range []string{"usr/bin/ssh-keygen", "bin/ssh-keygen", "usr/local/bin/ssh-keygen"} {
		if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
			return "/" + p
		}
	}
	return ""
}

// RegenerateHostKeys runs ssh-keygen -A in a chroot of root when the
// clone has ssh-keygen; it reports whether it ran. The caller mounts
// what it needs (see BindSystem).
func RegenerateHostKeys(ctx context.Context, root string) (bool, error) {
	found := sshKeygen(root)
	if found == "" {
		return false, nil
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, found, "-A")
	cmd.Dir = "/"
	cmd.Env = HookEnv("", "", "")[:2]
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return false, fmt.Errorf("identity: ssh-keygen -A in the clone: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return true, nil
}

// MountClone finds the root file system of the system just written to
// disk and mounts it read-write on a new folder under tmp: it has the
// kernel read the partition table again, then takes the partition
// whose file system has the UUID rootUUID (the desc's "/" with the
// files method) or, without one, probes each partition (or the whole
// disk when it has none) read-only for /etc/os-release or /etc/fstab.
// unmount unmounts it, removes the folder and syncs.
func MountClone(ctx context.Context, disk, tmp, rootUUID string, say func(string, ...any)) (root string, unmount func() error, err error) {
	real, err := filepath.EvalSymlinks(disk)
	if err != nil {
		return "", nil, fmt.Errorf("mount the clone: %w", err)
	}
	// Always re-read: a whole-disk image may have replaced a table
	// whose old partitions the kernel still lists.
	rerr := rereadPartitions(real)
	wait := time.Duration(0)
	if hasPartitions(real) {
		if rerr != nil {
			say("re-read the partition table of %s: %v (using what the kernel knows)", real, rerr)
		}
		// The kernel lists them a moment after the re-read.
		wait = 5 * time.Second
	}
	parts := waitPartitions(ctx, filepath.Base(real), wait)
	if len(parts) == 0 {
		parts = []string{filepath.Base(real)}
	}
	dir, err := os.MkdirTemp(tmp, "herd-clone-")
	if err != nil {
		return "", nil, fmt.Errorf("mount the clone: %w", err)
	}
	if rootUUID != "" {
		// The desc's root, by its UUID: first, without probing.
		var byUUID []string
		for _, p := range parts {
			if _, _, uuid, err := partitionDevice(p, tmp); err == nil && strings.EqualFold(uuid, rootUUID) {
				byUUID = append(byUUID, p)
			}
		}
		if len(byUUID) == 1 {
			parts = byUUID
			say("the desc's root file system %s is %s", rootUUID, byUUID[0])
		} else {
			say("no single partition of %s holds the desc's root file system %s; looking for one with /etc", real, rootUUID)
		}
	}
	var tried []string
	for _, p := range parts {
		dev, fs, _, err := partitionDevice(p, tmp)
		if err != nil {
			tried = append(tried, p+": "+err.Error())
			continue
		}
		if fs == "" || fs == "swap" {
			tried = append(tried, p+": no file system known")
			continue
		}
		if err := mountFS(ctx, dev, dir, fs, unix.MS_RDONLY); err != nil {
			tried = append(tried, fmt.Sprintf("%s (%s): %v", p, fs, err))
			continue
		}
		isRoot := false
		for _, f := range []string{"etc/os-release", "etc/fstab"} {
			if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
				isRoot = true
			}
		}
		if err := unix.Unmount(dir, 0); err != nil {
			os.Remove(dir)
			return "", nil, fmt.Errorf("mount the clone: unmount %s after probing it: %w", p, err)
		}
		if !isRoot {
			tried = append(tried, fmt.Sprintf("%s (%s): no /etc/os-release nor /etc/fstab", p, fs))
			continue
		}
		if err := mountFS(ctx, dev, dir, fs, 0); err != nil {
			os.Remove(dir)
			return "", nil, fmt.Errorf("mount the clone's root %s (%s) read-write: %w", p, fs, err)
		}
		say("the clone's root file system is %s (%s), mounted at %s", p, fs, dir)
		unmount = func() error {
			err := unix.Unmount(dir, 0)
			if err != nil {
				err = fmt.Errorf("unmount the clone's root %s: %w", p, err)
				unix.Unmount(dir, unix.MNT_DETACH)
			}
			unix.Sync()
			os.Remove(dir)
			return err
		}
		return dir, unmount, nil
	}
	os.Remove(dir)
	return "", nil, fmt.Errorf("%w on %s (%s)", errNoRoot, real, strings.Join(tried, "; "))
}

// rereadPartitions asks the kernel to read dev's partition table again
// (BLKRRPART), retrying a little while the device is busy.
func rereadPartitions(dev string) error {
	f, err := os.Open(dev)
	if err != nil {
		return err
	}
	defer f.Close()
	for i := 0; ; i++ {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKRRPART, 0)
		if errno == 0 {
			return nil
		}
		if errno != unix.EBUSY || i >= 10 {
			return errno
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// hasPartitions reports whether dev holds a partition table with
// partitions.
func hasPartitions(dev string) bool {
	size, _, err := desc.DeviceSize(dev)
	if err != nil {
		return false
	}
	f, err := os.Open(dev)
	if err != nil {
		return false
	}
	defer f.Close()
	p, err := desc.ReadTable(f, size)
	return err == nil && len(p.Parts) > 0
}

// waitPartitions returns the partitions of disk (names in
// /sys/class/block, in partition order), waiting up to wait for the
// kernel to list at least one.
func waitPartitions(ctx context.Context, disk string, wait time.Duration) []string {
	deadline := time.Now().Add(wait)
	for {
		if parts := listPartitions("/sys/class/block", disk); len(parts) > 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return parts
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// listPartitions lists the partitions of disk under sys (a
// /sys/class/block), ordered by partition number.
func listPartitions(sys, disk string) []string {
	ents, err := os.ReadDir(filepath.Join(sys, disk))
	if err != nil {
		return nil
	}
	type part struct {
		name string
		n    int
	}
	var parts []part
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(sys, disk, e.Name(), "partition"))
		if err != nil {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			continue
		}
		parts = append(parts, part{e.Name(), n})
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].n < parts[j].n })
	out := make([]string, len(parts))
	for i, p := range parts {
		out[i] = p.name
	}
	return out
}

// partitionDevice returns the device node of the block device name
// (/dev/NAME, made under tmp from its sysfs numbers when /dev lacks it)
// and the file system on it with its UUID.
func partitionDevice(name, tmp string) (dev, fs, uuid string, err error) {
	dev = "/dev/" + name
	if _, err := os.Stat(dev); err != nil {
		b, rerr := os.ReadFile(filepath.Join("/sys/class/block", name, "dev"))
		if rerr != nil {
			return "", "", "", err
		}
		maj, min, ok := strings.Cut(strings.TrimSpace(string(b)), ":")
		ma, err1 := strconv.ParseUint(maj, 10, 32)
		mi, err2 := strconv.ParseUint(min, 10, 32)
		if !ok || err1 != nil || err2 != nil {
			return "", "", "", fmt.Errorf("device numbers %q", b)
		}
		dev = filepath.Join(tmp, "herd-dev-"+name)
		os.Remove(dev)
		if err := unix.Mknod(dev, unix.S_IFBLK|0o600, int(unix.Mkdev(uint32(ma), uint32(mi)))); err != nil {
			return "", "", "", fmt.Errorf("make %s: %w", dev, err)
		}
	}
	f, err := os.Open(dev)
	if err != nil {
		return "", "", "", err
	}
	defer f.Close()
	fs, _, uuid = desc.ProbeFS(f)
	return dev, fs, uuid, nil
}

// mountFS mounts dev on dir, loading the file system's module if the
// kernel lacks it; ext2 and ext3 fall back to the ext4 driver.
func mountFS(ctx context.Context, dev, dir, fs string, flags uintptr) error {
	err := unix.Mount(dev, dir, fs, flags, "")
	if errors.Is(err, unix.ENODEV) {
		_ = exec.CommandContext(ctx, "modprobe", fs).Run()
		err = unix.Mount(dev, dir, fs, flags, "")
	}
	if errors.Is(err, unix.ENODEV) && (fs == "ext2" || fs == "ext3") {
		err = unix.Mount(dev, dir, "ext4", flags, "")
	}
	return err
}

// fixupDisk is the default Agent.Fixup: mount the clone's root from
// disk, fix its identity, run the hooks, unmount.
func (a *Agent) fixupDisk(ctx context.Context, disk string, job FixupJob) (summary string, err error) {
	root, unmount, err := MountClone(ctx, disk, a.TempDir, a.filesRoot, a.say)
	if errors.Is(err, errNoRoot) && job.Orders.IdentityIfRoot && len(job.Orders.Hooks) == 0 {
		a.say("identity skipped: %v", err)
		return "identity skipped: " + err.Error(), nil
	}
	if err != nil {
		return "", err
	}
	defer func() {
		if uerr := unmount(); uerr != nil && err == nil {
			err = uerr
		}
	}()
	return a.fixupRoot(ctx, root, job)
}

// fixupRoot does job on the clone mounted at root and returns what was
// done in one line.
func (a *Agent) fixupRoot(ctx context.Context, root string, job FixupJob) (string, error) {
	var parts []string
	var undo func() error
	defer func() {
		if undo != nil {
			undo()
		}
	}()
	bind := func() error {
		if undo != nil {
			return nil
		}
		u, err := BindSystem(root)
		if err != nil {
			return err
		}
		undo = u
		return nil
	}
	if job.Orders.Identity {
		did, err := FixIdentity(root, job.Name)
		for _, d := range did {
			a.say("identity: %s", d)
		}
		if err != nil {
			return "", err
		}
		if sshKeygen(root) != "" {
			if err := bind(); err != nil {
				return "", fmt.Errorf("identity: %w", err)
			}
		}
		ran, err := RegenerateHostKeys(ctx, root)
		if err != nil {
			return "", err
		}
		if ran {
			did = append(did, "ssh host keys regenerated")
			a.say("identity: ssh host keys regenerated (ssh-keygen -A)")
		} else {
			did = append(did, "no ssh-keygen in the clone: host keys made at its first boot")
		}
		parts = append(parts, "identity: "+strings.Join(did, ", "))
	}
	if len(job.Orders.Hooks) > 0 {
		if err := bind(); err != nil {
			return "", fmt.Errorf("hooks: %w", err)
		}
		var ran []string
		for _, h := range job.Orders.Hooks {
			a.say("hook %s: running in a chroot of the clone", h.Name)
			lines, err := RunHook(ctx, root, h, HookEnv(job.Name, job.MAC, job.IP), job.Orders.HookTimeout)
			for _, l := range lines {
				a.say("hook %s: %s", h.Name, l)
			}
			if err != nil {
				return "", err
			}
			ran = append(ran, h.Name)
		}
		parts = append(parts, "hooks ran: "+strings.Join(ran, ", "))
	}
	if undo != nil {
		err := undo()
		undo = nil
		if err != nil {
			return "", err
		}
	}
	return strings.Join(parts, "; "), nil
}
