package pxe

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// DebianBootFiles maps a boot folder name to where Debian's packages
// (ipxe, pxelinux, syslinux-common) install it.
var DebianBootFiles = map[string]string{
	"undionly.kpxe": "/usr/lib/ipxe/undionly.kpxe",
	"ipxe.efi":      "/usr/lib/ipxe/ipxe.efi",
	"snponly.efi":   "/usr/lib/ipxe/snponly.efi",
	"pxelinux.0":    "/usr/lib/PXELINUX/pxelinux.0",
	"lpxelinux.0":   "/usr/lib/PXELINUX/lpxelinux.0",
	"ldlinux.c32":   "/usr/lib/syslinux/modules/bios/ldlinux.c32",
	ShimFile:        "/usr/lib/shim/shimx64.efi.signed",
	GrubFile:        "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed",
}

// The Secure Boot chain's first stages, by their names in the boot
// folder: Debian's shim signed by Microsoft's UEFI CA (package
// shim-signed) and Debian's GRUB netboot image signed by Debian (package
// grub-efi-amd64-signed). Shim loads "grubx64.efi" from the folder it
// came from; GRUB then reads grub/grub.cfg over TFTP, which herd
// generates per machine.
const (
	ShimFile = "shimx64.efi"
	GrubFile = "grubx64.efi"
)

// SecureBootFiles copies the signed shim and GRUB into dir (replacing
// older copies) and returns their names; it fails naming the Debian
// package of a file this machine does not have.
func SecureBootFiles(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("pxe: create boot folder %s: %w", dir, err)
	}
	pkgs := map[string]string{ShimFile: "shim-signed", GrubFile: "grub-efi-amd64-signed"}
	var out []string
	for _, name := range []string{ShimFile, GrubFile} {
		src := DebianBootFiles[name]
		if err := copyFile(src, filepath.Join(dir, name)); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return out, fmt.Errorf("pxe: %s is missing: install Debian's %s", src, pkgs[name])
			}
			return out, err
		}
		out = append(out, name)
	}
	return out, nil
}

// PrepareBootDir creates dir and copies into it every first-stage file of
// sources (name in dir → source path; DebianBootFiles when nil) that
// exists on this machine and is not in dir yet. It returns the names
// copied and those missing on this machine.
func PrepareBootDir(dir string, sources map[string]string) (copied, missing []string, err error) {
	if sources == nil {
		sources = DebianBootFiles
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("pxe: create boot folder %s: %w", dir, err)
	}
	for name, src := range sources {
		dst := filepath.Join(dir, name)
		if _, err := os.Stat(dst); err == nil {
			continue
		}
		if err := copyFile(src, dst); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				missing = append(missing, name)
				continue
			}
			return copied, missing, err
		}
		copied = append(copied, name)
	}
	return copied, missing, nil
}

// copyFile copies src to dst through a temporary file renamed at the end.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp*")
	if err != nil {
		return fmt.Errorf("pxe: copy %s: %w", src, err)
	}
	_, err = io.Copy(tmp, in)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("pxe: copy %s to %s: %w", src, dst, err)
	}
	return nil
}
