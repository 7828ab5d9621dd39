package e2e

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/sys/unix"

	"github.com/herd-cluster/herd/desc"
	"github.com/herd-cluster/herd/harness"
)

// The file-level method (KA): one desc, a golden disk laid out from it,
// three nodes with disks of other sizes.

// filesDesc is the golden disk's description: / (ext4, boot), swap and
// /var (xfs) taking the rest of each disk.
const filesDesc = `# golden node of the file-level e2e
linux 700 fs=ext4 mount=/ boot
swap 128
linux fill fs=xfs mount=/var
`

var _ = Describe("file-level clone (KA)", func() {
	It("partitions 1.5, 2 and 4 GiB disks from one desc and gives each the golden files, fixed up; a too small disk fails alone", func() {
		for _, tool := range []string{"losetup", "sfdisk", "mkfs.ext4", "mkfs.xfs", "mkswap", "e2fsck", "xfs_repair", "blkid", "extlinux", "chroot"} {
			if _, err := exec.LookPath(tool); err != nil {
				Skip(tool + " not installed (make deps installs it)")
			}
		}
		// node2's disk cannot hold the desc: it must fail with the reason
		// while the chain goes on through it to node3 and node4.
		sizes := []int64{1536 * desc.MiB, 512 * desc.MiB, 2 * desc.GiB, 4 * desc.GiB}
		const small = 1
		c := newCluster(harness.Config{Nodes: 4, DiskSize: 2 * desc.GiB, DiskSizes: sizes})
		dir := GinkgoT().TempDir()
		d, err := desc.Parse(filesDesc)
		Expect(err).NotTo(HaveOccurred())
		descFile := filepath.Join(dir, "golden.desc")
		Expect(os.WriteFile(descFile, []byte(filesDesc), 0o644)).To(Succeed())

		// The golden disk: laid out from the desc, its filesystems mounted
		// and filled like a small installed system.
		const goldenSize = 2 * desc.GiB
		img := filepath.Join(dir, "golden.img")
		f, err := os.Create(img)
		Expect(err).NotTo(HaveOccurred())
		Expect(f.Truncate(goldenSize)).To(Succeed())
		Expect(f.Close()).To(Succeed())
		plan, err := d.Layout(goldenSize, 512)
		Expect(err).NotTo(HaveOccurred())
		Expect(desc.Apply(context.Background(), plan, img)).To(Succeed())
		golden := filepath.Join(dir, "golden")
		goldenUUID := map[string]string{}
		for _, pp := range plan.Parts {
			dev := filesAttach(img, pp.Offset(512), pp.Bytes(512), false)
			goldenUUID[pp.FS] = filesBlkidUUID(dev)
			if pp.Mount != "" {
				filesMount(dev, filepath.Join(golden, pp.Mount), pp.FS, false)
			}
		}
		shell := filesFillGolden(golden, goldenUUID)
		hook := filepath.Join(dir, "hook.sh")
		Expect(os.WriteFile(hook, []byte("#!/bin/sh\necho \"regenerated on $(cat /etc/hostname)\" > /etc/hooked\n"), 0o755)).To(Succeed())

		var recvs []*harness.Proc
		var to []string
		for _, n := range c.Nodes() {
			// --files --disk: the node names its disk, no --allow needed.
			args := []string{"recv", "--key-file", suiteKey, "--files", "--disk", harness.NodeDisk, "--verify"}
			if shell {
				args = append(args, "--hook", hook)
			}
			p, err := n.Start(context.Background(), herdBin, args...)
			Expect(err).NotTo(HaveOccurred())
			recvs = append(recvs, p)
			to = append(to, n.Addr().String())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		sp, err := c.Golden().Start(ctx, herdBin, "send", "--key-file", suiteKey, "--files", "--desc", descFile, "--from", golden, "-x", "/tmp", "--to", strings.Join(to, ","), "--json")
		Expect(err).NotTo(HaveOccurred())
		_ = sp.Wait()
		Expect(ctx.Err()).NotTo(HaveOccurred(), "herd send did not finish; stderr: %s", sp.Stderr())
		lines := strings.Split(strings.TrimSpace(string(sp.Stdout())), "\n")
		s, err := parseSummary(lines[len(lines)-1])
		Expect(err).NotTo(HaveOccurred(), "herd send stdout: %s stderr: %s", sp.Stdout(), sp.Stderr())
		Expect(sp.ExitCode()).To(Equal(1), "some nodes failed; herd send stderr: %s", sp.Stderr())
		Expect(s.OK).To(BeFalse())
		Expect(s.Items).To(HaveLen(4), "header, /, /var and the golden's file digests")
		Expect(s.Bytes).To(BeNumerically("<", 30<<20), "only used data crosses the wire (the golden holds 256 MiB of sparse lastlog and about 20 MiB of data)")
		Expect(exitCodes(recvs, time.Minute)).To(Equal([]int{0, 1, 0, 0}))
		for i, sn := range s.Nodes {
			if i == small {
				Expect(sn.State).To(Equal("failed"))
				Expect(sn.Error).To(ContainSubstring("does not fit"), "the reason reaches the source")
				continue
			}
			Expect(sn.State).To(Equal("done"), "node %d: %s", i+1, sn.Error)
			Expect(sn.Items).To(HaveLen(4))
			for _, it := range sn.Items {
				Expect(it.Verified).To(BeTrue(), "node %d item %s", i+1, it.Dest)
			}
		}
		Expect(filesHead(c.Nodes()[small].Disk(), 1<<20)).To(Equal(make([]byte, 1<<20)), "nothing written on the too small disk")
		for i, p := range recvs {
			if i != small {
				Expect(string(p.Stderr())).To(MatchRegexp(`file-level copy done: .* [1-9][0-9]+ files verified \(disk\)`), "node %d read its files back and found them equal to the golden's", i+1)
			}
		}

		skip := func(p string) bool {
			switch p {
			case "/lost+found", "/etc/fstab", "/etc/hooked", "/boot/extlinux/extlinux.conf", "/boot/extlinux/ldlinux.sys", "/boot/extlinux/ldlinux.c32":
				return true
			}
			return strings.HasPrefix(p, "/tmp/")
		}
		want := filesTreeList(golden, skip)
		Expect(len(want)).To(BeNumerically(">", 20))
		mbr, err := os.ReadFile("/usr/lib/EXTLINUX/mbr.bin")
		Expect(err).NotTo(HaveOccurred())

		for i, n := range c.Nodes() {
			if i == small {
				continue
			}
			By(fmt.Sprintf("checking %s (%d MiB disk)", n.Name(), sizes[i]/desc.MiB))
			Expect(n.DiskSize()).To(Equal(sizes[i]))
			np, err := d.Layout(sizes[i], 512)
			Expect(err).NotTo(HaveOccurred())
			filesCheckTable(n.Disk(), np)

			root := filepath.Join(dir, n.Name())
			uuids := map[string]bool{}
			var rootUUID string
			for _, pp := range np.Parts {
				dev := filesAttach(n.Disk(), pp.Offset(512), pp.Bytes(512), true)
				u := filesBlkidUUID(dev)
				Expect(u).NotTo(BeEmpty(), "%s partition %d has a filesystem", n.Name(), pp.Index)
				Expect(u).NotTo(Equal(goldenUUID[pp.FS]), "new filesystems get new UUIDs")
				uuids[u] = true
				switch pp.FS {
				case "ext4":
					out, err := exec.Command("e2fsck", "-n", "-f", dev).CombinedOutput()
					Expect(err).NotTo(HaveOccurred(), "e2fsck on %s: %s", n.Name(), out)
				case "xfs":
					out, err := exec.Command("xfs_repair", "-n", dev).CombinedOutput()
					Expect(err).NotTo(HaveOccurred(), "xfs_repair on %s: %s", n.Name(), out)
				}
				if pp.Mount == "/" {
					rootUUID = u
				}
				if pp.Mount != "" {
					filesMount(dev, filepath.Join(root, pp.Mount), pp.FS, true)
				}
			}
			Expect(filesTreeList(root, skip)).To(Equal(want), "file tree of %s", n.Name())
			var ll syscall.Stat_t
			Expect(syscall.Stat(filepath.Join(root, "var/log/lastlog"), &ll)).To(Succeed())
			Expect(ll.Blocks*512).To(BeNumerically("<", 16<<20), "lastlog keeps its holes on %s", n.Name())
			Expect(os.ReadDir(filepath.Join(root, "tmp"))).To(BeEmpty(), "-x /tmp: /tmp arrives empty")

			fstab, err := os.ReadFile(filepath.Join(root, "etc/fstab"))
			Expect(err).NotTo(HaveOccurred())
			named := 0
			for _, l := range strings.Split(string(fstab), "\n") {
				f := strings.Fields(l)
				if len(f) > 0 && strings.HasPrefix(f[0], "UUID=") {
					Expect(uuids).To(HaveKey(strings.TrimPrefix(f[0], "UUID=")), "fstab of %s: %q names a filesystem of this node", n.Name(), l)
					named++
				}
			}
			Expect(named).To(Equal(3), "fstab of %s names /, swap and /var:\n%s", n.Name(), fstab)
			Expect(string(fstab)).To(ContainSubstring("tmpfs /run/shm tmpfs"), "other lines kept")
			conf, err := os.ReadFile(filepath.Join(root, "boot/extlinux/extlinux.conf"))
			Expect(err).NotTo(HaveOccurred())
			Expect(string(conf)).To(ContainSubstring("root=UUID=" + rootUUID + " "))
			Expect(filepath.Join(root, "boot/extlinux/ldlinux.sys")).To(BeAnExistingFile())
			Expect(filesHead(n.Disk(), 440)).To(Equal(mbr[:440]), "MBR boot code on %s", n.Name())
			if shell {
				Expect(os.ReadFile(filepath.Join(root, "etc/hooked"))).To(Equal([]byte("regenerated on golden\n")), "hook ran in a chroot of the new system on %s", n.Name())
			}
		}
	})
})

// filesFillGolden writes a small system into the mounted golden tree:
// files in / and /var, a hard link, symlinks, an owner, an xattr, an
// fstab and an extlinux.conf naming the golden's UUIDs, junk in /tmp,
// and a static busybox as /bin/sh when one is installed (for the hook).
func filesFillGolden(root string, uuids map[string]string) (shell bool) {
	GinkgoHelper()
	for _, d := range []string{"etc/default", "boot/extlinux", "tmp/cache", "var/log/apt", "var/lib/dpkg", "usr/bin", "home/user"} {
		Expect(os.MkdirAll(filepath.Join(root, d), 0o755)).To(Succeed())
	}
	Expect(os.Chmod(filepath.Join(root, "tmp"), os.ModeSticky|0o777)).To(Succeed())
	write := func(p, s string, mode os.FileMode) {
		Expect(os.WriteFile(filepath.Join(root, p), []byte(s), mode)).To(Succeed())
	}
	write("etc/hostname", "golden\n", 0o644)
	write("etc/fstab", fmt.Sprintf("# golden\nUUID=%s / ext4 errors=remount-ro 0 1\nUUID=%s /var xfs defaults 0 2\nUUID=%s none swap sw 0 0\ntmpfs /run/shm tmpfs defaults 0 0\n", uuids["ext4"], uuids["xfs"], uuids["swap"]), 0o644)
	write("boot/extlinux/extlinux.conf", fmt.Sprintf("DEFAULT linux\nLABEL linux\n  KERNEL /boot/vmlinuz\n  APPEND root=UUID=%s ro quiet\n", uuids["ext4"]), 0o644)
	write("etc/shadow", "root:*:19000:0:99999:7:::\n", 0o640)
	write("tmp/cache/junk", "must not be copied", 0o644)
	write("var/log/apt/history.log", strings.Repeat("Start-Date: 2026-11-26\n", 2000), 0o640)
	write("var/lib/dpkg/status", strings.Repeat("Package: herd\nStatus: install ok installed\n\n", 500), 0o644)
	writeRandom(filepath.Join(root, "usr/bin/tool"), 6<<20, 61)
	writeRandom(filepath.Join(root, "var/lib/data.bin"), 9<<20, 62)
	// A sparse file (like lastlog): 256 MiB long, 48 KiB of data.
	lastlog, err := os.Create(filepath.Join(root, "var/log/lastlog"))
	Expect(err).NotTo(HaveOccurred())
	for _, off := range []int64{0, 100 << 20, 200<<20 + 4096} {
		_, err := lastlog.WriteAt([]byte(strings.Repeat("lastlog!", 2048)), off)
		Expect(err).NotTo(HaveOccurred())
	}
	Expect(lastlog.Truncate(256 << 20)).To(Succeed())
	Expect(lastlog.Close()).To(Succeed())
	Expect(os.Chmod(filepath.Join(root, "usr/bin/tool"), 0o4755)).To(Succeed())
	Expect(os.Link(filepath.Join(root, "usr/bin/tool"), filepath.Join(root, "usr/bin/tool-alias"))).To(Succeed())
	Expect(os.Symlink("/usr/bin/tool", filepath.Join(root, "home/user/tool"))).To(Succeed())
	Expect(os.Symlink("../lib/data.bin", filepath.Join(root, "var/log/data-link"))).To(Succeed())
	Expect(os.Chown(filepath.Join(root, "home/user"), 1000, 1000)).To(Succeed())
	Expect(os.Chown(filepath.Join(root, "etc/shadow"), 0, 42)).To(Succeed())
	Expect(unix.Lsetxattr(filepath.Join(root, "etc/hostname"), "user.herd", []byte("golden"), 0)).To(Succeed())
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	Expect(os.Chtimes(filepath.Join(root, "etc/shadow"), old, old)).To(Succeed())

	bb, err := exec.LookPath("busybox")
	if err != nil || !filesStatic(bb) {
		return false
	}
	b, err := os.ReadFile(bb)
	Expect(err).NotTo(HaveOccurred())
	Expect(os.MkdirAll(filepath.Join(root, "bin"), 0o755)).To(Succeed())
	Expect(os.WriteFile(filepath.Join(root, "bin/busybox"), b, 0o755)).To(Succeed())
	for _, l := range []string{"sh", "cat", "echo"} {
		Expect(os.Symlink("busybox", filepath.Join(root, "bin", l))).To(Succeed())
	}
	return true
}

// filesStatic reports whether the ELF binary at p needs no interpreter.
func filesStatic(p string) bool {
	f, err := elf.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

// filesAttach attaches a loop device to a section of a disk or image,
// detached at the end of the spec.
func filesAttach(disk string, off, size int64, readOnly bool) string {
	GinkgoHelper()
	args := []string{"--find", "--show", "--offset", strconv.FormatInt(off, 10), "--sizelimit", strconv.FormatInt(size, 10)}
	if readOnly {
		args = append(args, "--read-only")
	}
	out, err := exec.Command("losetup", append(args, disk)...).CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "losetup: %s", out)
	dev := strings.TrimSpace(string(out))
	DeferCleanup(func() {
		out, err := exec.Command("losetup", "-d", dev).CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "losetup -d %s: %s", dev, out)
	})
	return dev
}

// filesMount mounts dev at dir (created), unmounted at the end of the spec.
func filesMount(dev, dir, fs string, readOnly bool) {
	GinkgoHelper()
	Expect(os.MkdirAll(dir, 0o755)).To(Succeed())
	var flags uintptr
	data := ""
	if readOnly {
		flags = unix.MS_RDONLY
		if fs == "xfs" {
			data = "norecovery"
		}
	}
	Expect(unix.Mount(dev, dir, fs, flags, data)).To(Succeed(), "mount %s (%s) at %s", dev, fs, dir)
	DeferCleanup(func() {
		Expect(unix.Unmount(dir, 0)).To(Succeed(), "unmount %s", dir)
	})
}

func filesBlkidUUID(dev string) string {
	GinkgoHelper()
	out, err := exec.Command("blkid", "-p", "-o", "value", "-s", "UUID", dev).Output()
	Expect(err).NotTo(HaveOccurred(), "blkid %s", dev)
	return strings.TrimSpace(string(out))
}

func filesHead(path string, n int) []byte {
	GinkgoHelper()
	f, err := os.Open(path)
	Expect(err).NotTo(HaveOccurred())
	defer f.Close()
	b := make([]byte, n)
	_, err = io.ReadFull(f, b)
	Expect(err).NotTo(HaveOccurred())
	return b
}

// filesCheckTable compares the table sfdisk reads on disk with plan.
func filesCheckTable(disk string, plan *desc.Plan) {
	GinkgoHelper()
	out, err := exec.Command("sfdisk", "--json", disk).Output()
	Expect(err).NotTo(HaveOccurred(), "sfdisk --json %s", disk)
	var t struct {
		PartitionTable struct {
			Label      string `json:"label"`
			Partitions []struct {
				Start    int64  `json:"start"`
				Size     int64  `json:"size"`
				Type     string `json:"type"`
				Bootable bool   `json:"bootable"`
			} `json:"partitions"`
		} `json:"partitiontable"`
	}
	Expect(json.Unmarshal(out, &t)).To(Succeed())
	Expect(t.PartitionTable.Label).To(Equal("dos"))
	Expect(t.PartitionTable.Partitions).To(HaveLen(len(plan.Parts)), "%s", out)
	for i, pp := range plan.Parts {
		got := t.PartitionTable.Partitions[i]
		Expect(got.Start).To(Equal(pp.Start), "partition %d start", i+1)
		Expect(got.Size).To(Equal(pp.Sectors), "partition %d size", i+1)
		Expect(got.Type).To(Equal(fmt.Sprintf("%x", pp.Type.MBR)), "partition %d type", i+1)
		Expect(got.Bootable).To(Equal(pp.Boot), "partition %d boot flag", i+1)
	}
	last := t.PartitionTable.Partitions[len(plan.Parts)-1]
	Expect(last.Start+last.Size).To(Equal(plan.DiskSectors), "fill stretches to the end of the disk")
}

// filesTreeList describes every entry under dir, one line each, sorted:
// path, type, mode, owner, size and sha256 of files with their mtime and
// link count, symlink targets, and the user.herd xattr; skip(path) leaves
// entries out.
func filesTreeList(dir string, skip func(string) bool) []string {
	GinkgoHelper()
	var out []string
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.Clean("/" + rel)
		if skip(rel) {
			if fi.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		st := fi.Sys().(*syscall.Stat_t)
		l := fmt.Sprintf("%s %s %o %d:%d", rel, fi.Mode().Type(), st.Mode&0o7777, st.Uid, st.Gid)
		switch {
		case fi.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
			l += fmt.Sprintf(" %d %s %d links=%d", fi.Size(), hex.EncodeToString(h.Sum(nil)), fi.ModTime().UnixNano(), st.Nlink)
		case fi.Mode()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			l += " -> " + target
		}
		buf := make([]byte, 256)
		if n, err := unix.Lgetxattr(p, "user.herd", buf); err == nil {
			l += fmt.Sprintf(" xattr=%q", buf[:n])
		}
		out = append(out, l)
		return nil
	})
	Expect(err).NotTo(HaveOccurred())
	sort.Strings(out)
	return out
}
