package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
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
// back from the interface. An interface that already has an IPv4 address
// (the agent of a stage 2, whose kernel kept the first agent's
// configuration) is used as it is. ctx bounds the whole attempt.
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
	if l, ok := ipv4Lease(ifc); ok {
		fmt.Fprintf(console, "herd: %s already has %s, no DHCP\n", iface, l.IP)
		return l, nil
	}
	cmd := exec.CommandContext(ctx, "udhcpc", "-i", iface, "-s", UDHCPCScript, "-n", "-q", "-f", "-t", "3", "-T", "2")
	cmd.Stdout, cmd.Stderr = console, console
	if err := cmd.Run(); err != nil {
		return Lease{}, fmt.Errorf("udhcpc on %s: %w", iface, err)
	}
	if l, ok := ipv4Lease(ifc); ok {
		return l, nil
	}
	return Lease{}, fmt.Errorf("udhcpc left no IPv4 address on %s", iface)
}

// ipv4Lease returns the first IPv4 address of an interface that is up.
func ipv4Lease(ifc *net.Interface) (Lease, bool) {
	if fresh, err := net.InterfaceByName(ifc.Name); err == nil {
		ifc = fresh
	}
	if ifc.Flags&net.FlagUp == 0 {
		return Lease{}, false
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return Lease{}, false
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
			return Lease{Interface: ifc.Name, MAC: strings.ToLower(ifc.HardwareAddr.String()), IP: ipn.IP.String()}, true
		}
	}
	return Lease{}, false
}

// Reboot flushes file system buffers and restarts the machine at once.
func Reboot() error {
	unix.Sync()
	return unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
}

// MountTmpfs creates dir and mounts an empty tmpfs on it.
func MountTmpfs(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return unix.Mount("tmpfs", dir, "tmpfs", 0, "mode=0755")
}

// SwitchRoot moves /dev, /proc and /sys under dir (where it has those
// folders) and executes busybox switch_root, which empties the initramfs,
// makes dir the root and runs init as pid 1. It returns only on failure.
func SwitchRoot(dir, init string) error {
	for _, m := range []string{"/dev", "/proc", "/sys"} {
		if fi, err := os.Stat(dir + m); err == nil && fi.IsDir() {
			unix.Mount(m, dir+m, "", unix.MS_MOVE, "")
		}
	}
	sr, err := exec.LookPath("switch_root")
	if err != nil {
		return err
	}
	return unix.Exec(sr, append([]string{"switch_root", dir}, initArgs(init)...), os.Environ())
}
