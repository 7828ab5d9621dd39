package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// UDHCPCScript is the udhcpc script the initramfs holds (see
// pxe/initramfs.UDHCPCScript).
const UDHCPCScript = "/etc/herd/udhcpc.sh"

// DHCP waits for iface to appear, runs busybox udhcpc on it once (the
// script configures the address and route) and returns the lease read
// back from the interface. ctx bounds the whole attempt.
func DHCP(ctx context.Context, iface string, console io.Writer) (Lease, error) {
	var ifc *net.Interface
	for {
		var err error
		if ifc, err = net.InterfaceByName(iface); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return Lease{}, fmt.Errorf("no interface %s: %w", iface, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	cmd := exec.CommandContext(ctx, "udhcpc", "-i", iface, "-s", UDHCPCScript, "-n", "-q", "-f", "-t", "3", "-T", "2")
	cmd.Stdout, cmd.Stderr = console, console
	if err := cmd.Run(); err != nil {
		return Lease{}, fmt.Errorf("udhcpc on %s: %w", iface, err)
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return Lease{}, fmt.Errorf("addresses of %s: %w", iface, err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
			return Lease{Interface: iface, MAC: strings.ToLower(ifc.HardwareAddr.String()), IP: ipn.IP.String()}, nil
		}
	}
	return Lease{}, fmt.Errorf("udhcpc left no IPv4 address on %s", iface)
}

// Reboot flushes file system buffers and restarts the machine at once.
func Reboot() error {
	unix.Sync()
	return unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
}
