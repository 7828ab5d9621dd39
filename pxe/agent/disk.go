package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/herd-cluster/herd/blockdev/disksel"
	"github.com/herd-cluster/herd/pxe/kmod"
)

// DiskDest is the destination herd deploy names for a raw image: "this
// node's disk", which each agent's herd recv maps to the device its
// rule picked (herd recv --disk-dest). The sender cannot know the
// device: with a rule, it differs from machine to machine.
const DiskDest = "herd:disk"

// ErrNoDisk means the agent found no disk its rule (herd.disk) picks,
// or several. It is reported to the server with the disks it saw.
var ErrNoDisk = errors.New("agent: no disk to write")

// FindDisk returns the device the rule picks among this machine's
// disks (sysfs and /proc/mounts). Disks appear some time after their
// driver loads, so while none fits it looks again every second for up
// to wait; several that fit is an error at once.
func FindDisk(ctx context.Context, rule string, wait time.Duration) (disksel.Disk, error) {
	return findDisk(ctx, "/sys", "/proc/mounts", rule, wait)
}

func findDisk(ctx context.Context, sys, mountsFile, rule string, wait time.Duration) (disksel.Disk, error) {
	r, err := disksel.Parse(rule)
	if err != nil {
		return disksel.Disk{}, fmt.Errorf("%w: %v", ErrNoDisk, err)
	}
	deadline := time.Now().Add(wait)
	for {
		mounts, _ := os.ReadFile(mountsFile)
		disks, err := disksel.Scan(sys, mounts)
		if err != nil {
			return disksel.Disk{}, fmt.Errorf("%w: %v", ErrNoDisk, err)
		}
		d, err := r.Select(disks)
		if err == nil {
			return d, nil
		}
		if !errors.Is(err, disksel.ErrNoDisk) || time.Now().After(deadline) {
			return disksel.Disk{}, fmt.Errorf("%w: %v; %s", ErrNoDisk, err, storageControllers(sys))
		}
		select {
		case <-ctx.Done():
			return disksel.Disk{}, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// storageControllers describes the machine's PCI storage controllers
// (class 01xxxx) and the driver of each, for the reason of a machine
// without a disk: a controller with no driver is the usual cause.
func storageControllers(sys string) string {
	return pciControllers(sys, "01", "storage controllers")
}

// pciControllers describes the PCI devices whose class starts with
// class (two hex digits), each with its vendor:device and driver.
func pciControllers(sys, class, label string) string {
	devs, _ := kmod.Devices(sys)
	var parts []string
	for _, d := range devs {
		if d.Bus != "pci" || !strings.HasPrefix(strings.TrimPrefix(d.Class, "0x"), class) {
			continue
		}
		drv := d.Driver
		if drv == "" {
			drv = "NO DRIVER in this image"
		}
		parts = append(parts, fmt.Sprintf("%s %s:%s %s", d.Name, strings.TrimPrefix(d.Vendor, "0x"), strings.TrimPrefix(d.DeviceID, "0x"), drv))
	}
	if len(parts) == 0 {
		return label + ": none found"
	}
	return label + ": " + strings.Join(parts, ", ")
}
