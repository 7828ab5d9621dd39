package disksel

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeSys builds a sysfs tree: devs maps a folder under devices/ to
// its subsystem and DEVTYPE ("pci", "scsi:scsi_host", …); attrs are
// files to write; disks are block devices (their folder under
// devices/), linked from block/.
type fakeSys struct {
	t    *testing.T
	root string
}

func newFakeSys(t *testing.T) *fakeSys {
	return &fakeSys{t: t, root: t.TempDir()}
}

func (f *fakeSys) write(p, v string) {
	p = filepath.Join(f.root, p)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// dev makes devices/path a device of subsystem sub ("scsi:scsi_device"
// also writes its DEVTYPE).
func (f *fakeSys) dev(path, sub string) {
	dir := filepath.Join(f.root, "devices", path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.t.Fatal(err)
	}
	name, typ, _ := strings.Cut(sub, ":")
	if err := os.Symlink(filepath.Join(f.root, "bus", name), filepath.Join(dir, "subsystem")); err != nil {
		f.t.Fatal(err)
	}
	if typ != "" {
		f.write(filepath.Join("devices", path, "uevent"), "MAJOR=8\nDEVTYPE="+typ+"\n")
	}
}

// disk makes devices/path (…/block/NAME) a disk of 1 GiB.
func (f *fakeSys) disk(path string) {
	f.dev(path, "block:disk")
	f.write(filepath.Join("devices", path, "size"), "2097152\n")
	f.write(filepath.Join("devices", path, "device"), "") // Scan needs a device entry
	if err := os.MkdirAll(filepath.Join(f.root, "block"), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..", "devices", path), filepath.Join(f.root, "block", filepath.Base(path))); err != nil {
		f.t.Fatal(err)
	}
}

// The names udev's path_id gives the disks of the buses servers have,
// worked out from sysfs alone.
func TestByPath(t *testing.T) {
	f := newFakeSys(t)
	// virtio-blk
	f.dev("pci0000:00/0000:00:04.0", "pci")
	f.dev("pci0000:00/0000:00:04.0/virtio1", "virtio")
	f.disk("pci0000:00/0000:00:04.0/virtio1/block/vda")
	// NVMe behind a PCIe bridge
	f.dev("pci0000:00/0000:00:1c.4", "pci")
	f.dev("pci0000:00/0000:00:1c.4/0000:3c:00.0", "pci")
	f.dev("pci0000:00/0000:00:1c.4/0000:3c:00.0/nvme/nvme0", "nvme")
	f.disk("pci0000:00/0000:00:1c.4/0000:3c:00.0/nvme/nvme0/nvme0n1")
	f.write("devices/pci0000:00/0000:00:1c.4/0000:3c:00.0/nvme/nvme0/nvme0n1/nsid", "1\n")
	// SATA on AHCI, second port
	f.dev("pci0000:00/0000:00:1f.2", "pci")
	f.dev("pci0000:00/0000:00:1f.2/ata2/host1", "scsi:scsi_host")
	f.dev("pci0000:00/0000:00:1f.2/ata2/host1/target1:0:0", "scsi:scsi_target")
	f.dev("pci0000:00/0000:00:1f.2/ata2/host1/target1:0:0/1:0:0:0", "scsi:scsi_device")
	f.disk("pci0000:00/0000:00:1f.2/ata2/host1/target1:0:0/1:0:0:0/block/sda")
	f.write("class/ata_port/ata2/port_no", "2\n")
	// A MegaRAID virtual drive: the controller's host is the first of its own
	f.dev("pci0000:00/0000:00:05.0", "pci")
	f.dev("pci0000:00/0000:00:05.0/host4", "scsi:scsi_host")
	f.dev("pci0000:00/0000:00:05.0/host4/target4:2:0", "scsi:scsi_target")
	f.dev("pci0000:00/0000:00:05.0/host4/target4:2:0/4:2:0:0", "scsi:scsi_device")
	f.disk("pci0000:00/0000:00:05.0/host4/target4:2:0/4:2:0:0/block/sdb")
	// A SAS disk on an HBA's phy 4, no expander
	f.dev("pci0000:00/0000:00:06.0", "pci")
	f.dev("pci0000:00/0000:00:06.0/host5", "scsi:scsi_host")
	f.dev("pci0000:00/0000:00:06.0/host5/port-5:0/end_device-5:0/target5:0:0", "scsi:scsi_target")
	f.dev("pci0000:00/0000:00:06.0/host5/port-5:0/end_device-5:0/target5:0:0/5:0:0:0", "scsi:scsi_device")
	f.disk("pci0000:00/0000:00:06.0/host5/port-5:0/end_device-5:0/target5:0:0/5:0:0:0/block/sdc")
	f.write("class/sas_device/end_device-5:0/sas_address", "0x5000c500a1b2c3d4\n")
	f.write("class/sas_device/end_device-5:0/phy_identifier", "4\n")
	f.write("class/sas_port/port-5:0/num_phys", "1\n")
	// … and one behind an expander
	f.dev("pci0000:00/0000:00:06.0/host5/port-5:1/expander-5:0/port-5:0:7/end_device-5:0:7/target5:0:1", "scsi:scsi_target")
	f.dev("pci0000:00/0000:00:06.0/host5/port-5:1/expander-5:0/port-5:0:7/end_device-5:0:7/target5:0:1/5:0:1:0", "scsi:scsi_device")
	f.disk("pci0000:00/0000:00:06.0/host5/port-5:1/expander-5:0/port-5:0:7/end_device-5:0:7/target5:0:1/5:0:1:0/block/sdd")
	f.write("class/sas_device/end_device-5:0:7/sas_address", "0x5000c500a1b2c3e5\n")
	f.write("class/sas_device/end_device-5:0:7/phy_identifier", "7\n")
	f.write("class/sas_port/port-5:0:7/num_phys", "1\n")
	f.write("class/sas_device/expander-5:0/sas_address", "0x500605b0000272bf\n")
	// A USB stick: a bus herd does not name (and removable anyway)
	f.dev("pci0000:00/0000:00:14.0", "pci")
	f.dev("pci0000:00/0000:00:14.0/usb1/1-2", "usb:usb_device")
	f.disk("pci0000:00/0000:00:14.0/usb1/1-2/block/sde")

	want := map[string]string{
		"vda":     "pci-0000:00:04.0 virtio-pci-0000:00:04.0",
		"nvme0n1": "pci-0000:3c:00.0-nvme-1",
		"sda":     "pci-0000:00:1f.2-ata-2.0 pci-0000:00:1f.2-ata-2",
		"sdb":     "pci-0000:00:05.0-scsi-0:2:0:0",
		"sdc":     "pci-0000:00:06.0-sas-phy4-lun-0",
		"sdd":     "pci-0000:00:06.0-sas-exp0x500605b0000272bf-phy7-lun-0",
		"sde":     "",
	}
	for name, w := range want {
		if got := strings.Join(byPath(f.root, name), " "); got != w {
			t.Errorf("%s: by-path %q, want %q", name, got, w)
		}
	}

	// A rule picks a disk by one of those names.
	disks, err := Scan(f.root, nil)
	if err != nil {
		t.Fatal(err)
	}
	for rule, want := range map[string]string{
		"/dev/disk/by-path/pci-0000:00:1f.2-ata-2":   "/dev/sda",
		"/dev/disk/by-path/pci-0000:00:1f.2-ata-2.0": "/dev/sda",
		"/dev/disk/by-path/virtio-pci-0000:00:04.0":  "/dev/vda",
		"/dev/disk/by-path/pci-0000:3C:00.0-nvme-1":  "/dev/nvme0n1",
		"path=pci-0000:00:06.0-sas-*,smallest":       "",
		"path=pci-0000:00:06.0-sas-phy4-*":           "/dev/sdc",
		"path=*-scsi-0:2:0:0":                        "/dev/sdb",
	} {
		r, err := Parse(rule)
		if err != nil {
			t.Fatalf("%s: %v", rule, err)
		}
		d, err := r.Select(disks)
		if want == "" {
			if err == nil {
				t.Errorf("%s picked %s: both SAS disks have the same size", rule, d.Path)
			}
			continue
		}
		if err != nil || d.Path != want {
			t.Errorf("%s picked %s, %v; want %s", rule, d.Path, err, want)
		}
	}
	r, _ := Parse("/dev/disk/by-path/pci-0000:00:09.0-ata-1")
	_, err = r.Select(disks)
	if err == nil || !strings.Contains(err.Error(), "path=pci-0000:00:1f.2-ata-2.0") {
		t.Fatalf("no such path: err = %v (the disks' paths should be listed)", err)
	}
	for _, bad := range []string{"/dev/disk/by-path/", "/dev/disk/by-path/a/b", "/dev/disk/by-path/pci-*", "path="} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}
