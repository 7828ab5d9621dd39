package disksel

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// byPath returns the names udev gives disk name under /dev/disk/by-path
// (its path_id: the bus path from the PCI device down to the disk), as
// far as herd knows the bus: virtio, NVMe, SATA behind libata, SAS and
// other SCSI hosts (RAID controllers). The agent's initramfs has no
// udev, so herd works them out from sysfs itself. Nil when the disk sits
// on a bus it does not know; a name never names another disk.
func byPath(sys, name string) []string {
	root, err := filepath.EvalSymlinks(sys)
	if err != nil {
		return nil
	}
	dev, err := filepath.EvalSymlinks(filepath.Join(sys, "block", name))
	if err != nil {
		return nil
	}
	devices := filepath.Join(root, "devices") + "/"
	nsid := attr(dev, "nsid")
	var path, compat []string // parts, outermost first once done
	ata, virtio, transport, parent := false, false, false, false
	for cur := filepath.Dir(dev); strings.HasPrefix(cur, devices); cur = filepath.Dir(cur) {
		switch subsystem(cur) {
		case "scsi":
			if devtype(cur) != "scsi_device" {
				continue
			}
			transport = true
			part, next, isATA, ok := scsiPart(root, cur)
			if !ok {
				return nil
			}
			path = append(path, part)
			if isATA {
				ata = true
				compat = append(compat, strings.SplitN(part, ".", 2)[0])
			} else {
				compat = append(compat, part)
			}
			cur = next
		case "virtio":
			transport, virtio = true, true
			cur = skip(cur, "virtio")
		case "nvme":
			if nsid == "" {
				continue
			}
			path = append(path, "nvme-"+nsid)
			compat = append(compat, "nvme-"+nsid)
			transport, parent = true, true
			cur = skip(cur, "nvme")
		case "pci":
			part := "pci-" + filepath.Base(cur)
			path = append(path, part)
			compat = append(compat, part)
			parent = true
			cur = skip(cur, "pci")
		}
	}
	if !transport || !parent {
		return nil
	}
	join := func(parts []string) string {
		out := make([]string, len(parts))
		for i, p := range parts {
			out[len(parts)-1-i] = p
		}
		return strings.Join(out, "-")
	}
	p := join(path)
	names := []string{p}
	if ata {
		names = append(names, join(compat))
	}
	if virtio && strings.HasPrefix(p, "pci-") {
		names = append(names, "virtio-"+p)
	}
	return names
}

// scsiPart names a SCSI device (dir, named host:bus:target:lun) by its
// transport, and returns the folder the walk goes on from.
func scsiPart(sys, dir string) (part, next string, isATA, ok bool) {
	var h, b, t, l uint64
	if _, err := fmt.Sscanf(filepath.Base(dir), "%d:%d:%d:%d", &h, &b, &t, &l); err != nil {
		return "", "", false, false
	}
	switch {
	case strings.Contains(dir, "/end_device-"):
		target := ancestor(dir, "scsi_target")
		if target == "" {
			return "", "", false, false
		}
		end := filepath.Dir(target)
		port := filepath.Dir(end)
		sasdev := filepath.Join(sys, "class", "sas_device", filepath.Base(end))
		addr := attr(sasdev, "sas_address")
		phys := attr(filepath.Join(sys, "class", "sas_port", filepath.Base(port)), "num_phys")
		if addr == "" || phys == "" {
			return "", "", false, false
		}
		if phys != "1" {
			// A wide port: the disk's own address.
			return "sas-" + addr + "-" + lun(l), dir, false, true
		}
		phy := attr(sasdev, "phy_identifier")
		if phy == "" {
			return "", "", false, false
		}
		if exp := attr(filepath.Join(sys, "class", "sas_device", filepath.Base(filepath.Dir(port))), "sas_address"); exp != "" {
			return "sas-exp" + exp + "-phy" + phy + "-" + lun(l), dir, false, true
		}
		return "sas-phy" + phy + "-" + lun(l), dir, false, true
	case strings.Contains(dir, "/rport-"), strings.Contains(dir, "/session"), strings.Contains(dir, "/vmbus_"), strings.Contains(dir, "/VMBUS"):
		// Fibre Channel, iSCSI, Hyper-V: not disks herd clones onto.
		return "", "", false, false
	case strings.Contains(dir, "/ata"):
		host := ancestor(dir, "scsi_host")
		if host == "" {
			return "", "", false, false
		}
		portNo := attr(filepath.Join(sys, "class", "ata_port", filepath.Base(filepath.Dir(host))), "port_no")
		if portNo == "" {
			return "", "", false, false
		}
		if b != 0 {
			// Behind a port multiplier.
			return fmt.Sprintf("ata-%s.%d.0", portNo, b), dir, true, true
		}
		return fmt.Sprintf("ata-%s.%d", portNo, t), dir, true, true
	}
	// Any other host (a RAID controller): its number among the hosts of
	// the same controller.
	host := ancestor(dir, "scsi_host")
	if host == "" {
		return "", "", false, false
	}
	base := -1
	ents, _ := os.ReadDir(filepath.Dir(host))
	for _, e := range ents {
		if n, err := strconv.Atoi(strings.TrimPrefix(e.Name(), "host")); err == nil && strings.HasPrefix(e.Name(), "host") && (base < 0 || n < base) {
			base = n
		}
	}
	if base < 0 || int(h) < base {
		return "", "", false, false
	}
	return fmt.Sprintf("scsi-%d:%d:%d:%d", int(h)-base, b, t, l), host, false, true
}

// lun formats a SCSI LUN as udev does.
func lun(l uint64) string {
	if l < 256 {
		return "lun-" + strconv.FormatUint(l, 10)
	}
	return fmt.Sprintf("lun-0x%04x%04x00000000", l&0xffff, (l>>16)&0xffff)
}

// subsystem returns the name of the subsystem dir's device belongs to.
func subsystem(dir string) string {
	l, err := os.Readlink(filepath.Join(dir, "subsystem"))
	if err != nil {
		return ""
	}
	return filepath.Base(l)
}

// devtype returns DEVTYPE from dir's uevent.
func devtype(dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, "uevent"))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "DEVTYPE="); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// ancestor returns the nearest folder above dir whose device is a SCSI
// device of type typ, or "".
func ancestor(dir, typ string) string {
	for cur := filepath.Dir(dir); cur != "/" && cur != "."; cur = filepath.Dir(cur) {
		if subsystem(cur) == "scsi" && devtype(cur) == typ {
			return cur
		}
	}
	return ""
}

// skip returns the topmost of the run of folders from dir up whose
// devices belong to subsystem sub (a chain of PCI bridges counts once).
func skip(dir, sub string) string {
	for {
		up := filepath.Dir(dir)
		if up == dir || subsystem(up) != sub {
			return dir
		}
		dir = up
	}
}
