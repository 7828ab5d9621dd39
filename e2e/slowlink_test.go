package e2e

import (
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/herd-cluster/herd/harness"
)

// Issue #4: a node behind a slow link (here node3, whose card is shaped to
// a tenth of the others' rate, both ways) does not hold the chain back.
var _ = Describe("slow link (issue #4)", func() {
	const (
		nodes = 8
		rate  = 240e6 // bits/s per link, both ways: ~30 MB/s
		size  = 128 << 20
	)
	var (
		c    *harness.Cluster
		cfg  string
		want string
	)
	BeforeEach(func() {
		c = newCluster(harness.Config{Nodes: nodes, DiskSize: size, Rate: rate})
		dir := GinkgoT().TempDir()
		golden := filepath.Join(dir, "golden.img")
		writeRandom(golden, size, 11)
		want = sha256File(golden)
		cfg = dollyConfig(dir, c, "infile "+golden, "outfile "+harness.NodeDisk)
		// node3's link at ~3 MB/s: the image takes it ~45 s, the others
		// ~5 s.
		Expect(c.Nodes()[2].SetRate(rate / 10)).To(Succeed())
	})

	It("lets the others finish long before a node behind a slow link, which still completes (default policy)", func() {
		recvs := startRecv(c)
		// The default policy (move), after a 2 s lag instead of 5 s.
		p := startSend(c, cfg, "--slow-after", "2s")
		code, s := finishSend(p, 3*time.Minute)
		Expect(code).To(Equal(0), "herd send stderr: %s", p.Stderr())
		Expect(s.OK).To(BeTrue())
		Expect(s.Nodes).To(HaveLen(nodes))
		for i, n := range c.Nodes() {
			Expect(s.Nodes[i].State).To(Equal("done"), "%s: %s", n.Name(), s.Nodes[i].Error)
			Expect(s.Nodes[i].Items).To(HaveLen(1))
			Expect(s.Nodes[i].Items[0].Verified).To(BeTrue(), n.Name())
			Expect(sha256Prefix(n.Disk(), size)).To(Equal(want), "disk of %s", n.Name())
		}
		Expect(exitCodes(recvs, time.Minute)).To(HaveEach(0))
		t := stateTimes(p, nodes, "done")
		AddReportEntry("seconds until each node was done", t)
		Expect(t[2]).To(BeNumerically(">", 30), "node3 receives at its link's pace")
		for i, ti := range t {
			if i == 2 {
				continue
			}
			Expect(ti).To(BeNumerically(">=", 0), "node%d seen done", i+1)
			Expect(ti).To(BeNumerically("<=", t[2]/2), "node%d is not held back by node3", i+1)
		}
	})

	It("drops a node behind a slow link under --slow drop: reported too slow, naming the link, the others finish at full speed", func() {
		recvs := startRecv(c)
		start := time.Now()
		// The default window (5 s), not 2 s: under drop, a verdict costs
		// a node its clone, and a node that catches up after node3 is
		// dropped feeds the next one faster than the chain runs; on a
		// busy host that lag lasted over 2 s once and a healthy node
		// was dropped (issue #13, docs/invariants.md, known limits).
		p := startSend(c, cfg, "--slow", "drop")
		code, s := finishSend(p, 3*time.Minute)
		took := time.Since(start)
		AddReportEntry("seconds of the session", took.Seconds())
		Expect(code).To(Equal(1), "herd send stderr: %s", p.Stderr())
		Expect(s.OK).To(BeFalse())
		Expect(s.Nodes).To(HaveLen(nodes))
		for i, n := range c.Nodes() {
			if i == 2 {
				Expect(s.Nodes[i].State).To(Equal("failed"))
				Expect(s.Nodes[i].Error).To(HavePrefix("too slow: the link into it"))
				continue
			}
			Expect(s.Nodes[i].State).To(Equal("done"), "%s: %s", n.Name(), s.Nodes[i].Error)
			Expect(s.Nodes[i].Items[0].Verified).To(BeTrue(), n.Name())
			Expect(sha256Prefix(n.Disk(), size)).To(Equal(want), "disk of %s", n.Name())
		}
		// Nobody waited for node3's ~45 s.
		Expect(took).To(BeNumerically("<", 25*time.Second))
		codes := exitCodes(recvs, time.Minute)
		for i, code := range codes {
			if i == 2 {
				Expect(code).NotTo(Equal(0), "node3 was dropped")
				continue
			}
			Expect(code).To(Equal(0), "node%d", i+1)
		}
	})
})
