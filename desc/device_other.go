//go:build !linux

package desc

import (
	"fmt"
	"os"
)

// DeviceSize returns the size of an image file; block devices need Linux.
func DeviceSize(dev string) (size, sectorSize int64, err error) {
	st, err := os.Stat(dev)
	if err != nil {
		return 0, 0, err
	}
	if !st.Mode().IsRegular() {
		return 0, 0, fmt.Errorf("%s: %w", dev, errNotSupported)
	}
	return st.Size(), 0, nil
}

func openExclusive(dev string) (*os.File, error) { return os.OpenFile(dev, os.O_RDWR, 0) }

func rereadTable(*os.File) {}

// CheckNotInUse is only implemented on Linux.
func CheckNotInUse(dev string) error { return fmt.Errorf("check %s: %w", dev, errNotSupported) }
