package e2e

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/herd-cluster/herd/harness"
)

var _ = Describe("the receiver's allow list", func() {
	It("leaves the disk of a node that does not allow it untouched; the others verified", func() {
		const size = 16 << 20
		c := newCluster(harness.Config{Nodes: 3, DiskSize: size})
		dir := GinkgoT().TempDir()
		golden := dir + "/golden.img"
		writeRandom(golden, size, 40)
		guard := c.Nodes()[1]
		for i, n := range c.Nodes() {
			writeRandom(n.Disk(), size, 50+uint64(i))
		}
		before := sha256File(guard.Disk())

		var recvs []*harness.Proc
		for _, n := range c.Nodes() {
			args := recvArgs()
			if n == guard {
				// Its own disk is not in its list: only a folder.
				args = []string{"recv", "--json", "--key-file", suiteKey, "--allow", harness.NodeDir + "/images/**"}
			}
			p, err := n.Start(context.Background(), herdBin, args...)
			Expect(err).NotTo(HaveOccurred())
			recvs = append(recvs, p)
		}
		cfg := dollyConfig(dir, c, "infile "+golden, "outfile "+harness.NodeDisk)
		code, s, p := send(c, cfg, 2*time.Minute)
		Expect(code).To(Equal(1), "one node failed; herd send stderr: %s", p.Stderr())
		Expect(exitCodes(recvs, time.Minute)).To(Equal([]int{0, 1, 0}))
		Expect(s.Nodes).To(HaveLen(3))
		Expect(s.Nodes[1].State).To(Equal("failed"))
		Expect(s.Nodes[1].Error).To(ContainSubstring(harness.NodeDisk), "the reason names the destination")
		Expect(s.Nodes[1].Error).To(ContainSubstring("--allow"))
		Expect(sha256File(guard.Disk())).To(Equal(before), "the refusing node's disk is untouched")
		want := sha256File(golden)
		for _, i := range []int{0, 2} {
			Expect(s.Nodes[i].State).To(Equal("done"), s.Nodes[i].Error)
			Expect(sha256Prefix(c.Nodes()[i].Disk(), size)).To(Equal(want), c.Nodes()[i].Name())
		}
	})
})
