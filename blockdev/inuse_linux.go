//go:build linux

package blockdev

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// procRoot lets tests point the in-use checks at fake /proc and /sys files.
var (
	mountinfoPath = "/proc/self/mountinfo"
	swapsPath     = "/proc/swaps"
	sysBlock      = "/sys/dev/block"
	sysLoops      = "/sys/block"
)

func isBusy(err error) bool { return errors.Is(err, unix.EBUSY) }

// deviceInUse refuses a block device that is (or has a partition that is)
// mounted, used as swap, or held by another kernel user (dm, md...).
func deviceInUse(dest string, fi os.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	devs := map[[2]uint32]string{}
	maj, min := devNumbers(st.Rdev)
	devs[[2]uint32{maj, min}] = dest
	self := fmt.Sprintf("%s/%d:%d", sysBlock, maj, min)
	if h, err := os.ReadDir(filepath.Join(self, "holders")); err == nil && len(h) > 0 {
		return fmt.Errorf("held by %s: %w", h[0].Name(), ErrInUse)
	}
	// Partitions of a whole disk: /sys/dev/block/M:m/<name>/partition.
	if ents, err := os.ReadDir(self); err == nil {
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(self, e.Name(), "dev"))
			if err != nil {
				continue
			}
			if _, err := os.Stat(filepath.Join(self, e.Name(), "partition")); err != nil {
				continue
			}
			a, c, ok := strings.Cut(strings.TrimSpace(string(b)), ":")
			x, err1 := strconv.ParseUint(a, 10, 32)
			y, err2 := strconv.ParseUint(c, 10, 32)
			if ok && err1 == nil && err2 == nil {
				devs[[2]uint32{uint32(x), uint32(y)}] = e.Name()
				if h, err := os.ReadDir(filepath.Join(self, e.Name(), "holders")); err == nil && len(h) > 0 {
					return fmt.Errorf("partition %s held by %s: %w", e.Name(), h[0].Name(), ErrInUse)
				}
			}
		}
	}
	ms, err := mountsOf(devs)
	if err != nil {
		return err
	}
	if len(ms) > 0 {
		return fmt.Errorf("%s is mounted on %s: %w", ms[0].what, ms[0].Point, ErrInUse)
	}
	return swapInUse(func(st *unix.Stat_t) bool {
		if st.Mode&unix.S_IFMT != unix.S_IFBLK {
			return false
		}
		a, b := devNumbers(st.Rdev)
		_, ok := devs[[2]uint32{a, b}]
		return ok
	})
}

type devMount struct {
	Mount
	what string
}

// mountsOf returns the mounts of any device in devs (by st_dev, or by the
// mount source's device number).
func mountsOf(devs map[[2]uint32]string) ([]devMount, error) {
	f, err := os.Open(mountinfoPath)
	if err != nil {
		return nil, nil
	}
	mounts, err := ParseMountinfo(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	var out []devMount
	for _, m := range mounts {
		if what, ok := devs[[2]uint32{m.Major, m.Minor}]; ok {
			out = append(out, devMount{m, what})
			continue
		}
		if strings.HasPrefix(m.Source, "/") {
			var ms unix.Stat_t
			if unix.Stat(m.Source, &ms) == nil && ms.Mode&unix.S_IFMT == unix.S_IFBLK {
				a, b := devNumbers(ms.Rdev)
				if what, ok := devs[[2]uint32{a, b}]; ok {
					out = append(out, devMount{m, what})
				}
			}
		}
	}
	return out, nil
}

// sourceMountedRW refuses a source device mounted read-write: a copy of a
// filesystem that changes while it is read is inconsistent.
func sourceMountedRW(name string, fi os.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	maj, min := devNumbers(st.Rdev)
	ms, err := mountsOf(map[[2]uint32]string{{maj, min}: name})
	if err != nil {
		return err
	}
	for _, m := range ms {
		if !m.ReadOnly() {
			return fmt.Errorf("%s is mounted read-write on %s (remount it read-only or copy a snapshot): %w", name, m.Point, ErrInUse)
		}
	}
	return nil
}

func swapInUse(match func(*unix.Stat_t) bool) error {
	f, err := os.Open(swapsPath)
	if err != nil {
		return nil
	}
	names, err := ParseSwaps(f)
	f.Close()
	if err != nil {
		return err
	}
	for _, n := range names {
		var st unix.Stat_t
		if unix.Stat(n, &st) == nil && match(&st) {
			return fmt.Errorf("used as swap (%s): %w", n, ErrInUse)
		}
	}
	return nil
}

// fileInUse refuses a regular file that backs a loop device or is a swap
// file.
func fileInUse(fi os.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	same := func(o *unix.Stat_t) bool { return o.Dev == st.Dev && o.Ino == st.Ino }
	if loops, err := filepath.Glob(filepath.Join(sysLoops, "loop*", "loop", "backing_file")); err == nil {
		for _, l := range loops {
			b, err := os.ReadFile(l)
			if err != nil {
				continue
			}
			var o unix.Stat_t
			p := strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)")
			if unix.Stat(p, &o) == nil && same(&o) {
				return fmt.Errorf("backs %s: %w", filepath.Base(filepath.Dir(filepath.Dir(l))), ErrInUse)
			}
		}
	}
	return swapInUse(same)
}

func freeBytes(f *os.File) (int64, error) {
	var s unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &s); err != nil {
		return 0, err
	}
	return int64(s.Bavail) * int64(s.Bsize), nil
}

// dropCache asks the kernel to forget f's cached pages so a read-back
// comes from the disk (best effort).
func dropCache(f *os.File) {
	fi, err := f.Stat()
	if err == nil && isBlockDevice(fi) {
		_ = unix.IoctlSetInt(int(f.Fd()), unix.BLKFLSBUF, 0)
		return
	}
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}
