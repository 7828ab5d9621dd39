package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/herd-cluster/herd/blockdev/disksel"
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
func FindDisk(ctx context.Context, rule string, wait time.Duration) (string, error) {
	r, err := disksel.Parse(rule)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNoDisk, err)
	}
	deadline := time.Now().Add(wait)
	for {
		mounts, _ := os.ReadFile("/proc/mounts")
		disks, err := disksel.Scan("/sys", mounts)
		if err != nil {
			return "", fmt.Errorf("%w: %v", ErrNoDisk, err)
		}
		d, err := r.Select(disks)
		if err == nil {
			return d.Path, nil
		}
		if !errors.Is(err, disksel.ErrNoDisk) || time.Now().After(deadline) {
			return "", fmt.Errorf("%w: %v", ErrNoDisk, err)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
