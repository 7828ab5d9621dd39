package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/internal/testenv"
)

const descSeedKA = "linux 3500\nextended fill\nlogical swap 500\nlogical linux fill\n"

// runDesc runs herd in-process with stdin and returns code, stdout, stderr.
func runDesc(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// descFile writes a desc into a temp file and returns its path.
func descFile(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "node.desc")
	require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
	return p
}

// zeroImage creates a sparse image file of size bytes.
func zeroImage(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(size))
	require.NoError(t, f.Close())
	return p
}

func TestDescCmdLayout(t *testing.T) {
	code, out, errOut := runDesc(t, descSeedKA, "desc", "layout", "-", "--size", "80GB")
	require.Equal(t, 0, code, errOut)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 6, out)
	assert.Contains(t, lines[0], "156250000 sectors of 512 bytes")
	assert.Equal(t, []string{"1", "2048", "7170047", "7168000"}, strings.Fields(lines[2])[:4])
	assert.Equal(t, []string{"6", "8198144", "156248063", "148049920"}, strings.Fields(lines[5])[:4])

	// The same desc on 2 TB: fixed parts equal, fill grows.
	code, out, _ = runDesc(t, descSeedKA, "desc", "layout", "-", "--size", "2TB")
	require.Equal(t, 0, code)
	assert.Contains(t, out, " 3906248703 ", "fill ends before the last whole MiB of 3906250000 sectors")
}

func TestDescCmdLayoutJSON(t *testing.T) {
	code, out, errOut := runDesc(t, descSeedKA, "desc", "layout", "-", "--size", "80GB", "--json")
	require.Equal(t, 0, code, errOut)
	var plan struct {
		Table      string `json:"table"`
		Partitions []struct {
			Index   int    `json:"index"`
			Start   int64  `json:"start"`
			Sectors int64  `json:"sectors"`
			FS      string `json:"fs"`
		} `json:"partitions"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &plan), out)
	assert.Equal(t, "mbr", plan.Table)
	require.Len(t, plan.Partitions, 4)
	assert.Equal(t, 6, plan.Partitions[3].Index)
	assert.Equal(t, int64(8198144), plan.Partitions[3].Start)
	assert.Equal(t, "swap", plan.Partitions[2].FS)
}

func TestDescCmdErrors(t *testing.T) {
	path := descFile(t, "linux 100\nswap 500\nlinux fill\nlogical linux 5\n")
	code, _, errOut := runDesc(t, "", "desc", "layout", path, "--size", "1G")
	assert.Equal(t, ExitUsage, code)
	assert.Contains(t, errOut, path+":4:1: logical partition without an extended")

	large := descFile(t, "swap 509\nlinux 5992\nextended fill\nlogical linux 52281\nlogical linux 19375\nlogical linux 78167\nlogical linux fill\n")
	code, _, errOut = runDesc(t, "", "desc", "layout", large, "--size", "80GB")
	assert.Equal(t, ExitUsage, code)
	assert.Contains(t, errOut, large+":5:15: partition does not fit")

	code, _, errOut = runDesc(t, descSeedKA, "desc", "layout", "-")
	assert.Equal(t, ExitUsage, code)
	assert.Contains(t, errOut, "--size is required")
	code, _, _ = runDesc(t, descSeedKA, "desc", "layout", "-", "--size", "fill")
	assert.Equal(t, ExitUsage, code)
	code, _, _ = runDesc(t, "", "desc", "layout", filepath.Join(t.TempDir(), "missing"), "--size", "1G")
	assert.Equal(t, ExitUsage, code)
	code, _, _ = runDesc(t, "", "desc", "apply", "only-one-arg")
	assert.Equal(t, ExitUsage, code)

	// No table on the disk: a failure, not a usage error.
	code, _, errOut = runDesc(t, "", "desc", "from-disk", zeroImage(t, 8<<20))
	assert.Equal(t, ExitFailed, code)
	assert.Contains(t, errOut, "no partition table")
}

func TestDescCmdCheck(t *testing.T) {
	code, out, errOut := runDesc(t, "# KA\nlinux 3500   # root\ntype82 500M\nlinux fill fs=XFS label=var\n", "desc", "check", "-")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "linux 3500\ntype82 500\nlinux fill fs=xfs label=var\n", out)
}

func TestDescCmdApplyImageAndFromDisk(t *testing.T) {
	img := zeroImage(t, 256<<20)
	text := "table gpt\nbios 1M fs=none\nlinux 100M fs=none name=root\nlinux fill fs=none\n"
	path := descFile(t, text)

	// --dry-run prints the plan and leaves the image all zeros.
	code, out, errOut := runDesc(t, "", "desc", "apply", path, img, "--dry-run")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "dry run: nothing is written")
	assert.Contains(t, out, "table gpt, disk 256.00 MiB")
	f, err := os.Open(img)
	require.NoError(t, err)
	defer f.Close()
	for _, off := range []int64{0, 256<<20 - 64<<10} { // where the GPT copies go
		data := make([]byte, 64<<10)
		_, err := f.ReadAt(data, off)
		require.NoError(t, err)
		assert.Equal(t, make([]byte, 64<<10), data, "dry run wrote nothing at %d", off)
	}

	code, out, errOut = runDesc(t, "", "desc", "apply", path, img)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "3 partitions written")

	code, out, errOut = runDesc(t, "", "desc", "from-disk", img)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "# from "+img+": gpt table")
	body := out[strings.IndexByte(out, '\n')+1:]
	assert.Equal(t, "table gpt\nbios 1\nlinux 100 fs=none name=root\nlinux fill fs=none\n", body, "no filesystem found: fs=none")
	code, out, errOut = runDesc(t, "", "desc", "from-disk", "--no-probe", img)
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "table gpt\nbios 1\nlinux 100 name=root\nlinux fill\n", out[strings.IndexByte(out, '\n')+1:])

	if _, err := exec.LookPath("sfdisk"); err == nil {
		sf, err := exec.Command("sfdisk", "--dump", img).CombinedOutput()
		require.NoError(t, err, "%s", sf)
		assert.Contains(t, string(sf), "start=        4096, size=      204800, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4")
	}
}

func TestDescCmdApplyLoopDevice(t *testing.T) {
	testenv.NeedRoot(t, "loop devices", "losetup", "mkfs.ext4", "mkswap")
	img := zeroImage(t, 512<<20)
	out, err := exec.Command("losetup", "--find", "--show", img).CombinedOutput()
	require.NoError(t, err, "%s", out)
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", dev).Run() })

	path := descFile(t, descSeedKA[:len("linux 3500")]+"\n")
	code, _, errOut := runDesc(t, "", "desc", "apply", path, dev)
	assert.Equal(t, ExitUsage, code, "3500 MB do not fit 512 MiB")
	assert.Contains(t, errOut, ":1:7: partition does not fit")
	head := make([]byte, 4096)
	fh, err := os.Open(dev)
	require.NoError(t, err)
	_, err = fh.ReadAt(head, 0)
	fh.Close()
	require.NoError(t, err)
	assert.Equal(t, make([]byte, 4096), head, "a disk too small is refused before anything is written")

	path = descFile(t, "linux 100 label=root\nextended fill\nlogical swap 64 label=sw\nlogical linux fill fs=ext3 label=var\n")
	code, outS, errOut := runDesc(t, "", "desc", "apply", path, dev)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, outS, "partition 6: mkfs.ext3")

	code, outS, errOut = runDesc(t, "", "desc", "from-disk", dev)
	require.Equal(t, 0, code, errOut)
	body := outS[strings.IndexByte(outS, '\n')+1:]
	// UUIDs are random: drop them before comparing.
	var kept []string
	for _, l := range strings.Split(strings.TrimSpace(body), "\n") {
		var f []string
		for _, w := range strings.Fields(l) {
			if !strings.HasPrefix(w, "uuid=") {
				f = append(f, w)
			}
		}
		kept = append(kept, strings.Join(f, " "))
	}
	assert.Equal(t, []string{"linux 100 label=root", "extended fill", "logical swap 64 label=sw", "logical linux fill fs=ext3 label=var"}, kept)
	assert.Contains(t, body, "uuid=", "from-disk keeps filesystem UUIDs")

	// A device in use (a loop device on top of it) is refused: exit 3.
	out, err = exec.Command("losetup", "--find", "--show", "--offset", "1048576", dev).CombinedOutput()
	require.NoError(t, err, "%s", out)
	part := strings.TrimSpace(string(out))
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", part).Run() })
	code, _, errOut = runDesc(t, "", "desc", "apply", path, dev)
	assert.Equal(t, ExitFailed, code)
	assert.Contains(t, errOut, "in use")
}

// from-disk --mounted-at adds mount= for the filesystems mounted under a
// directory (reached through loop devices here), so the printed desc is
// ready for herd send --files.
func TestDescCmdFromDiskMountedAt(t *testing.T) {
	testenv.NeedRoot(t, "loop devices, mount", "losetup", "mkfs.ext4", "mkfs.xfs", "mkswap")
	img := zeroImage(t, 600<<20)
	code, _, errOut := runDesc(t, "", "desc", "apply", descFile(t, "linux 200 fs=ext4\nswap 16\nlinux fill fs=xfs\n"), img)
	require.Equal(t, 0, code, errOut)
	mnt := t.TempDir()
	for _, p := range []struct {
		off, size int64
		dir, fs   string
	}{{1 << 20, 200 << 20, mnt, "ext4"}, {217 << 20, (600 - 217) << 20, filepath.Join(mnt, "var"), "xfs"}} {
		out, err := exec.Command("losetup", "--find", "--show", "--offset", strconv.FormatInt(p.off, 10), "--sizelimit", strconv.FormatInt(p.size, 10), img).CombinedOutput()
		require.NoError(t, err, "%s", out)
		dev := strings.TrimSpace(string(out))
		t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
		require.NoError(t, os.MkdirAll(p.dir, 0o755))
		out, err = exec.Command("mount", "-t", p.fs, dev, p.dir).CombinedOutput()
		require.NoError(t, err, "%s", out)
		t.Cleanup(func() { exec.Command("umount", p.dir).Run() })
	}
	code, out, errOut := runDesc(t, "", "desc", "from-disk", img, "--mounted-at", mnt)
	require.Equal(t, 0, code, errOut)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var parts []string
	for _, l := range lines {
		if !strings.HasPrefix(l, "#") {
			parts = append(parts, l)
		}
	}
	require.Len(t, parts, 3, out)
	assert.Regexp(t, `^linux 200 mount=/ uuid=\S+$`, parts[0])
	assert.Regexp(t, `^swap 16 uuid=\S+$`, parts[1])
	assert.Regexp(t, `^linux fill fs=xfs mount=/var uuid=\S+$`, parts[2])
	assert.Contains(t, out, "# partition 3 (xfs ")

	code, _, errOut = runDesc(t, "", "desc", "from-disk", img, "--mounted-at", mnt, "--no-probe")
	assert.Equal(t, ExitUsage, code)
	assert.Contains(t, errOut, "cannot be used with --no-probe")
}
