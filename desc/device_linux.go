package desc

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// DeviceSize returns the size in bytes of a block device or image file
// and its logical sector size (0 for a regular file, which has none).
func DeviceSize(dev string) (size, sectorSize int64, err error) {
	f, err := os.Open(dev)
	if err != nil {
		return 0, 0, err // *fs.PathError names the operation and the path
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	if st.Mode().IsRegular() {
		return st.Size(), 0, nil
	}
	if st.Mode()&os.ModeDevice == 0 || st.Mode()&os.ModeCharDevice != 0 {
		return 0, 0, fmt.Errorf("%s is neither a block device nor an image file", dev)
	}
	sz, err := unix.IoctlGetUint64(int(f.Fd()), unix.BLKGETSIZE64)
	if err != nil {
		return 0, 0, fmt.Errorf("size of %s: %w", dev, err)
	}
	ss, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKSSZGET)
	if err != nil {
		return 0, 0, fmt.Errorf("sector size of %s: %w", dev, err)
	}
	return int64(sz), int64(ss), nil
}

// openExclusive opens dev for writing; a block device is opened with
// O_EXCL, which the kernel refuses while a filesystem or another
// exclusive user holds it.
func openExclusive(dev string) (*os.File, error) {
	flags := os.O_RDWR
	if st, err := os.Stat(dev); err == nil && st.Mode()&os.ModeDevice != 0 {
		flags |= unix.O_EXCL
	}
	f, err := os.OpenFile(dev, flags, 0)
	if err != nil {
		if errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("%w: %s: %v", ErrInUse, dev, err)
		}
		return nil, err
	}
	return f, nil
}

// rereadTable asks the kernel to re-read a block device's partition
// table; errors are ignored (image files, loop devices without
// partition scanning).
func rereadTable(f *os.File) {
	if st, err := f.Stat(); err == nil && st.Mode()&os.ModeDevice != 0 {
		_ = unix.IoctlSetInt(int(f.Fd()), unix.BLKRRPART, 0)
	}
}

// CheckNotInUse returns an error wrapping ErrInUse when dev (a block
// device or image file) is mounted (itself or one of its partitions),
// backs a loop device, or has holders (device-mapper, md).
func CheckNotInUse(dev string) error {
	abs, err := filepath.Abs(dev)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", dev, err)
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	st, err := os.Stat(abs)
	if err != nil {
		return err
	}
	var devNums map[string]bool // "maj:min" of dev and its partitions
	if st.Mode()&os.ModeDevice != 0 {
		// Find the sysfs entry by device number, so a device node with
		// another name (as inside a lab node) is recognised too.
		sys := filepath.Join("/sys/class/block", filepath.Base(abs))
		if sst, ok := st.Sys().(*syscall.Stat_t); ok {
			num := fmt.Sprintf("%d:%d", unix.Major(uint64(sst.Rdev)), unix.Minor(uint64(sst.Rdev)))
			if r, err := filepath.EvalSymlinks("/sys/dev/block/" + num); err == nil {
				sys = r
			}
		}
		name := filepath.Base(sys)
		devNums = map[string]bool{}
		if b, err := os.ReadFile(filepath.Join(sys, "dev")); err == nil {
			devNums[strings.TrimSpace(string(b))] = true
		}
		parts, _ := filepath.Glob(filepath.Join(sys, name+"*", "dev"))
		for _, p := range parts {
			if b, err := os.ReadFile(p); err == nil {
				devNums[strings.TrimSpace(string(b))] = true
			}
		}
		holders, _ := os.ReadDir(filepath.Join(sys, "holders"))
		if len(holders) > 0 {
			return fmt.Errorf("%w: %s is held by %s", ErrInUse, dev, holders[0].Name())
		}
	}
	if mf, err := os.Open("/proc/self/mountinfo"); err == nil {
		defer mf.Close()
		sc := bufio.NewScanner(mf)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) < 10 {
				continue
			}
			src := ""
			for i, w := range f {
				if w == "-" && i+2 < len(f) {
					src = f[i+2]
				}
			}
			if devNums[f[2]] || src == abs {
				return fmt.Errorf("%w: %s is mounted on %s", ErrInUse, dev, f[4])
			}
		}
	}
	if loop := backingLoop(st); loop != "" {
		return fmt.Errorf("%w: %s backs loop device %s", ErrInUse, dev, loop)
	}
	return nil
}

// backingLoop returns the loop device whose backing file is the file
// (or, for a block device, the device number) st describes, or "". It
// compares the device and inode numbers the
// kernel reports (LOOP_GET_STATUS64), not the backing path: the same
// path names different files in different mount namespaces (every lab
// node has its own disk at the same path), and a path can be renamed.
func backingLoop(st os.FileInfo) string {
	sst, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	loops, _ := filepath.Glob("/sys/block/loop*/loop")
	for _, l := range loops {
		name := filepath.Base(filepath.Dir(l))
		f, err := os.Open("/dev/" + name)
		if err != nil {
			continue
		}
		info, err := unix.IoctlLoopGetStatus64(int(f.Fd()))
		f.Close()
		if err != nil {
			continue
		}
		isDev := st.Mode()&os.ModeDevice != 0
		if (isDev && info.Rdevice == uint64(sst.Rdev)) || (!isDev && info.Device == uint64(sst.Dev) && info.Inode == sst.Ino) {
			return "/dev/" + name
		}
	}
	return ""
}
