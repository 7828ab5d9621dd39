package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/herd-cluster/herd/pxe/kmod"
)

// ModuleIndex is where herd initramfs build stores the module index
// (pxe/initramfs.ModuleIndex).
const ModuleIndex = "/etc/herd/modules.idx"

// LoadDrivers loads the kernel modules this machine's devices ask for,
// from the index at index and the modules under /lib/modules/$(uname -r),
// and says on console what it loaded, what failed and which PCI
// devices no module of the image serves. No index (a stage 2, or an
// image built without modules) is not an error: there is nothing to
// load.
func LoadDrivers(ctx context.Context, index string, console io.Writer) error {
	data, err := os.ReadFile(index)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read module index: %w", err)
	}
	idx, err := kmod.Parse(data)
	if err != nil {
		return err
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return fmt.Errorf("uname: %w", err)
	}
	release := unix.ByteSliceToString(u.Release[:])
	l := &kmod.Loader{Index: idx, Dir: filepath.Join("/lib/modules", release)}
	res, err := l.Run(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(console, "herd: drivers loaded for this machine (%d): %s\n", len(res.Loaded), strings.Join(res.Loaded, " "))
	failed := make([]string, 0, len(res.Failed))
	for n, e := range res.Failed {
		failed = append(failed, n+" ("+e.Error()+")")
	}
	sort.Strings(failed)
	for _, f := range failed {
		fmt.Fprintf(console, "herd: driver failed: %s\n", f)
	}
	for _, d := range res.Unclaimed {
		fmt.Fprintf(console, "herd: no driver in this image for %s\n", d)
	}
	return nil
}
