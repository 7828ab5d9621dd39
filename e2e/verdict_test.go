package e2e

import (
	"os"
	"runtime"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/herd-cluster/herd/harness"
	"github.com/herd-cluster/herd/ring/core"
	"github.com/herd-cluster/herd/ring/verdict"
)

// checkInvariants checks a lab session against the invariants of
// ring/verdict: the sender's summary s, every receiver's own summary (the
// last "summary" line recvs[i] printed; none: no word, as a killed node),
// and what each node's disk holds (its first size bytes against the
// golden image's sha256, want). hit lists the nodes the spec did something
// to (their verdict.Fault); every other node is healthy. policy is the
// slow policy of the session (wire.SlowMove by default).
func checkInvariants(c *harness.Cluster, s summary, recvs []*harness.Proc, hit map[int]verdict.Fault, policy uint8, want string, size int64) {
	GinkgoHelper()
	out := verdict.Session{Policy: policy, Ended: true, Want: []string{want}}
	for _, it := range s.Items {
		out.Source = append(out.Source, core.ItemStatus{Name: it.Name, Dest: it.Dest, Bytes: it.Bytes, Digest: it.Digest, Verified: it.Verified})
	}
	for i, n := range c.Nodes() {
		vn := verdict.Node{Name: n.Name(), Fault: hit[i]}
		if i < len(s.Nodes) {
			vn.Sender = nodeStatus(s.Nodes[i])
		}
		if i < len(recvs) && recvs[i] != nil {
			vn.Own = ownWord(recvs[i].Stdout())
		}
		if verdict.Done(vn.Sender) || vn.Own != nil && verdict.Done(*vn.Own) {
			vn.Held = []string{sha256Prefix(n.Disk(), size)}
		}
		out.Nodes = append(out.Nodes, vn)
	}
	vs := verdict.Check(out)
	Expect(vs).To(BeEmpty(), "invariants broken:\n%s", verdict.Report(vs))
}

func nodeStatus(n node) core.NodeStatus {
	st := core.NodeStatus{Index: n.Index, Addr: n.Addr, State: core.State(n.State), Bytes: n.Bytes, Err: n.Error}
	for _, it := range n.Items {
		st.Items = append(st.Items, core.ItemStatus{Name: it.Name, Dest: it.Dest, Bytes: it.Bytes, Digest: it.Digest, Verified: it.Verified})
	}
	return st
}

// ownWord is a receiver's own last word: its last summary line, or nil.
func ownWord(stdout []byte) *core.NodeStatus {
	var own *core.NodeStatus
	for _, l := range strings.Split(string(stdout), "\n") {
		s, err := parseSummary(l)
		if err != nil || len(s.Nodes) != 1 {
			continue
		}
		st := nodeStatus(s.Nodes[0])
		own = &st
	}
	return own
}

// lost marks nodes as hit by a fault that may take them out.
func lost(idx ...int) map[int]verdict.Fault {
	m := map[int]verdict.Fault{}
	for _, i := range idx {
		m[i] = verdict.Lost
	}
	return m
}

// loadIfAsked starts one busy loop per core for the rest of the spec when
// HERD_TEST_LOAD=1 (issue #13: the verdicts must hold on a busy host).
func loadIfAsked() {
	if os.Getenv("HERD_TEST_LOAD") == "1" {
		stop, err := harness.Busy(runtime.NumCPU())
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(stop)
	}
}
