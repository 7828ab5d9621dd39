package harness

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// attachLoop binds file to a free loop device and returns its path and
// device number. It retries when another process grabs the same free device
// first.
func attachLoop(file string) (string, uint64, error) {
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return "", 0, fmt.Errorf("open /dev/loop-control: %w", err)
	}
	defer ctl.Close()
	back, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		return "", 0, fmt.Errorf("open disk image %s: %w", file, err)
	}
	defer back.Close()
	for attempt := 0; attempt < 50; attempt++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return "", 0, fmt.Errorf("find free loop device: %w", err)
		}
		path := fmt.Sprintf("/dev/loop%d", n)
		dev, err := openLoopDev(path, n)
		if err != nil {
			return "", 0, err
		}
		cfg := unix.LoopConfig{Fd: uint32(back.Fd())}
		copy(cfg.Info.File_name[:], file)
		err = unix.IoctlLoopConfigure(int(dev.Fd()), &cfg)
		if err == nil {
			var st unix.Stat_t
			serr := unix.Fstat(int(dev.Fd()), &st)
			dev.Close()
			if serr != nil {
				_ = detachLoop(path)
				return "", 0, fmt.Errorf("stat %s: %w", path, serr)
			}
			return path, st.Rdev, nil
		}
		dev.Close()
		if !errors.Is(err, unix.EBUSY) {
			return "", 0, fmt.Errorf("attach %s to %s: %w", file, path, err)
		}
		time.Sleep(time.Duration(attempt+1) * 5 * time.Millisecond)
	}
	return "", 0, fmt.Errorf("attach %s: no free loop device: %w", file, ErrBusy)
}

// openLoopDev opens /dev/loopN, creating the device node if the kernel
// made the device but no node exists (as in some containers).
func openLoopDev(path string, n int) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		if merr := unix.Mknod(path, unix.S_IFBLK|0o660, int(unix.Mkdev(7, uint32(n)))); merr != nil && !errors.Is(merr, os.ErrExist) {
			return nil, fmt.Errorf("create %s: %w", path, merr)
		}
		f, err = os.OpenFile(path, os.O_RDWR, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return f, nil
}

// detachLoop releases a loop device. If something still holds it open the
// kernel detaches it when the last user closes it.
func detachLoop(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	err = unix.IoctlSetInt(int(f.Fd()), unix.LOOP_CLR_FD, 0)
	if err != nil && !errors.Is(err, unix.ENXIO) {
		return fmt.Errorf("detach %s: %w", path, err)
	}
	return nil
}

// loopsBackedUnder returns the loop devices whose backing file lies in dir.
func loopsBackedUnder(dir string) []string {
	ents, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var out []string
	prefix := strings.TrimSuffix(dir, "/") + "/"
	for _, p := range ents {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if strings.HasPrefix(strings.TrimSpace(string(b)), prefix) {
			out = append(out, "/dev/"+filepath.Base(filepath.Dir(filepath.Dir(p))))
		}
	}
	return out
}

// devNumber returns the device number of a block device node.
func devNumber(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("stat %s: %w", path, err)
	}
	return st.Rdev, nil
}
