//go:build !linux

package blockdev

import (
	"fmt"
	"io"
	"os"
)

func deviceSize(f *os.File) (int64, error) {
	n, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", f.Name(), err)
	}
	_, err = f.Seek(0, io.SeekStart)
	return n, err
}

func zeroRange(f *os.File, off, n int64, isDev bool) error { return writeZeros(f, off, n) }

func dataExtents(f *os.File, size int64) ([]Extent, bool, error) { return nil, false, nil }

func devNumbers(rdev uint64) (uint32, uint32) { return uint32(rdev >> 8), uint32(rdev & 0xff) }

func openExclusive(path string) (*os.File, error) { return os.OpenFile(path, os.O_WRONLY, 0) }

func syncFS(f *os.File) error { return f.Sync() }

func mknodAt(dirfd int, base string, mode, major, minor uint32) error {
	return fmt.Errorf("device nodes: %w on this OS", ErrUnsupported)
}
