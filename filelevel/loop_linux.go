package filelevel

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// attachLoop attaches a loop device to the section [off, off+size) of
// file (an image or a block device) with the autoclear flag, and returns
// it open: the caller mounts it, then closes it, and the kernel detaches
// it when the last user (the mount) goes away; closing it without
// mounting detaches it at once. Done with ioctls rather than losetup,
// whose overlap checks compare backing paths, which are ambiguous across
// mount namespaces (every lab node has its disk at the same path).
func attachLoop(file string, off, size int64) (*os.File, error) {
	back, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("attach loop device: %w", err)
	}
	defer back.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("attach loop device: %w", err)
	}
	defer ctl.Close()
	for range 50 {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("attach loop device: find a free one: %w", err)
		}
		name := fmt.Sprintf("/dev/loop%d", n)
		lf, err := os.OpenFile(name, os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("attach loop device: %w", err)
		}
		if err := unix.IoctlSetInt(int(lf.Fd()), unix.LOOP_SET_FD, int(back.Fd())); err != nil {
			lf.Close()
			if errors.Is(err, unix.EBUSY) {
				continue // another process took it first
			}
			return nil, fmt.Errorf("attach %s to %s: %w", name, file, err)
		}
		info := unix.LoopInfo64{Offset: uint64(off), Sizelimit: uint64(size), Flags: unix.LO_FLAGS_AUTOCLEAR}
		if err := unix.IoctlLoopSetStatus64(int(lf.Fd()), &info); err != nil {
			_ = unix.IoctlSetInt(int(lf.Fd()), unix.LOOP_CLR_FD, 0)
			lf.Close()
			return nil, fmt.Errorf("set offset %d size %d on %s: %w", off, size, name, err)
		}
		return lf, nil
	}
	return nil, fmt.Errorf("attach loop device to %s: every free device was taken by others", file)
}
