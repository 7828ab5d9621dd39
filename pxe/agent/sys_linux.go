package agent

import (
	"net"
	"os"
	"os/exec"
	"strings"

	"golang.org/x/sys/unix"
)

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
