package disksel

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/herd-cluster/herd/internal/sysfs"
)

// Scan lists the disks under sys/block (sysfs mounted at sys) that sit
// on a device (loop, ram, zram, device-mapper and md devices have none
// and are not disks to write), with what /proc/mounts (mounts) says is
// mounted.
func Scan(sys string, mounts []byte) ([]Disk, error) {
	ents, err := os.ReadDir(filepath.Join(sys, "block"))
	if err != nil {
		return nil, fmt.Errorf("disksel: %w", err)
	}
	mounted := mountedDevices(mounts)
	var out []Disk
	for _, e := range ents {
		dir := filepath.Join(sys, "block", e.Name())
		if _, err := os.Stat(filepath.Join(dir, "device")); err != nil {
			continue
		}
		d := Disk{Name: e.Name(), Path: "/dev/" + e.Name()}
		if n, err := strconv.ParseInt(attr(dir, "size"), 10, 64); err == nil {
			d.Size = n * 512
		}
		d.Removable = attr(dir, "removable") == "1"
		d.ReadOnly = attr(dir, "ro") == "1"
		d.Model = attr(dir, "device/model")
		d.Serial = attr(dir, "device/serial") // NVMe
		if d.Serial == "" {
			d.Serial = attr(dir, "serial") // virtio
		}
		if d.Serial == "" {
			d.Serial = vpdSerial(filepath.Join(dir, "device", "vpd_pg80")) // SCSI, SATA
		}
		d.Paths = byPath(sys, e.Name())
		d.Mounted = mounted[d.Name]
		if !d.Mounted {
			parts, _ := os.ReadDir(dir)
			for _, p := range parts {
				if strings.HasPrefix(p.Name(), e.Name()) && mounted[p.Name()] {
					d.Mounted = true
				}
			}
		}
		out = append(out, d)
	}
	return out, nil
}

// attr reads the sysfs attribute name of the device folder dir.
func attr(dir, name string) string { return sysfs.Attr(filepath.Join(dir, name)) }

// vpdSerial reads the unit serial number page (0x80) of a SCSI device:
// a 4-byte header, then the serial.
func vpdSerial(p string) string {
	b, err := os.ReadFile(p)
	if err != nil || len(b) < 4 || b[1] != 0x80 {
		return ""
	}
	n := int(b[2])<<8 | int(b[3])
	if 4+n > len(b) {
		n = len(b) - 4
	}
	return strings.TrimSpace(string(b[4 : 4+n]))
}

// mountedDevices returns the kernel names of the block devices mounted
// according to a /proc/mounts text.
func mountedDevices(mounts []byte) map[string]bool {
	out := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(mounts))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 0 && strings.HasPrefix(f[0], "/dev/") {
			out[strings.TrimPrefix(f[0], "/dev/")] = true
		}
	}
	return out
}
