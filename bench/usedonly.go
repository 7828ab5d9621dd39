package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/herd-cluster/herd/harness"
)

const (
	usedDisk  = 2 << 30   // the golden disk of issue #5's run
	usedFiles = 300 << 20 // bytes of files on it
)

// usedResult compares a --used-only clone of an ext4 disk with a full raw
// copy of the same disk, on the same nodes.
type usedResult struct {
	Nodes       int
	DeviceBytes int64
	UsedBytes   int64
	WireUsed    int64   // on the wire, --used-only
	WireFull    int64   // on the wire, full copy
	WrittenUsed int64   // allocated on each node's disk after the --used-only clone (mean)
	WrittenFull int64   // the same after the full copy
	SecUsed     float64 // whole run
	SecFull     float64
	Method      string
	Compress    string // wire compression herd send reported
	Err         string
}

// wireBytes is what herd send's summary says crossed the wire: the
// session's count (after compression) when it gives one, else the item's.
func wireBytes(ev herdEvent) int64 {
	if ev.WireBytes > 0 {
		return ev.WireBytes
	}
	if len(ev.Stats) > 0 {
		return ev.Stats[0].WireBytes
	}
	return 0
}

// OK reports the target of issue #5: at most 1.1 × the used bytes on the
// wire, every node checked.
func (u usedResult) OK() bool {
	return u.Err == "" && u.UsedBytes > 0 && float64(u.WireUsed) <= 1.1*float64(u.UsedBytes)
}

// loops are the loop devices the bench attached itself (golden disks).
var (
	loopMu sync.Mutex
	loops  []string
)

// attachLoop attaches file read-only to a free loop device.
func attachLoop(file string) (string, error) {
	out, err := exec.Command("losetup", "--find", "--show", "--read-only", file).Output()
	if err != nil {
		return "", fmt.Errorf("losetup %s: %w", file, err)
	}
	dev := strings.TrimSpace(string(out))
	loopMu.Lock()
	loops = append(loops, dev)
	loopMu.Unlock()
	return dev, nil
}

// detachLoops detaches every loop device attachLoop made.
func detachLoops() {
	loopMu.Lock()
	defer loopMu.Unlock()
	for _, d := range loops {
		_ = exec.Command("losetup", "--detach", d).Run()
	}
	loops = nil
}

// makeExt4 builds a disk image of size bytes holding an ext4 filesystem
// with about files bytes of random files (incompressible, like binaries)
// and a few small text files.
func makeExt4(dir string, size, files int64) (string, error) {
	root := filepath.Join(dir, "root")
	for _, d := range []string{"etc", "usr/lib/data", "home/user"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return "", err
		}
	}
	if err := os.WriteFile(filepath.Join(root, "etc/hostname"), []byte("golden\n"), 0o644); err != nil {
		return "", err
	}
	var text strings.Builder
	for i := 0; i < 100000; i++ {
		fmt.Fprintf(&text, "line %d\n", i)
	}
	if err := os.WriteFile(filepath.Join(root, "home/user/notes.txt"), []byte(text.String()), 0o644); err != nil {
		return "", err
	}
	r := rand.NewChaCha8([32]byte{'u', 's', 'e', 'd'})
	const each = 10 << 20
	for i := int64(0); i*each < files; i++ {
		f, err := os.Create(filepath.Join(root, "usr/lib/data", fmt.Sprintf("blob%02d", i)))
		if err != nil {
			return "", err
		}
		_, err = io.CopyN(f, r, min(each, files-i*each))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return "", err
		}
	}
	img := filepath.Join(dir, "ext4.img")
	if err := os.Truncate(img, 0); err != nil && !os.IsNotExist(err) {
		return "", err
	}
	f, err := os.Create(img)
	if err != nil {
		return "", err
	}
	f.Close()
	if err := os.Truncate(img, size); err != nil {
		return "", err
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "golden", "-d", root, img).CombinedOutput(); err != nil {
		return "", fmt.Errorf("mkfs.ext4: %w: %s", err, out)
	}
	return img, os.RemoveAll(root)
}

// allocated returns the bytes allocated in the file behind loop device dev.
func allocated(dev string) (int64, error) {
	b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(dev), "loop/backing_file"))
	if err != nil {
		return 0, fmt.Errorf("backing file of %s: %w", dev, err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(strings.TrimSpace(string(b)), &st); err != nil {
		return 0, err
	}
	return st.Blocks * 512, nil
}

func meanAllocated(nodes []*harness.Node) (int64, error) {
	var sum int64
	for _, n := range nodes {
		a, err := allocated(n.Disk())
		if err != nil {
			return 0, err
		}
		sum += a
	}
	return sum / int64(len(nodes)), nil
}

// usedOnlyRun clones a 2 GiB ext4 golden disk (a read-only loop device, as
// a real golden disk is a block device) to the nodes twice on unshaped
// links: a full raw copy, then --used-only.
func usedOnlyRun(e *env) usedResult {
	u := usedResult{Nodes: e.o.usedNodes, DeviceBytes: usedDisk}
	fail := func(format string, args ...any) usedResult {
		u.Err = fmt.Sprintf(format, args...)
		fmt.Printf("  used-only N=%-3d %s\n", u.Nodes, u.Err)
		return u
	}
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		return fail("mkfs.ext4 not installed (apt-get install e2fsprogs)")
	}
	img, err := makeExt4(e.work, usedDisk, usedFiles)
	if err != nil {
		return fail("golden disk: %v", err)
	}
	defer os.Remove(img)
	dev, err := attachLoop(img)
	if err != nil {
		return fail("%v", err)
	}
	want, err := sha256Prefix(dev, usedDisk)
	if err != nil {
		return fail("%v", err)
	}
	// Disks on the harness's default (a real disk): a full 2 GiB copy to
	// every node would not fit the tmpfs comfortably.
	c, err := newCluster(e, u.Nodes, usedDisk, "")
	if err != nil {
		return fail("cluster: %v", err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), e.o.timeout)
	defer cancel()

	if err := wipe(c); err != nil {
		return fail("%v", err)
	}
	full, err := runHerd(ctx, c, e.o.herd, "", herdOpts{in: dev})
	if err != nil {
		return fail("full copy: %v", err)
	}
	if err := verify(c.Nodes(), usedDisk, want); err != nil {
		return fail("full copy: %v", err)
	}
	u.SecFull = full.Wall
	u.WireFull = wireBytes(full.Summary)
	if u.WrittenFull, err = meanAllocated(c.Nodes()); err != nil {
		return fail("%v", err)
	}
	fmt.Printf("  full     N=%-3d unshaped   %7.2f s  2 GiB ext4 disk, raw\n", u.Nodes, u.SecFull)

	if err := wipe(c); err != nil {
		return fail("%v", err)
	}
	used, err := runHerd(ctx, c, e.o.herd, "", herdOpts{in: dev, sendArgs: []string{"--used-only"}})
	if err != nil {
		return fail("--used-only: %v", err)
	}
	u.SecUsed = used.Wall
	if len(used.Summary.Stats) > 0 {
		st := used.Summary.Stats[0]
		u.DeviceBytes, u.UsedBytes, u.Method = st.DeviceBytes, st.UsedBytes, st.Method
	}
	u.WireUsed, u.Compress = wireBytes(used.Summary), used.Summary.Compress
	if u.WrittenUsed, err = meanAllocated(c.Nodes()); err != nil {
		return fail("%v", err)
	}
	for _, n := range c.Nodes() {
		if out, err := exec.Command("e2fsck", "-fn", n.Disk()).CombinedOutput(); err != nil {
			return fail("--used-only: e2fsck -fn on %s: %v: %s", n.Name(), err, lastLine(out))
		}
	}
	fmt.Printf("  used     N=%-3d unshaped   %7.2f s  --used-only, every node passes e2fsck -fn\n", u.Nodes, u.SecUsed)
	return u
}

func (u usedResult) print(w io.Writer) {
	fmt.Fprintf(w, "\nused-only run (#5): 2 GiB ext4 golden disk (loop device) with %d MiB of files, %d nodes, unshaped\n", usedFiles>>20, u.Nodes)
	if u.Err != "" {
		fmt.Fprintf(w, "  FAILED: %s\n", u.Err)
		return
	}
	mib := func(b int64) float64 { return float64(b) / (1 << 20) }
	fmt.Fprintf(w, "  %-12s %10s %10s %12s %16s %8s\n", "", "device MiB", "used MiB", "on wire MiB", "written/node MiB", "seconds")
	fmt.Fprintf(w, "  %-12s %10.1f %10s %12.1f %16.1f %8.2f\n", "full raw", mib(u.DeviceBytes), "-", mib(u.WireFull), mib(u.WrittenFull), u.SecFull)
	fmt.Fprintf(w, "  %-12s %10.1f %10.1f %12.1f %16.1f %8.2f\n", "--used-only", mib(u.DeviceBytes), mib(u.UsedBytes), mib(u.WireUsed), mib(u.WrittenUsed), u.SecUsed)
	if u.UsedBytes > 0 && u.SecUsed > 0 {
		comp := u.Compress
		if comp == "" {
			comp = "none"
		}
		fmt.Fprintf(w, "  map %s, wire compression %s: wire/used %.3f, full copy takes %.1f× as long\n", u.Method, comp, float64(u.WireUsed)/float64(u.UsedBytes), u.SecFull/u.SecUsed)
	}
}
