package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// A machine whose rule picks no disk says which disks it saw and which
// storage controllers it has, with their drivers: a controller without
// one is the usual cause.
func TestFindDiskReason(t *testing.T) {
	sys := t.TempDir()
	write := func(p, v string) {
		p = filepath.Join(sys, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("block/sda/size", "163840\n")
	write("block/sda/removable", "0\n")
	write("block/sda/device/model", "QEMU HARDDISK\n")
	write("devices/ahci/x", "")
	for name, attrs := range map[string][3]string{
		"0000:00:1f.2": {"0x8086", "0x2922", "0x010601"}, // AHCI, bound
		"0000:00:04.0": {"0x1000", "0x0079", "0x010400"}, // MegaRAID, no driver
		"0000:00:02.0": {"0x8086", "0x10d3", "0x020000"}, // a NIC: not listed
	} {
		d := "bus/pci/devices/" + name + "/"
		write(d+"modalias", "pci:v0000"+attrs[0][2:]+"\n")
		write(d+"vendor", attrs[0]+"\n")
		write(d+"device", attrs[1]+"\n")
		write(d+"class", attrs[2]+"\n")
	}
	if err := os.Symlink("../../../../devices/ahci", filepath.Join(sys, "bus/pci/devices/0000:00:1f.2/driver")); err != nil {
		t.Fatal(err)
	}
	mounts := filepath.Join(sys, "mounts")
	write("mounts", "")
	_, err := findDisk(context.Background(), sys, mounts, "size>=1T", 0)
	if !errors.Is(err, ErrNoDisk) {
		t.Fatalf("err = %v", err)
	}
	want := `agent: no disk to write: disksel: no disk fits rule size>=1T; disks: /dev/sda 80.0MiB model="QEMU HARDDISK"; storage controllers: 0000:00:04.0 1000:0079 NO DRIVER in this image, 0000:00:1f.2 8086:2922 ahci`
	if err.Error() != want {
		t.Fatalf("err = %v\nwant  %s", err, want)
	}
	if got := pciControllers(sys, "02", "network controllers"); got != "network controllers: 0000:00:02.0 8086:10d3 NO DRIVER in this image" {
		t.Fatalf("network controllers: %s", got)
	}
	d, err := findDisk(context.Background(), sys, mounts, "auto", 0)
	if err != nil || d.Path != "/dev/sda" {
		t.Fatalf("auto = %q, %v", d, err)
	}
}

func TestTailLines(t *testing.T) {
	got := tailLines("<6>[    0.1] a\n<4>[    0.2] b\n\n<3>[    0.3] c\nplain\n", 3)
	want := []string{"[    0.2] b", "[    0.3] c", "plain"}
	if len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("tailLines = %q", got)
	}
	if len(tailLines("", 5)) != 0 {
		t.Fatal("lines from nothing")
	}
	// As root on Linux the kernel's own log can be read.
	if os.Geteuid() == 0 && len(KernelLog(5)) == 0 {
		t.Fatal("no kernel log read as root")
	}
}
