package e2e

import (
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/herd-cluster/herd/harness"
)

var _ = Describe("faults", func() {
	// fault runs a raw clone of size bytes to 5 nodes on links shaped to
	// rate, applies hit to node3 after delay, and checks that every other
	// node completes and verifies while node3 is reported failed.
	fault := func(rate uint64, size int64, delay time.Duration, hit func(*harness.Node)) {
		GinkgoHelper()
		c := newCluster(harness.Config{Nodes: 5, DiskSize: size, Rate: rate})
		dir := GinkgoT().TempDir()
		golden := filepath.Join(dir, "golden.img")
		writeRandom(golden, size, 5)
		want := sha256File(golden)
		recvs := startRecv(c)
		cfg := dollyConfig(dir, c, "infile "+golden, "outfile "+harness.NodeDisk)
		victim := c.Nodes()[2]
		time.AfterFunc(delay, func() { hit(victim) })
		code, s, p := send(c, cfg, 2*time.Minute)
		Expect(code).To(Equal(1), "herd send must report a partial failure; stderr: %s", p.Stderr())
		Expect(s.OK).To(BeFalse())
		Expect(s.Nodes).To(HaveLen(5))
		for i, n := range c.Nodes() {
			sn := s.Nodes[i]
			if n == victim {
				Expect(sn.State).NotTo(Equal("done"))
				Expect(sn.Error).NotTo(BeEmpty())
				continue
			}
			Expect(sn.State).To(Equal("done"), "%s: %s", n.Name(), sn.Error)
			Expect(sn.Items).To(HaveLen(1))
			Expect(sn.Items[0].Verified).To(BeTrue(), n.Name())
			Expect(sha256Prefix(n.Disk(), size)).To(Equal(want), "disk of %s", n.Name())
			Expect(recvs[i].Wait()).To(Succeed(), "herd recv on %s", n.Name())
		}
	}

	// Pending until the chain bypasses a dead node: today the nodes after
	// it are reported "cut off: node N upstream of it failed".
	PIt("finishes the other nodes when one node is killed mid-clone", func() {
		fault(200e6, 96<<20, 1500*time.Millisecond, func(n *harness.Node) {
			Expect(n.Kill()).To(Succeed())
		})
	})

	PIt("finishes the other nodes when one node's link is cut mid-clone", func() {
		fault(200e6, 96<<20, 1500*time.Millisecond, func(n *harness.Node) {
			Expect(n.Cut()).To(Succeed())
		})
	})
})
