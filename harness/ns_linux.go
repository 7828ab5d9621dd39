package harness

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netns"

	"github.com/herd-cluster/herd/blockdev"
	"golang.org/x/sys/unix"
)

// createNetns makes a network namespace pinned at /run/netns/<name> (the
// place `ip netns` uses) without moving any other thread of this process.
// The pin is made by pinNS, so that removePins finds it even under mounts
// stacked on /run/netns later.
func createNetns(name string) (netns.NsHandle, error) {
	type result struct {
		h   netns.NsHandle
		err error
	}
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return 0, fmt.Errorf("create %s: %w", netnsDir, err)
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		origin, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("get current netns: %w", err)}
			return
		}
		defer origin.Close()
		h, err := netns.New()
		if serr := netns.Set(origin); serr != nil {
			// The thread is stuck in another namespace: keep it locked so
			// the runtime throws it away when this goroutine ends.
			if err == nil {
				h.Close()
			}
			ch <- result{err: errors.Join(err, fmt.Errorf("restore netns: %w", serr))}
			return
		}
		runtime.UnlockOSThread()
		if err != nil {
			err = fmt.Errorf("create netns %s: %w", name, err)
		}
		ch <- result{h: h, err: err}
	}()
	r := <-ch
	if r.err != nil {
		return 0, r.err
	}
	if err := pinNS(int(r.h), filepath.Join(netnsDir, name)); err != nil {
		r.h.Close()
		return 0, err
	}
	return r.h, nil
}

// unpin removes one pin (see removePins). A missing pin is not an error.
func unpin(path string) error {
	_, err := removePins([]string{path})
	return err
}

// ensurePrivateDir makes dir a mount point with private propagation, so
// that namespace pins made below it never propagate into a copy (the same
// trick `ip netns` plays on /run/netns). See ensureDirMount.
func ensurePrivateDir(dir string) error {
	return ensureDirMount(dir, unix.MS_PRIVATE)
}

type mountEntry struct {
	target, fstype string
}

// mounts reads a mountinfo file (parsed by blockdev, which also checks
// targets against it).
func mounts(path string) ([]mountEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	ms, err := blockdev.ParseMountinfo(f)
	if err != nil {
		return nil, err
	}
	out := make([]mountEntry, 0, len(ms))
	for _, m := range ms {
		out = append(out, mountEntry{target: m.Point, fstype: m.FSType})
	}
	return out, nil
}

// isMountPoint reports whether dir is a mount point in this thread's mount
// namespace. It reads thread-self, not self: the main thread may be one
// that entered a node's namespace and was parked by the runtime.
func isMountPoint(dir string) bool {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ms, err := mounts("/proc/thread-self/mountinfo")
	if err != nil {
		return false
	}
	for _, m := range ms {
		if m.target == dir {
			return true
		}
	}
	return false
}

// createMountNS makes a mount namespace for a node, pinned at pin: all
// mounts private, every namespace pin copied from the host detached (so no
// node keeps another node's namespaces alive), a tmpfs on NodeDir with
// NodeDisk, a block device node for dev (if non-zero).
//
// The kernel pins a mount namespace only from a thread whose own mount
// namespace is older (has a smaller ID), lest namespaces hold each other
// alive (ELOOP otherwise). Since Linux 6.x namespace IDs come from per-CPU
// batches: made on another CPU, the node's namespace can get a smaller ID
// than this process's own, which happens when herd runs in a mount
// namespace of its own (a container, a test). IDs taken on one CPU do
// grow, so on ELOOP the namespace is made again on each CPU in turn; the
// CPU this process's namespace was made on always works.
func createMountNS(pin string, dev uint64) error {
	// New made mntPinDir a private mount point (under the state lock).
	if err := os.MkdirAll(NodeDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", NodeDir, err)
	}
	err := makeMountNS(pin, dev, -1)
	if !errors.Is(err, unix.ELOOP) {
		return err
	}
	var cpus unix.CPUSet
	if unix.SchedGetaffinity(0, &cpus) != nil {
		return err
	}
	for cpu := 0; cpu < len(cpus)*64 && errors.Is(err, unix.ELOOP); cpu++ {
		if cpus.IsSet(cpu) {
			err = makeMountNS(pin, dev, cpu)
		}
	}
	return err
}

// makeMountNS is createMountNS made on a thread bound to cpu (any if < 0).
func makeMountNS(pin string, dev uint64, cpu int) error {
	tidc := make(chan int, 1)
	errc := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		if cpu >= 0 {
			var set unix.CPUSet
			set.Set(cpu)
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				// The thread keeps a changed affinity: leave it locked,
				// so it dies with this goroutine.
				errc <- fmt.Errorf("bind thread to CPU %d: %w", cpu, err)
				return
			}
		}
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			if cpu < 0 {
				runtime.UnlockOSThread()
			}
			errc <- fmt.Errorf("unshare mount namespace: %w", err)
			return
		}
		// From here on the thread is never unlocked: it dies with the
		// goroutine and takes its private view of the mounts with it.
		if err := setupNodeMounts(dev); err != nil {
			errc <- err
			return
		}
		tidc <- unix.Gettid()
		<-done
	}()
	var tid int
	select {
	case err := <-errc:
		return err
	case tid = <-tidc:
	}
	defer close(done)
	src := fmt.Sprintf("/proc/%d/task/%d/ns/mnt", os.Getpid(), tid)
	nsf, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("open mount namespace %s: %w", src, err)
	}
	defer nsf.Close()
	if err := pinNS(int(nsf.Fd()), pin); err != nil {
		return fmt.Errorf("pin mount namespace: %w", err)
	}
	return nil
}

// setupNodeMounts runs on a thread that just entered a new mount namespace.
func setupNodeMounts(dev uint64) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make node mounts private: %w", err)
	}
	ms, err := mounts("/proc/thread-self/mountinfo")
	if err != nil {
		return err
	}
	for i := len(ms) - 1; i >= 0; i-- {
		m := ms[i]
		if m.fstype == "nsfs" || m.target == mntPinDir {
			// Best effort: a pin that vanished meanwhile is fine.
			_ = unix.Unmount(m.target, unix.MNT_DETACH)
		}
	}
	if err := unix.Mount("herd-node", NodeDir, "tmpfs", unix.MS_NOSUID, "mode=0755"); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", NodeDir, err)
	}
	if dev != 0 {
		if err := unix.Mknod(NodeDisk, unix.S_IFBLK|0o660, int(dev)); err != nil {
			return fmt.Errorf("mknod %s: %w", NodeDisk, err)
		}
	}
	return nil
}

// nsInode returns the inode of the namespace pinned at path, or 0.
func nsInode(path string) uint64 {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0
	}
	return st.Ino
}

// procsIn lists the pids of processes whose network or mount namespace is
// one of inodes.
func procsIn(inodes map[uint64]bool) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		for _, kind := range []string{"net", "mnt"} {
			l, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns", kind))
			if err != nil {
				continue
			}
			// "net:[4026532281]"
			i := strings.IndexByte(l, '[')
			j := strings.IndexByte(l, ']')
			if i < 0 || j < i {
				continue
			}
			ino, err := strconv.ParseUint(l[i+1:j], 10, 64)
			if err == nil && inodes[ino] {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// killIn sends SIGKILL to every process inside the namespaces and waits
// (up to timeout) until none is left. It reports every process it kills to
// rep (may be nil).
func killIn(inodes map[uint64]bool, timeout time.Duration, rep *[]string) error {
	if len(inodes) == 0 {
		return nil
	}
	deadline := time.Now().Add(timeout)
	seen := map[int]bool{}
	for {
		pids := procsIn(inodes)
		if len(pids) == 0 {
			return nil
		}
		for _, p := range pids {
			if rep != nil && !seen[p] {
				seen[p] = true
				cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p))
				*rep = append(*rep, fmt.Sprintf("process %d (%s)", p, strings.TrimSpace(string(cmd))))
			}
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v survive SIGKILL: %w", pids, ErrBusy)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
