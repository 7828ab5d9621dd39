package desc

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/internal/testenv"
)

// needRoot skips tests that attach loop devices unless running as root
// with the tools installed.
func needRoot(t *testing.T, tools ...string) {
	t.Helper()
	testenv.NeedRoot(t, "loop devices")
	for _, tool := range tools {
		needTool(t, tool)
	}
}

// blkidAt probes the filesystem at a byte range of dev.
func blkidAt(t *testing.T, dev string, off, size int64) map[string]string {
	t.Helper()
	out, err := exec.Command("blkid", "-p", "-o", "export", "-O", strconv.FormatInt(off, 10), "-S", strconv.FormatInt(size, 10), dev).CombinedOutput()
	require.NoError(t, err, "blkid at %d: %s", off, out)
	m := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = strings.ReplaceAll(v, `\ `, " ") // blkid -o export escapes spaces
		}
	}
	return m
}

func TestDescApplyLoopDevice(t *testing.T) {
	needRoot(t, "losetup", "sfdisk", "blkid", "mkfs.ext4", "mkfs.xfs", "mkfs.vfat", "mkswap", "e2fsck", "xfs_repair", "fsck.vfat")
	for name, text := range map[string]string{
		"mbr": "linux 100 fs=ext4 label=root boot\nextended fill\nlogical swap 64 label=sw\nlogical linux 320 fs=xfs label=data\nlogical linux fill fs=vfat label=EFI uuid=1234-ABCD\n",
		"gpt": "table gpt\nbios 1M\nesp 64M label=EFI\nlinux 320M fs=xfs label=root uuid=0b9c1c8e-3b1a-4b6e-9c4d-1b2a3c4d5e6f\nswap 64M\nlinux 32M fs=ext2 label=\"old fs\"\nlinux fill fs=ext3 label=var\n",
	} {
		t.Run(name, func(t *testing.T) {
			const size = 1 * GiB
			img := sparseImage(t, size)
			dev := testenv.AttachLoop(t, img)
			p, err := mustParse(t, text).Layout(size, 512)
			require.NoError(t, err)

			// Dry run: prints the plan and writes nothing.
			var dry bytes.Buffer
			require.NoError(t, Apply(context.Background(), p, dev, WithDryRun(&dry)))
			assert.Contains(t, dry.String(), "losetup --find --show --offset")
			assert.Contains(t, dry.String(), "mkswap -f ")
			head := make([]byte, 512)
			f, err := os.Open(dev)
			require.NoError(t, err)
			_, err = f.ReadAt(head, 0)
			f.Close()
			require.NoError(t, err)
			assert.Equal(t, make([]byte, 512), head, "dry run wrote nothing")

			var log bytes.Buffer
			require.NoError(t, Apply(context.Background(), p, dev, WithLog(&log)))
			t.Log(log.String())
			// The kernel finishes a detach when the last opener (udev's
			// probe, under load) closes the device: allow it a moment.
			assert.Eventually(t, func() bool {
				out, err := exec.Command("losetup", "-j", dev).CombinedOutput()
				return err == nil && strings.TrimSpace(string(out)) == ""
			}, 10*time.Second, 100*time.Millisecond, "Apply detached its loop devices")

			assertSfdiskSees(t, p, dev)
			want := map[string]string{"ext4": "ext4", "ext3": "ext3", "ext2": "ext2", "xfs": "xfs", "vfat": "vfat", "swap": "swap"}
			for _, pp := range p.Parts {
				if pp.FS == "none" {
					continue
				}
				off, n := pp.Offset(512), pp.Bytes(512)
				info := blkidAt(t, dev, off, n)
				assert.Equal(t, want[pp.FS], info["TYPE"], "blkid type of partition %d", pp.Index)
				if pp.Label != "" {
					assert.Equal(t, pp.Label, info["LABEL"], "label of partition %d", pp.Index)
				}
				if pp.UUID != "" {
					assert.Equal(t, strings.ToLower(pp.UUID), strings.ToLower(info["UUID"]), "uuid of partition %d", pp.Index)
				}
				part := testenv.AttachLoop(t, dev, "--offset", strconv.FormatInt(off, 10), "--sizelimit", strconv.FormatInt(n, 10))
				var fsck *exec.Cmd
				switch pp.FS {
				case "ext2", "ext3", "ext4":
					fsck = exec.Command("e2fsck", "-f", "-n", part)
				case "xfs":
					fsck = exec.Command("xfs_repair", "-n", part)
				case "vfat":
					fsck = exec.Command("fsck.vfat", "-n", part)
				}
				if fsck != nil {
					out, err := fsck.CombinedOutput()
					assert.NoError(t, err, "fsck of partition %d (%s): %s", pp.Index, pp.FS, out)
				}
			}

			// from-disk: the table and filesystems read back into a desc.
			f, err = os.Open(dev)
			require.NoError(t, err)
			defer f.Close()
			got, err := ReadTable(f, size)
			require.NoError(t, err)
			Probe(f, got)
			back := ToDesc(got)
			for i, pp := range got.Parts {
				assert.Equal(t, p.Parts[i].Start, pp.Start)
				assert.Equal(t, p.Parts[i].FS, map[string]string{"": "none"}[pp.FS]+pp.FS, "probed fs of partition %d", pp.Index)
				assert.Equal(t, p.Parts[i].Label, pp.Label, "probed label of partition %d", pp.Index)
			}
			q, err := mustParse(t, back.String()).Layout(size, 512)
			require.NoError(t, err, back.String())
			for i := range q.Parts {
				assert.Equal(t, p.Parts[i].Start, q.Parts[i].Start)
				assert.Equal(t, p.Parts[i].Sectors, q.Parts[i].Sectors)
				assert.Equal(t, p.Parts[i].FS, q.Parts[i].FS)
			}
		})
	}
}

func TestDescApplyRefusesInUse(t *testing.T) {
	needRoot(t, "losetup")
	const size = 64 * MiB
	img := sparseImage(t, size)
	dev := testenv.AttachLoop(t, img)
	p, err := mustParse(t, "linux fill\n").Layout(size, 512)
	require.NoError(t, err)

	// The image itself is in use by the loop device.
	err = Apply(context.Background(), p, img)
	require.ErrorIs(t, err, ErrInUse)

	// The loop device is in use by a partition loop device on top of it.
	testenv.AttachLoop(t, dev, "--offset", "1048576")
	err = Apply(context.Background(), p, dev)
	require.ErrorIs(t, err, ErrInUse)
	head := make([]byte, 512)
	f, err := os.Open(dev)
	require.NoError(t, err)
	defer f.Close()
	_, err = f.ReadAt(head, 0)
	require.NoError(t, err)
	assert.Equal(t, make([]byte, 512), head, "nothing written to a device in use")
}

func TestDescApplyImageFileAndChecks(t *testing.T) {
	// Writing the table to an image file needs no root when the plan has
	// no filesystem to make.
	const size = 64 * MiB
	img := sparseImage(t, size)
	p, err := mustParse(t, "linux 10 fs=none\nswap fill fs=none\n").Layout(size, 512, fixedRand())
	require.NoError(t, err)
	require.NoError(t, Apply(context.Background(), p, img, WithRunner(func(ctx context.Context, name string, args ...string) ([]byte, error) {
		t.Fatalf("no command expected, got %s %v", name, args)
		return nil, nil
	})))
	f, err := os.Open(img)
	require.NoError(t, err)
	defer f.Close()
	got, err := ReadTable(f, size)
	require.NoError(t, err)
	require.Len(t, got.Parts, 2)
	assert.Equal(t, p.Parts[1].Start, got.Parts[1].Start)

	// A plan for another size is refused before anything is written.
	q, err := mustParse(t, "table gpt\nlinux fill\n").Layout(2*size, 512, fixedRand())
	require.NoError(t, err)
	err = Apply(context.Background(), q, img)
	require.ErrorIs(t, err, ErrInvalidPlan)
	got, err = ReadTable(f, size)
	require.NoError(t, err)
	assert.Equal(t, MBR, got.Table, "the old table is untouched")
}

func TestDescApplyRunnerCommands(t *testing.T) {
	// The commands Apply runs, recorded with a fake runner on an image.
	const size = 64 * MiB
	img := sparseImage(t, size)
	p, err := mustParse(t, "linux 10 fs=ext2 label=a uuid=0b9c1c8e-3b1a-4b6e-9c4d-1b2a3c4d5e6f\nswap fill\n").Layout(size, 512, fixedRand())
	require.NoError(t, err)
	var calls []string
	run := func(ctx context.Context, name string, args ...string) ([]byte, error) {
		calls = append(calls, name+" "+strings.Join(args, " "))
		if name == "losetup" && args[0] == "--find" {
			return []byte("/dev/loop99\n"), nil
		}
		return nil, nil
	}
	require.NoError(t, Apply(context.Background(), p, img, WithRunner(run)))
	assert.Equal(t, []string{
		"losetup --find --show --offset 1048576 --sizelimit 10485760 " + img,
		"mkfs.ext2 -F -q -L a -U 0b9c1c8e-3b1a-4b6e-9c4d-1b2a3c4d5e6f /dev/loop99",
		"losetup -d /dev/loop99",
		"losetup --find --show --offset 11534336 --sizelimit 55574528 " + img,
		"mkswap -f /dev/loop99",
		"losetup -d /dev/loop99",
	}, calls)
}

func TestDescApply4KSectors(t *testing.T) {
	needRoot(t, "losetup", "sfdisk", "mkfs.ext4", "blkid")
	const size = 256 * MiB
	img := sparseImage(t, size)
	dev := testenv.AttachLoop(t, img, "--sector-size", "4096")
	gotSize, ss, err := DeviceSize(dev)
	require.NoError(t, err)
	require.Equal(t, int64(size), gotSize)
	if ss != 4096 {
		t.Skipf("loop device has %d-byte sectors: kernel ignores --sector-size", ss)
	}
	p, err := mustParse(t, "table gpt\nesp 32M\nlinux fill label=root\n").Layout(size, ss)
	require.NoError(t, err)
	require.NoError(t, Apply(context.Background(), p, dev))
	st := sfdiskJSON(t, dev).PartitionTable
	assert.Equal(t, int64(4096), st.SectorSize)
	assert.Equal(t, int64(6), st.FirstLBA, "2 + 4 sectors of entries")
	require.Len(t, st.Partitions, 2)
	assert.Equal(t, int64(256), st.Partitions[0].Start, "1 MiB in 4 KiB sectors")
	assert.Equal(t, p.Parts[1].Sectors, st.Partitions[1].Size)
	info := blkidAt(t, dev, p.Parts[1].Offset(ss), p.Parts[1].Bytes(ss))
	assert.Equal(t, "ext4", info["TYPE"])
	assert.Equal(t, "root", info["LABEL"])

	f, err := os.Open(dev)
	require.NoError(t, err)
	defer f.Close()
	got, err := ReadTable(f, size)
	require.NoError(t, err)
	assert.Equal(t, int64(4096), got.SectorSize, "GPT found at 4096 bytes")
	assert.Equal(t, p.Parts[1].Start, got.Parts[1].Start)
}

func TestDescApplyRefusesMounted(t *testing.T) {
	needRoot(t, "losetup", "mkfs.ext4", "mount", "umount")
	const size = 64 * MiB
	img := sparseImage(t, size)
	dev := testenv.AttachLoop(t, img)
	out, err := exec.Command("mkfs.ext4", "-q", "-F", dev).CombinedOutput()
	require.NoError(t, err, "%s", out)
	mnt := t.TempDir()
	out, err = exec.Command("mount", dev, mnt).CombinedOutput()
	require.NoError(t, err, "mount: %s", out)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	p, err := mustParse(t, "linux fill\n").Layout(size, 512)
	require.NoError(t, err)
	err = Apply(context.Background(), p, dev)
	require.ErrorIs(t, err, ErrInUse)
	assert.Contains(t, err.Error(), "mounted on "+mnt)
}

// A device node with another name for a disk (as a lab node has) is
// recognised as in use by a loop device on top of it, and an unrelated
// copy of an image at another path is not.
func TestDescCheckNotInUseByDeviceNumber(t *testing.T) {
	needRoot(t, "losetup")
	const size = 16 * MiB
	img := sparseImage(t, size)
	dev := testenv.AttachLoop(t, img)
	st, err := os.Stat(dev)
	require.NoError(t, err)
	alias := filepath.Join(t.TempDir(), "disk")
	sys := st.Sys().(*syscall.Stat_t)
	require.NoError(t, syscall.Mknod(alias, syscall.S_IFBLK|0o600, int(sys.Rdev)))
	require.NoError(t, CheckNotInUse(alias), "nothing sits on the disk yet")
	testenv.AttachLoop(t, alias, "--offset", "1048576")
	require.ErrorIs(t, CheckNotInUse(alias), ErrInUse)
	require.ErrorIs(t, CheckNotInUse(dev), ErrInUse)

	other := sparseImage(t, size)
	require.NoError(t, CheckNotInUse(other))
}
