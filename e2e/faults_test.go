package e2e

import (
	"errors"
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

	It("finishes the other nodes when one node is killed mid-clone", func() {
		fault(200e6, 96<<20, 1500*time.Millisecond, func(n *harness.Node) {
			Expect(n.Kill()).To(Succeed())
		})
	})

	It("finishes the other nodes when one node's link is cut mid-clone", func() {
		fault(200e6, 96<<20, 1500*time.Millisecond, func(n *harness.Node) {
			Expect(n.Cut()).To(Succeed())
		})
	})

	It("finishes the other nodes when one node is frozen mid-clone", func() {
		fault(200e6, 96<<20, 1500*time.Millisecond, func(n *harness.Node) {
			Expect(n.Freeze()).To(Succeed())
		})
	})
})

var _ = Describe("adverse conditions", func() {
	// clone runs a raw clone of size bytes to every node of c and checks
	// every node completed, verified, and holds the image.
	clone := func(c *harness.Cluster, size int64) summary {
		GinkgoHelper()
		dir := GinkgoT().TempDir()
		golden := filepath.Join(dir, "golden.img")
		writeRandom(golden, size, 6)
		want := sha256File(golden)
		recvs := startRecv(c)
		cfg := dollyConfig(dir, c, "infile "+golden, "outfile "+harness.NodeDisk)
		code, s, p := send(c, cfg, 2*time.Minute)
		Expect(code).To(Equal(0), "herd send stderr: %s", p.Stderr())
		Expect(exitCodes(recvs, time.Minute)).To(HaveEach(0))
		Expect(s.OK).To(BeTrue())
		for i, n := range c.Nodes() {
			Expect(s.Nodes[i].State).To(Equal("done"), "%s: %s", n.Name(), s.Nodes[i].Error)
			Expect(s.Nodes[i].Items[0].Verified).To(BeTrue(), n.Name())
			Expect(sha256Prefix(n.Disk(), size)).To(Equal(want), "disk of %s", n.Name())
		}
		return s
	}

	It("clones intact over lossy links (one packet in 50 dropped at every node)", func() {
		c := newCluster(harness.Config{Nodes: 4, DiskSize: 48 << 20})
		for _, n := range c.Nodes() {
			Expect(n.SetLoss(50)).To(Succeed())
		}
		clone(c, 48<<20)
	})

	It("clones intact when one node's disk is slow, and the throttle is felt", func() {
		const size = 48 << 20
		c := newCluster(harness.Config{Nodes: 4, DiskSize: size})
		err := c.Nodes()[1].SlowDisk(0, 16<<20)
		if errors.Is(err, harness.ErrUnsupported) {
			Skip("no disk throttling on this machine: " + err.Error())
		}
		Expect(err).NotTo(HaveOccurred())
		start := time.Now()
		clone(c, size)
		// 48 MiB at 16 MiB/s cannot take less than 3 s if the node syncs.
		Expect(time.Since(start)).To(BeNumerically(">", 2500*time.Millisecond))
	})
})
