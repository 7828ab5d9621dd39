package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/herd-cluster/herd/harness"
)

// Issue #5: a 2 GiB ext4 golden disk holding about 300 MB of files, sent
// with --used-only: at most 1.1 × the used bytes cross the wire, and every
// node's copy passes e2fsck and holds the same files.
var _ = Describe("used blocks only (issue #5)", func() {
	const (
		nodes    = 8
		diskSize = 2 << 30
	)

	BeforeEach(func() {
		for _, tool := range []string{"mkfs.ext4", "e2fsck", "mount", "umount", "find", "ip"} {
			if _, err := exec.LookPath(tool); err != nil {
				Skip(tool + " not installed (make deps installs it)")
			}
		}
	})

	It("clones a 2 GiB ext4 disk with 300 MB of files: ≤ 1.1 × used bytes on the wire, fsck clean, identical files", func() {
		dir := GinkgoT().TempDir()
		tree := filepath.Join(dir, "tree")
		treeBytes := makeTree(tree)
		Expect(treeBytes).To(BeNumerically("~", 300e6, 30e6))
		golden := filepath.Join(dir, "golden.img")
		// mke2fs -d copies the tree into the new filesystem (hard links,
		// symlinks, modes and all): a real ext4 with real files.
		out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "golden", "-d", tree, golden, fmt.Sprint(diskSize>>10)+"k").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "mkfs.ext4: %s", out)
		out, err = exec.Command("e2fsck", "-fn", golden).CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "the golden disk itself must be clean: %s", out)
		want := listTree(tree)

		c := newCluster(harness.Config{Nodes: nodes, DiskSize: diskSize})
		recvs := startRecv(c)
		cfg := dollyConfig(dir, c, "infile "+golden, "outfile "+harness.NodeDisk)
		code, s, p := send(c, cfg, 3*time.Minute, "--used-only")
		Expect(code).To(Equal(0), "herd send stderr: %s", p.Stderr())
		Expect(exitCodes(recvs, time.Minute)).To(HaveEach(0))
		Expect(s.OK).To(BeTrue())
		for i, n := range c.Nodes() {
			Expect(s.Nodes[i].State).To(Equal("done"), "%s: %s", n.Name(), s.Nodes[i].Error)
			Expect(s.Nodes[i].Items[0].Verified).To(BeTrue(), n.Name())
		}

		// What the source counted.
		Expect(s.Stats).To(HaveLen(1))
		st := s.Stats[0]
		AddReportEntry("source stats", st)
		Expect(st.DeviceBytes).To(BeEquivalentTo(diskSize))
		Expect(st.Method).NotTo(Equal("raw"), "--used-only must read the ext4 bitmaps")
		Expect(st.UsedBytes).To(BeNumerically(">=", treeBytes), "used bytes hold at least the files")
		Expect(st.UsedBytes).To(BeNumerically("<", diskSize/4))
		Expect(float64(st.WireBytes)).To(BeNumerically("<=", 1.1*float64(st.UsedBytes)), "payload on the wire")
		Expect(s.Bytes).To(BeNumerically("<=", st.WireBytes))

		// What the links carried (payload plus TCP/IP headers): the bridge
		// port of each node, counted by the kernel.
		for _, n := range c.Nodes() {
			tx := linkTxBytes(c, "v"+n.Name())
			AddReportEntry("bytes sent on the link to "+n.Name(), tx)
			Expect(float64(tx)).To(BeNumerically("<=", 1.1*float64(st.UsedBytes)), "bytes sent to %s", n.Name())
			Expect(tx).To(BeNumerically(">=", st.WireBytes), "bytes sent to %s", n.Name())
		}

		// Unused ranges were not written: each node's disk image (a
		// sparse file behind its loop device) holds about the used bytes.
		for _, n := range c.Nodes() {
			var fi syscall.Stat_t
			Expect(syscall.Stat(filepath.Join(c.WorkDir(), n.Name()+".img"), &fi)).To(Succeed())
			Expect(float64(fi.Blocks*512)).To(BeNumerically("<=", 1.1*float64(st.UsedBytes)), "allocated bytes of %s's disk", n.Name())
		}

		for _, n := range c.Nodes() {
			out, err := exec.Command("e2fsck", "-fn", n.Disk()).CombinedOutput()
			Expect(err).NotTo(HaveOccurred(), "e2fsck of %s: %s", n.Name(), out)
			got := inNode(n, fmt.Sprintf(`set -e
m=%s/mnt
mkdir -p "$m"
mount -o ro,noload -t ext4 %s "$m"
trap 'umount "$m"' EXIT
(cd "$m" && %s)`, harness.NodeDir, harness.NodeDisk, treeList))
			Expect(got).To(Equal(want), "files on %s", n.Name())
		}
	})

	It("with herd recv --zero-unused leaves a disk full of old data byte-identical to the golden disk", func() {
		const small = 256 << 20
		dir := GinkgoT().TempDir()
		tree := filepath.Join(dir, "tree")
		for i := range 40 {
			p := filepath.Join(tree, fmt.Sprintf("d%d/f%02d", i%5, i))
			Expect(os.MkdirAll(filepath.Dir(p), 0o755)).To(Succeed())
			writeRandom(p, int64(i*i*5003%(2<<20)+i), 200+uint64(i))
		}
		Expect(os.Symlink("d0/f00", filepath.Join(tree, "link"))).To(Succeed())
		golden := filepath.Join(dir, "golden.img")
		out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", tree, golden, fmt.Sprint(small>>10)+"k").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "mkfs.ext4: %s", out)
		want := sha256File(golden)

		c := newCluster(harness.Config{Nodes: 3, DiskSize: small})
		// Old data everywhere, as on a disk that held another system.
		for i, n := range c.Nodes() {
			writeRandom(n.Disk(), small, 300+uint64(i))
		}
		var recvs []*harness.Proc
		for i, n := range c.Nodes() {
			var extra []string
			if i < 2 {
				extra = []string{"--zero-unused"}
			}
			p, err := n.Start(context.Background(), herdBin, recvArgs(extra...)...)
			Expect(err).NotTo(HaveOccurred())
			recvs = append(recvs, p)
		}
		cfg := dollyConfig(dir, c, "infile "+golden, "outfile "+harness.NodeDisk)
		code, s, p := send(c, cfg, 2*time.Minute, "--used-only")
		Expect(code).To(Equal(0), "herd send stderr: %s", p.Stderr())
		Expect(exitCodes(recvs, time.Minute)).To(HaveEach(0))
		Expect(s.Stats).To(HaveLen(1))
		Expect(float64(s.Stats[0].WireBytes)).To(BeNumerically("<=", 1.1*float64(s.Stats[0].UsedBytes)))
		Expect(s.Stats[0].UsedBytes).To(BeNumerically("<", small/2))
		for i, n := range c.Nodes() {
			out, err := exec.Command("e2fsck", "-fn", n.Disk()).CombinedOutput()
			Expect(err).NotTo(HaveOccurred(), "e2fsck of %s: %s", n.Name(), out)
			if i < 2 {
				Expect(sha256Prefix(n.Disk(), small)).To(Equal(want), "%s (--zero-unused) is byte-identical", n.Name())
			} else {
				Expect(sha256Prefix(n.Disk(), small)).NotTo(Equal(want), "%s (no --zero-unused) keeps its old data where nothing was sent", n.Name())
			}
		}
	})

	It("with --compress zstd sends compressible files in a fraction of their size, every copy identical", func() {
		const small = 256 << 20
		dir := GinkgoT().TempDir()
		tree := filepath.Join(dir, "tree")
		Expect(os.MkdirAll(filepath.Join(tree, "log"), 0o755)).To(Succeed())
		var text int64
		for f := range 12 {
			var b strings.Builder
			for l := 0; b.Len() < 5<<20; l++ {
				fmt.Fprintf(&b, "%08d file %02d: herd sends only the blocks in use, compressed on the wire\n", l*7919%100000000, f)
			}
			Expect(os.WriteFile(filepath.Join(tree, "log", fmt.Sprintf("app%02d.log", f)), []byte(b.String()), 0o644)).To(Succeed())
			text += int64(b.Len())
		}
		golden := filepath.Join(dir, "golden.img")
		out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", tree, golden, fmt.Sprint(small>>10)+"k").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "mkfs.ext4: %s", out)
		want := sha256File(golden)

		c := newCluster(harness.Config{Nodes: 4, DiskSize: small})
		recvs := startRecv(c)
		cfg := dollyConfig(dir, c, "infile "+golden, "outfile "+harness.NodeDisk)
		code, s, p := send(c, cfg, 2*time.Minute, "--used-only", "--compress", "zstd")
		Expect(code).To(Equal(0), "herd send stderr: %s", p.Stderr())
		Expect(exitCodes(recvs, time.Minute)).To(HaveEach(0))
		Expect(s.Stats).To(HaveLen(1))
		Expect(s.Stats[0].UsedBytes).To(BeNumerically(">=", text))
		for _, n := range c.Nodes() {
			tx := linkTxBytes(c, "v"+n.Name())
			AddReportEntry("bytes sent on the link to "+n.Name(), tx)
			Expect(tx).To(BeNumerically("<", s.Stats[0].UsedBytes/2), "compressed on the link to %s", n.Name())
			out, err := exec.Command("e2fsck", "-fn", n.Disk()).CombinedOutput()
			Expect(err).NotTo(HaveOccurred(), "e2fsck of %s: %s", n.Name(), out)
			// Fresh node disks are zeros, like golden's unused blocks.
			Expect(sha256Prefix(n.Disk(), small)).To(Equal(want), "disk of %s", n.Name())
		}
	})
})

// treeList prints one line per entry under the current folder (lost+found
// aside): type, mode, link count, size, path, symlink target, and the
// SHA-256 of every regular file, sorted by path.
const treeList = `find . -path ./lost+found -prune -o -mindepth 1 -printf '%y %m %n %s %p -> %l\n' | sort -k5 && find . -path ./lost+found -prune -o -type f -print0 | sort -z | xargs -0 sha256sum`

// listTree runs treeList in dir on the host.
func listTree(dir string) string {
	GinkgoHelper()
	cmd := exec.Command("sh", "-c", treeList)
	cmd.Dir = dir
	out, err := cmd.Output()
	Expect(err).NotTo(HaveOccurred())
	Expect(strings.Count(string(out), "\n")).To(BeNumerically(">", 500))
	return string(out)
}

// makeTree fills dir with about 300 MB of pseudo-random files of varied
// sizes in nested folders, plus empty files, hard links and symlinks, and
// returns the bytes of file data written.
func makeTree(dir string) int64 {
	GinkgoHelper()
	var total int64
	file := func(rel string, size int64, seed uint64) {
		p := filepath.Join(dir, rel)
		Expect(os.MkdirAll(filepath.Dir(p), 0o755)).To(Succeed())
		writeRandom(p, size, seed)
		total += size
	}
	seed := uint64(100)
	// Large files.
	file("var/lib/big.img", 96<<20, seed)
	file("opt/app/blob1.bin", 40<<20+12345, seed+1)
	file("opt/app/blob2.bin", 24<<20+1, seed+2)
	// 20 medium files of 1-6 MiB.
	for i := range 20 {
		file(fmt.Sprintf("usr/share/data%02d/file%02d.dat", i%4, i), int64(1+i%6)<<20+int64(i*4099), seed+10+uint64(i))
	}
	// 600 small files of a few bytes to ~130 KiB.
	for i := range 600 {
		file(fmt.Sprintf("usr/lib/mod%02d/f%03d", i%30, i), int64(i*i*37%(128<<10)+i%7), seed+100+uint64(i))
	}
	for _, rel := range []string{"etc/empty.conf", "var/log/empty.log"} {
		p := filepath.Join(dir, rel)
		Expect(os.MkdirAll(filepath.Dir(p), 0o755)).To(Succeed())
		Expect(os.WriteFile(p, nil, 0o600)).To(Succeed())
	}
	Expect(os.WriteFile(filepath.Join(dir, "etc/hostname"), []byte("golden\n"), 0o644)).To(Succeed())
	Expect(os.Chmod(filepath.Join(dir, "opt/app/blob2.bin"), 0o750)).To(Succeed())
	// Hard links (three names for one inode, two for another) and symlinks
	// (relative, absolute, dangling, to a folder).
	Expect(os.MkdirAll(filepath.Join(dir, "bin"), 0o755)).To(Succeed())
	for _, l := range [][2]string{
		{"usr/lib/mod00/f000", "bin/hard0"}, {"usr/lib/mod00/f000", "etc/hard0"},
		{"opt/app/blob2.bin", "bin/blob2"},
	} {
		Expect(os.Link(filepath.Join(dir, l[0]), filepath.Join(dir, l[1]))).To(Succeed())
	}
	for _, l := range [][2]string{
		{"../usr/lib/mod01/f001", "bin/rel"}, {"/etc/hostname", "bin/abs"},
		{"nowhere/at/all", "bin/dangling"}, {"usr/share", "share"},
	} {
		Expect(os.Symlink(l[0], filepath.Join(dir, l[1]))).To(Succeed())
	}
	return total
}

// linkTxBytes returns the bytes the golden namespace sent out of port (a
// bridge port towards a node), as the kernel counts them.
func linkTxBytes(c *harness.Cluster, port string) int64 {
	GinkgoHelper()
	out, err := c.Golden().Run(context.Background(), "ip", "-s", "-j", "link", "show", "dev", port)
	Expect(err).NotTo(HaveOccurred())
	var links []struct {
		Stats struct {
			TX struct {
				Bytes int64 `json:"bytes"`
			} `json:"tx"`
		} `json:"stats64"`
	}
	Expect(json.Unmarshal(out, &links)).To(Succeed(), "ip -j: %s", out)
	Expect(links).To(HaveLen(1))
	return links[0].Stats.TX.Bytes
}
