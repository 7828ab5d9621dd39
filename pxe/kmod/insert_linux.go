package kmod

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// insertModule loads the module file p with finit_module(2). A module
// already loaded (or built into the kernel) is not an error.
func insertModule(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	err = unix.FinitModule(int(f.Fd()), "", 0)
	switch {
	case err == nil, errors.Is(err, unix.EEXIST):
		return nil
	case errors.Is(err, unix.ENOENT):
		// The file is open: ENOENT comes from the module's init,
		// which did not find something it needs (a crypto
		// algorithm, firmware, a device).
		return fmt.Errorf("finit_module %s: its init found something missing (%w)", p, err)
	}
	return fmt.Errorf("finit_module %s: %w", p, err)
}
