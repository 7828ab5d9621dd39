//go:build !linux

package blockdev

import (
	"fmt"
	"os"
)

func isBusy(err error) bool { return false }

func deviceInUse(dest string, fi os.FileInfo) error {
	return fmt.Errorf("device targets: %w on this OS", ErrUnsupported)
}

func fileInUse(fi os.FileInfo) error { return nil }

func freeBytes(f *os.File) (int64, error) { return 0, ErrUnsupported }

func dropCache(f *os.File) {}

func sourceMountedRW(name string, fi os.FileInfo) error { return nil }
