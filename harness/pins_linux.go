package harness

// Namespace pins, and the mounts that may be stacked over their directory.
//
// A pin is an nsfs mount on an empty file: /run/netns/<name> for a network
// namespace (where `ip netns` looks), StateDir/ns/<name> for a mount
// namespace. Removing a pin means unmounting it and unlinking the file; the
// unlink fails with EBUSY while any mount of this mount namespace still sits
// on the file.
//
// The trap: `ip netns add` (and libraries imitating it), when /run/netns is
// not a mount point yet, bind-mounts /run/netns over itself recursively and
// makes it shared. Every pin made before that is then *hidden*: the
// original mount stays on the file in the layer below, a copy of it sits
// in the new layer on top, and a path lookup only ever reaches the top.
// Unmounting by path removes the copy; the original keeps the file busy
// forever (the leak of issue #13: "remove /run/netns/herdlab-…: device or
// resource busy"). Two such binds racing, or a tool binding again, stack
// more layers, each holding copies.
//
// What this file does about it:
//
//   - Prevention: before making pins, New makes /run/netns a shared mount
//     point itself, as `ip netns add` would, so that a later `ip netns add`
//     finds a mount point and stacks nothing (ensureNetnsDir). It does so
//     only while no mount lies under /run/netns: a bind made then would
//     hide them.
//   - In-process removal by mount, not by path: a pin is made with
//     open_tree(OPEN_TREE_CLONE) + move_mount, and the process keeps the
//     open_tree descriptor. umount2("/proc/self/fd/N") resolves to exactly
//     that mount wherever it is now, visible or hidden, so the original of
//     every pin this process made is removed even under any stack.
//   - Copies by path: umount2(path, MNT_DETACH) in a loop removes the
//     visible copies; on shared layers the kernel propagates each unmount
//     to the peers, which removes the copies in lower shared layers too.
//   - Hidden mounts of crashed runs (no descriptor): /proc/self/mountinfo
//     lists every mount with its ID and its parent's, so the stack of
//     mounts on the directory and the layer each pin lives in are known.
//     A covering layer is unmounted only when it is a plain self-bind of
//     the directory (same filesystem, same root) and everything it holds
//     is either one of the pins being removed or an exact twin (same
//     mount point, same filesystem and root, e.g. "net:[4026532281]") of
//     a mount in the layer that becomes visible. Nothing of another
//     program is then lost: the same namespaces stay reachable at the same
//     paths. The layer is made private first (MS_PRIVATE on that one
//     mount) so that detaching it cannot propagate to its peers, which
//     would take the originals of other programs' pins with it. Before
//     each unmount the top mount's ID (statx STATX_MNT_ID) must still be
//     the one checked, or the round starts over.
//   - A cover that holds a namespace of somebody else that exists only
//     there is never touched: the pins beneath stay, and the error says
//     which mount blocks them, so that the next `herd lab down` (once the
//     other program is done) finishes the job.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/herd-cluster/herd/blockdev"
)

// mountInfo is one line of /proc/PID/mountinfo.
type mountInfo = blockdev.Mount

// readMountinfo returns the mounts of this process's mount namespace. It
// reads thread-self on a locked thread: some threads of this process may
// sit in a node's mount namespace (see isMountPoint).
func readMountinfo() ([]mountInfo, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	f, err := os.Open("/proc/thread-self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return blockdev.ParseMountinfo(f)
}

// pinFDs holds, for every pin this process made and did not remove yet,
// the open_tree descriptor of its mount (see the comment at the top).
var pinFDs = struct {
	sync.Mutex
	m map[string]int
}{m: map[string]int{}}

// pinNS mounts the namespace open as nsfd on a new file at path and keeps a
// descriptor of that very mount for removePins.
func pinNS(nsfd int, path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("create pin %s: %w", path, err)
	}
	f.Close()
	mfd, err := unix.OpenTree(nsfd, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH)
	if errors.Is(err, unix.ENOSYS) {
		// Before Linux 5.2: a plain bind, removed by path only.
		if err := unix.Mount(fmt.Sprintf("/proc/self/fd/%d", nsfd), path, "", unix.MS_BIND, ""); err != nil {
			os.Remove(path)
			return fmt.Errorf("pin %s: %w", path, err)
		}
		return nil
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("pin %s: open_tree: %w", path, err)
	}
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, path, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		unix.Close(mfd)
		os.Remove(path)
		return fmt.Errorf("pin %s: move_mount: %w", path, err)
	}
	pinFDs.Lock()
	if old, ok := pinFDs.m[path]; ok {
		unix.Close(old)
	}
	pinFDs.m[path] = mfd
	pinFDs.Unlock()
	return nil
}

// pinInodes returns the inodes of the namespaces mounted at any of paths,
// in any layer (hidden ones included), from mountinfo's root field
// ("net:[4026532281]").
func pinInodes(ms []mountInfo, paths map[string]bool) map[uint64]bool {
	out := map[uint64]bool{}
	for _, m := range ms {
		if m.FSType != "nsfs" || !paths[m.Point] {
			continue
		}
		i, j := strings.IndexByte(m.Root, '['), strings.IndexByte(m.Root, ']')
		if i < 0 || j < i {
			continue
		}
		if ino, err := strconv.ParseUint(m.Root[i+1:j], 10, 64); err == nil {
			out[ino] = true
		}
	}
	return out
}

// removePins removes every mount on each of paths (visible or hidden under
// stacked mounts of their directory, see the top of this file) and the
// files. It returns how many mounts it removed. A missing pin is not an
// error.
func removePins(paths []string) (int, error) {
	want := map[string]bool{}
	for _, p := range paths {
		want[p] = true
	}
	n := 0
	pinFDs.Lock()
	for _, p := range paths {
		if fd, ok := pinFDs.m[p]; ok {
			if unix.Unmount(fmt.Sprintf("/proc/self/fd/%d", fd), unix.MNT_DETACH) == nil {
				n++
			}
			unix.Close(fd)
			delete(pinFDs.m, p)
		}
	}
	pinFDs.Unlock()

	var errs []error
	for round := 0; ; round++ {
		for _, p := range paths {
			for i := 0; i < 64 && unix.Unmount(p, unix.MNT_DETACH) == nil; i++ {
				n++
			}
		}
		ms, err := readMountinfo()
		if err != nil {
			errs = append(errs, err)
			break
		}
		var left []mountInfo
		for _, m := range ms {
			if want[m.Point] {
				left = append(left, m)
			}
		}
		if len(left) == 0 {
			break
		}
		if round >= 16 {
			errs = append(errs, fmt.Errorf("%d mounts on %s remain after %d rounds: %w", len(left), left[0].Point, round, ErrBusy))
			break
		}
		k, err := uncover(ms, filepath.Dir(left[0].Point), want)
		if err != nil {
			errs = append(errs, err)
			break
		}
		n += k
	}
	for _, p := range paths {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove %s: %w", p, err))
		}
	}
	return n, errors.Join(errs...)
}

// stackAt returns the mounts on dir, bottom first: stack[0] is mounted on a
// directory of another mount (the base), stack[i+1] on stack[i].
func stackAt(ms []mountInfo, dir string) []mountInfo {
	byParent := map[int]mountInfo{}
	var stack []mountInfo
	for _, m := range ms {
		if m.Point != dir {
			continue
		}
		byParent[m.Parent] = m
	}
	ids := map[int]bool{}
	for _, m := range byParent {
		ids[m.ID] = true
	}
	for _, m := range byParent {
		if !ids[m.Parent] {
			stack = append(stack, m)
			break
		}
	}
	for len(stack) > 0 {
		next, ok := byParent[stack[len(stack)-1].ID]
		if !ok {
			break
		}
		stack = append(stack, next)
	}
	return stack
}

// uncover unmounts the layers stacked on dir above the highest layer that
// holds a hidden mount of ours, if that is safe (see the top of this
// file). It returns how many layers it removed.
func uncover(ms []mountInfo, dir string, ours map[string]bool) (int, error) {
	byID := map[int]mountInfo{}
	children := map[int][]mountInfo{}
	for _, m := range ms {
		byID[m.ID] = m
		children[m.Parent] = append(children[m.Parent], m)
	}
	stack := stackAt(ms, dir)
	if len(stack) == 0 {
		return 0, fmt.Errorf("mounts on pins in %s are hidden, but nothing is stacked on %s (is a parent directory covered?): %w", dir, dir, ErrBusy)
	}
	base, ok := byID[stack[0].Parent]
	if !ok {
		return 0, fmt.Errorf("mount %d on %s: parent %d not found: %w", stack[0].ID, dir, stack[0].Parent, ErrBusy)
	}
	// layer(i) is stack[i], or the base for i == -1.
	layer := func(i int) mountInfo {
		if i < 0 {
			return base
		}
		return stack[i]
	}
	top := len(stack) - 1
	target := -2
	for i := top - 1; i >= -1 && target == -2; i-- {
		for _, c := range children[layer(i).ID] {
			if ours[c.Point] {
				target = i
				break
			}
		}
	}
	if target == -2 {
		return 0, fmt.Errorf("mounts on pins in %s are hidden, but not by the mounts stacked on it: %w", dir, ErrBusy)
	}
	exposed := children[layer(target).ID]
	twin := func(c mountInfo) bool {
		for _, x := range exposed {
			if x.Point == c.Point && x.Major == c.Major && x.Minor == c.Minor && x.Root == c.Root && x.FSType == c.FSType {
				return true
			}
		}
		return false
	}
	wantRoot := base.Root
	if rel, err := filepath.Rel(base.Point, dir); err == nil {
		wantRoot = filepath.Join(base.Root, rel)
	}
	for j := target + 1; j <= top; j++ {
		c := stack[j]
		if c.Major != base.Major || c.Minor != base.Minor || c.FSType != base.FSType || c.Root != wantRoot {
			return 0, fmt.Errorf("pins in %s are hidden under mount %d (%s %s), which is not a plain bind of %s: left alone: %w", dir, c.ID, c.FSType, c.Root, dir, ErrBusy)
		}
		for _, ch := range children[c.ID] {
			if j < top && ch.ID == stack[j+1].ID {
				continue
			}
			if ours[ch.Point] {
				continue
			}
			if len(children[ch.ID]) == 0 && twin(ch) {
				continue
			}
			return 0, fmt.Errorf("pins in %s are hidden under mount %d (a bind of %s over itself), which also holds %s of another program (mount %d): left alone; run the cleanup again once that is gone: %w",
				dir, c.ID, dir, ch.Point, ch.ID, ErrBusy)
		}
	}
	n := 0
	for j := top; j > target; j-- {
		var stx unix.Statx_t
		if err := unix.Statx(unix.AT_FDCWD, dir, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &stx); err != nil {
			return n, fmt.Errorf("statx %s: %w", dir, err)
		}
		if stx.Mask&unix.STATX_MNT_ID != 0 && int(stx.Mnt_id) != stack[j].ID {
			// Changed meanwhile: the caller reads mountinfo again.
			return n, nil
		}
		// Leave the peer group first, so that detaching this layer does
		// not propagate to the peers (and remove their pins).
		if err := unix.Mount("", dir, "", unix.MS_PRIVATE, ""); err != nil {
			return n, fmt.Errorf("make mount %d on %s private: %w", stack[j].ID, dir, err)
		}
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			return n, fmt.Errorf("unmount stacked mount %d on %s: %w", stack[j].ID, dir, err)
		}
		n++
	}
	return n, nil
}

// mountsUnder returns the mounts strictly below dir, sorted.
func mountsUnder(ms []mountInfo, dir string) []string {
	var out []string
	for _, m := range ms {
		if strings.HasPrefix(m.Point, dir+"/") {
			out = append(out, m.Point)
		}
	}
	sort.Strings(out)
	return out
}

// ensureNetnsDir makes /run/netns a shared mount point, as `ip netns add`
// does the first time, so that a later `ip netns add` does not bind it over
// itself and hide our pins. It does nothing when /run/netns is a mount
// point already, or when mounts lie under it (binding then would hide
// them). Call it with the state lock held.
func ensureNetnsDir() error {
	return ensureDirMount(netnsDir, unix.MS_SHARED)
}

// ensureDirMount makes dir a mount point (a bind of itself) with the given
// propagation (unix.MS_SHARED or unix.MS_PRIVATE), unless mounts lie under
// it: those a bind would hide.
func ensureDirMount(dir string, prop uintptr) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	ms, err := readMountinfo()
	if err != nil {
		return err
	}
	if len(stackAt(ms, dir)) > 0 {
		if prop == unix.MS_PRIVATE {
			if err := unix.Mount("", dir, "", unix.MS_PRIVATE, ""); err != nil {
				return fmt.Errorf("make %s private: %w", dir, err)
			}
		}
		return nil
	}
	if len(mountsUnder(ms, dir)) > 0 {
		return nil
	}
	if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s on itself: %w", dir, err)
	}
	if err := unix.Mount("", dir, "", prop, ""); err != nil {
		return fmt.Errorf("set propagation of %s: %w", dir, err)
	}
	return nil
}
