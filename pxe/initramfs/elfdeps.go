package initramfs

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// LibDirs are the folders where shared libraries are looked up, in order
// (Debian's multiarch folders first).
var LibDirs = []string{
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib",
}

// ErrLibNotFound means a shared library a program needs is in none of the
// folders searched.
var ErrLibNotFound = errors.New("initramfs: shared library not found")

// SharedDeps returns what the ELF program at path needs to run in another
// root: its program interpreter and every shared library it needs,
// directly or through other libraries, as absolute paths in the order
// found (sorted, no duplicates). A static program needs nothing. Libraries
// are looked up by name in dirs.
func SharedDeps(path string, dirs []string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	var walk func(p string, top bool) error
	walk = func(p string, top bool) error {
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("initramfs: read %s: %w", p, err)
		}
		f, err := elf.NewFile(bytes.NewReader(data))
		if err != nil {
			return fmt.Errorf("initramfs: %s is not an ELF file: %w", p, err)
		}
		defer f.Close()
		if top {
			for _, pr := range f.Progs {
				if pr.Type != elf.PT_INTERP {
					continue
				}
				b := make([]byte, pr.Filesz)
				if _, err := pr.ReadAt(b, 0); err != nil {
					return fmt.Errorf("initramfs: %s: interpreter: %w", p, err)
				}
				interp := string(bytes.TrimRight(b, "\x00"))
				if !seen[interp] {
					seen[interp] = true
					out = append(out, interp)
				}
			}
		}
		libs, err := f.ImportedLibraries()
		if err != nil {
			return fmt.Errorf("initramfs: %s: needed libraries: %w", p, err)
		}
		for _, name := range libs {
			lp, err := findLib(name, dirs)
			if err != nil {
				return fmt.Errorf("%w: %s (needed by %s)", ErrLibNotFound, name, p)
			}
			if seen[lp] {
				continue
			}
			seen[lp] = true
			out = append(out, lp)
			if err := walk(lp, false); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(path, true); err != nil {
		return nil, err
	}
	sort.Strings(out)
	return out, nil
}

func findLib(name string, dirs []string) (string, error) {
	if filepath.IsAbs(name) {
		_, err := os.Stat(name)
		return name, err
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", os.ErrNotExist
}
