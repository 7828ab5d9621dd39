package desc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// Runner runs an external command and returns its combined output.
type Runner func(ctx context.Context, name string, args ...string) ([]byte, error)

// execRunner is the default Runner: os/exec, with the command's last
// output line in the error.
func execRunner(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:]
		}
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, msg)
	}
	return out, nil
}

// ApplyOption changes how Apply works.
type ApplyOption func(*applyOpts)

type applyOpts struct {
	dryRun bool
	out    io.Writer
	run    Runner
}

// WithDryRun makes Apply check the plan and the device and print the
// table and the commands it would run to w, writing nothing.
func WithDryRun(w io.Writer) ApplyOption {
	return func(o *applyOpts) { o.dryRun, o.out = true, w }
}

// WithLog makes Apply print one line per step to w.
func WithLog(w io.Writer) ApplyOption { return func(o *applyOpts) { o.out = w } }

// WithRunner replaces the function that runs losetup and mkfs tools.
func WithRunner(r Runner) ApplyOption { return func(o *applyOpts) { o.run = r } }

// loopPlaceholder stands for the loop device in printed commands.
const loopPlaceholder = "$LOOP"

// MkfsCommand returns the command that makes pp's filesystem on dev, or
// nil when pp gets none.
func MkfsCommand(pp PlannedPart, dev string) []string {
	var cmd []string
	switch fs := pp.FS; fs {
	case "ext2", "ext3", "ext4":
		cmd = []string{"mkfs." + fs, "-F", "-q"}
		if pp.Label != "" {
			cmd = append(cmd, "-L", pp.Label)
		}
		if pp.UUID != "" {
			cmd = append(cmd, "-U", pp.UUID)
		}
	case "xfs":
		cmd = []string{"mkfs.xfs", "-f", "-q"}
		if pp.Label != "" {
			cmd = append(cmd, "-L", pp.Label)
		}
		if pp.UUID != "" {
			cmd = append(cmd, "-m", "uuid="+pp.UUID)
		}
	case "vfat":
		cmd = []string{"mkfs.vfat"}
		if pp.Label != "" {
			cmd = append(cmd, "-n", pp.Label)
		}
		if pp.UUID != "" {
			cmd = append(cmd, "-i", strings.ReplaceAll(pp.UUID, "-", ""))
		}
	case "swap":
		cmd = []string{"mkswap", "-f"}
		if pp.Label != "" {
			cmd = append(cmd, "-L", pp.Label)
		}
		if pp.UUID != "" {
			cmd = append(cmd, "-U", pp.UUID)
		}
	default:
		return nil
	}
	return append(cmd, dev)
}

// Apply writes plan's table to dev (a block device or an image file)
// and makes the filesystems. Everything is encoded and checked before
// the first byte is written: the plan must be laid out for exactly
// dev's size and sector size, and dev must not be mounted or used (by a
// mount, a loop device or a holder such as device-mapper); otherwise
// Apply returns an error wrapping ErrInUse or ErrInvalidPlan and leaves
// dev untouched. Each filesystem is made through its own loop device
// (losetup --offset --sizelimit), so no partition nodes are needed;
// every loop device is detached before Apply returns.
func Apply(ctx context.Context, plan *Plan, dev string, opts ...ApplyOption) error {
	o := applyOpts{out: io.Discard, run: execRunner}
	for _, f := range opts {
		f(&o)
	}
	writes, err := plan.Encode()
	if err != nil {
		return err
	}
	size, ss, err := DeviceSize(dev)
	if err != nil {
		return err
	}
	if ss != 0 && ss != plan.SectorSize { // an image file (ss 0) takes any sector size
		return fmt.Errorf("%w: plan has %d-byte sectors, %s has %d", ErrInvalidPlan, plan.SectorSize, dev, ss)
	}
	if size/plan.SectorSize != plan.DiskSectors {
		return fmt.Errorf("%w: plan is for a disk of %d sectors, %s has %d: lay the desc out for this device", ErrInvalidPlan, plan.DiskSectors, dev, size/plan.SectorSize)
	}
	if err := CheckNotInUse(dev); err != nil {
		return err
	}
	if plan.Table == MBR {
		// A stale backup GPT header at the end would make tools doubt
		// the new MBR: zero it when it is there.
		if stale, err := hasGPTAt(dev, (plan.DiskSectors-1)*plan.SectorSize); err == nil && stale {
			writes = append(writes, Write{Offset: (plan.DiskSectors - 1) * plan.SectorSize, Bytes: make([]byte, plan.SectorSize), What: "zeros over an old backup GPT header"})
		}
	}

	if o.dryRun {
		fmt.Fprintf(o.out, "dry run: nothing is written to %s\n%s", dev, plan)
		for _, w := range writes {
			fmt.Fprintf(o.out, "write %d bytes at byte %d (sector %d): %s\n", len(w.Bytes), w.Offset, w.Offset/plan.SectorSize, w.What)
		}
		for _, pp := range plan.Parts {
			cmd := MkfsCommand(pp, loopPlaceholder)
			if cmd == nil {
				continue
			}
			fmt.Fprintf(o.out, "LOOP=$(losetup --find --show --offset %d --sizelimit %d %s)\n", pp.Offset(plan.SectorSize), pp.Bytes(plan.SectorSize), dev)
			fmt.Fprintf(o.out, "%s\nlosetup -d $LOOP\n", strings.Join(cmd, " "))
		}
		return nil
	}

	if err := writeTable(dev, writes); err != nil {
		return err
	}
	fmt.Fprintf(o.out, "wrote %s table to %s (%d partitions)\n", plan.Table, dev, len(plan.Parts))
	for _, pp := range plan.Parts {
		if MkfsCommand(pp, "") == nil {
			continue
		}
		if err := mkfsPart(ctx, o, plan, pp, dev); err != nil {
			return err
		}
	}
	return nil
}

// mkfsPart makes pp's filesystem through a loop device it detaches after.
func mkfsPart(ctx context.Context, o applyOpts, plan *Plan, pp PlannedPart, dev string) (err error) {
	off, n := pp.Offset(plan.SectorSize), pp.Bytes(plan.SectorSize)
	out, err := o.run(ctx, "losetup", "--find", "--show", "--offset", fmt.Sprint(off), "--sizelimit", fmt.Sprint(n), dev)
	if err != nil {
		return fmt.Errorf("partition %d: attach loop device: %w", pp.Index, err)
	}
	loop := strings.TrimSpace(string(out))
	if !strings.HasPrefix(loop, "/dev/") {
		return fmt.Errorf("partition %d: losetup printed %q, want a /dev path", pp.Index, loop)
	}
	defer func() {
		// Detach even when ctx is cancelled.
		if _, derr := o.run(context.WithoutCancel(ctx), "losetup", "-d", loop); derr != nil && err == nil {
			err = fmt.Errorf("partition %d: detach %s: %w", pp.Index, loop, derr)
		}
	}()
	cmd := MkfsCommand(pp, loop)
	if _, err := o.run(ctx, cmd[0], cmd[1:]...); err != nil {
		return fmt.Errorf("partition %d: make %s: %w", pp.Index, pp.FS, err)
	}
	fmt.Fprintf(o.out, "partition %d: %s\n", pp.Index, strings.Join(MkfsCommand(pp, dev+fmt.Sprintf("@%d", off)), " "))
	return nil
}

// writeTable writes all writes to dev, syncs, and asks the kernel to
// re-read the table.
func writeTable(dev string, writes []Write) error {
	f, err := openExclusive(dev)
	if err != nil {
		return err
	}
	for _, w := range writes {
		if _, err := f.WriteAt(w.Bytes, w.Offset); err != nil {
			f.Close()
			return fmt.Errorf("write table to %s at %d: %w", dev, w.Offset, err)
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", dev, err)
	}
	rereadTable(f)
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", dev, err)
	}
	return nil
}

// hasGPTAt reports whether a GPT header signature sits at off in dev.
func hasGPTAt(dev string, off int64) (bool, error) {
	f, err := os.Open(dev)
	if err != nil {
		return false, err
	}
	defer f.Close()
	b := make([]byte, 8)
	if _, err := f.ReadAt(b, off); err != nil {
		return false, err
	}
	return bytes.Equal(b, []byte(gptSignature)), nil
}

// errNotSupported is returned on systems without block-device support.
var errNotSupported = errors.New("desc: not supported on this system")
