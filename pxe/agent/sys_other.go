//go:build !linux

package agent

import (
	"context"
	"errors"
	"io"
)

var errNotLinux = errors.New("agent: only runs on Linux")

// NetUp is only implemented on Linux.
func NetUp(ctx context.Context, bootMAC string, console io.Writer) (Lease, error) {
	return Lease{}, errNotLinux
}

// Reboot is only implemented on Linux.
func Reboot() error { return errNotLinux }

// MountTmpfs is only implemented on Linux.
func MountTmpfs(dir string) error { return errNotLinux }

// SwitchRoot is only implemented on Linux.
func SwitchRoot(dir, init string) error { return errNotLinux }
