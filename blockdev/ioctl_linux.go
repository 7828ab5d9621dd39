//go:build linux

package blockdev

import (
	"fmt"
	"io"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// deviceSize returns the size of the block device open as f, from the
// kernel (BLKGETSIZE64), not from a guess.
func deviceSize(f *os.File) (int64, error) {
	v, err := unix.IoctlGetUint64(int(f.Fd()), unix.BLKGETSIZE64)
	if err != nil {
		return 0, fmt.Errorf("BLKGETSIZE64 %s: %w", f.Name(), err)
	}
	return int64(v), nil
}

// zeroRange makes [off, off+n) of the block device f read as zeros, with
// BLKZEROOUT when the kernel offers it, else by writing zeros.
func zeroRange(f *os.File, off, n int64, isDev bool) error {
	if n <= 0 {
		return nil
	}
	if isDev && off%512 == 0 && n%512 == 0 {
		r := [2]uint64{uint64(off), uint64(n)}
		_, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKZEROOUT, uintptr(unsafe.Pointer(&r[0])))
		if e == 0 {
			return nil
		}
	}
	return writeZeros(f, off, n)
}

// dataExtents lists the data (non-hole) ranges of the regular file f of the
// given size with SEEK_DATA/SEEK_HOLE. ok is false when the filesystem does
// not support it.
func dataExtents(f *os.File, size int64) (ext []Extent, ok bool, err error) {
	fd := int(f.Fd())
	var off int64
	for off < size {
		d, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if err == unix.ENXIO {
			break // only a hole up to the end
		}
		if err == unix.EINVAL || err == unix.EOPNOTSUPP {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("SEEK_DATA %s at %d: %w", f.Name(), off, err)
		}
		h, err := unix.Seek(fd, d, unix.SEEK_HOLE)
		if err != nil {
			return nil, false, fmt.Errorf("SEEK_HOLE %s at %d: %w", f.Name(), d, err)
		}
		h = min(h, size)
		if h > d {
			ext = append(ext, Extent{Off: d, Len: h - d})
		}
		off = h
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, false, err
	}
	return ext, true, nil
}

// devNumbers returns the major and minor numbers of a device number.
func devNumbers(rdev uint64) (uint32, uint32) { return unix.Major(rdev), unix.Minor(rdev) }

// openExclusive opens the block device path for writing with O_EXCL, which
// the kernel refuses (EBUSY) while the device or one of its partitions is
// mounted or held by another exclusive user.
func openExclusive(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_EXCL|unix.O_CLOEXEC, 0)
}

// syncFS flushes the whole filesystem holding f (syncfs(2)).
func syncFS(f *os.File) error { return unix.Syncfs(int(f.Fd())) }

// mknodAt creates a device node or FIFO named base in the directory dirfd.
func mknodAt(dirfd int, base string, mode, major, minor uint32) error {
	return unix.Mknodat(dirfd, base, mode, int(unix.Mkdev(major, minor)))
}
