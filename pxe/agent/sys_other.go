//go:build !linux

package agent

import (
	"context"
	"errors"
	"io"
)

// UDHCPCScript is the udhcpc script the initramfs holds.
const UDHCPCScript = "/etc/herd/udhcpc.sh"

var errNotLinux = errors.New("agent: only runs on Linux")

// DHCP is only implemented on Linux.
func DHCP(ctx context.Context, iface string, console io.Writer) (Lease, error) {
	return Lease{}, errNotLinux
}

// Reboot is only implemented on Linux.
func Reboot() error { return errNotLinux }

// MountTmpfs is only implemented on Linux.
func MountTmpfs(dir string) error { return errNotLinux }

// SwitchRoot is only implemented on Linux.
func SwitchRoot(dir, init string) error { return errNotLinux }
