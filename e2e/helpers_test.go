package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/herd-cluster/herd/harness"
	"github.com/herd-cluster/herd/ring/report"
)

// summary is the last JSON line of `herd send --json`, with its verdict.
type summary struct {
	*report.Event
	OK bool
}

type (
	item  = report.Item
	node  = report.Node
	stats = report.Stats
)

// parseSummary reads a summary line of herd send --json.
func parseSummary(line string) (summary, error) {
	ev, err := report.Parse([]byte(line))
	if err != nil {
		return summary{}, err
	}
	if !ev.IsSummary() {
		return summary{}, fmt.Errorf("not a summary: %s", line)
	}
	return summary{Event: ev, OK: *ev.OK}, nil
}

// newCluster builds a cluster closed at the end of the spec (also when it
// fails or is interrupted).
func newCluster(cfg harness.Config) *harness.Cluster {
	GinkgoHelper()
	c, err := harness.New(context.Background(), cfg)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() {
		if CurrentSpecReport().Failed() {
			for _, n := range c.All() {
				if b, err := os.ReadFile(n.LogPath()); err == nil {
					if len(b) > 3000 {
						b = b[len(b)-3000:]
					}
					AddReportEntry("log of "+n.Name(), string(b))
				}
			}
		}
		Expect(c.Close()).To(Succeed())
	})
	return c
}

// writeRandom writes size pseudo-random bytes (seeded, so reproducible).
func writeRandom(path string, size int64, seed uint64) {
	GinkgoHelper()
	f, err := os.Create(path)
	Expect(err).NotTo(HaveOccurred())
	defer f.Close()
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 1, 2, 3})
	_, err = io.CopyN(f, r, size)
	Expect(err).NotTo(HaveOccurred())
}

// sha256Prefix hashes the first n bytes of path (a file or a node's disk).
func sha256Prefix(path string, n int64) string {
	GinkgoHelper()
	f, err := os.Open(path)
	Expect(err).NotTo(HaveOccurred())
	defer f.Close()
	h := sha256.New()
	got, err := io.CopyN(h, f, n)
	Expect(err).NotTo(HaveOccurred())
	Expect(got).To(Equal(n))
	return hex.EncodeToString(h.Sum(nil))
}

func sha256File(path string) string {
	GinkgoHelper()
	st, err := os.Stat(path)
	Expect(err).NotTo(HaveOccurred())
	return sha256Prefix(path, st.Size())
}

// suiteKey is the session key file every herd recv and herd send of the
// suite reads (made by herd key new in BeforeSuite).
var suiteKey string

// recvArgs returns herd recv's arguments as the suite runs it: --json,
// the suite's key and --allow the node's own disk, then extra (more
// --allow for specs that write files in NodeDir).
func recvArgs(extra ...string) []string {
	return append([]string{"recv", "--json", "--key-file", suiteKey, "--allow", harness.NodeDisk}, extra...)
}

// startRecv starts herd recv (recvArgs) in every node.
func startRecv(c *harness.Cluster, extra ...string) []*harness.Proc {
	GinkgoHelper()
	var ps []*harness.Proc
	for _, n := range c.Nodes() {
		p, err := n.Start(context.Background(), herdBin, recvArgs(extra...)...)
		Expect(err).NotTo(HaveOccurred())
		ps = append(ps, p)
	}
	return ps
}

// dollyConfig writes a config with the given item lines (a Dolly
// infile/outfile pair or Dolly+ iofiles lines) for every node of c.
func dollyConfig(dir string, c *harness.Cluster, itemLines ...string) string {
	GinkgoHelper()
	var b strings.Builder
	for _, l := range itemLines {
		b.WriteString(l + "\n")
	}
	ns := c.Nodes()
	fmt.Fprintf(&b, "server golden\nfirstclient %s\nlastclient %s\nclients %d\n", ns[0].Addr(), ns[len(ns)-1].Addr(), len(ns))
	for _, n := range ns {
		b.WriteString(n.Addr().String() + "\n")
	}
	b.WriteString("endconfig\n")
	p := filepath.Join(dir, "herd.cfg")
	Expect(os.WriteFile(p, []byte(b.String()), 0o644)).To(Succeed())
	return p
}

// send runs `herd send -f cfg --json` with the suite's key in golden and
// returns its exit code and the summary line.
func send(c *harness.Cluster, cfg string, timeout time.Duration, extra ...string) (int, summary, *harness.Proc) {
	GinkgoHelper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	p, err := c.Golden().Start(ctx, herdBin, append([]string{"send", "-f", cfg, "--json", "--key-file", suiteKey}, extra...)...)
	Expect(err).NotTo(HaveOccurred())
	_ = p.Wait()
	Expect(ctx.Err()).NotTo(HaveOccurred(), "herd send did not finish in %v; stderr: %s", timeout, p.Stderr())
	lines := strings.Split(strings.TrimSpace(string(p.Stdout())), "\n")
	last := lines[len(lines)-1]
	s, err := parseSummary(last)
	Expect(err).NotTo(HaveOccurred(), "last line of herd send: %q; stderr: %s", last, p.Stderr())
	return p.ExitCode(), s, p
}

// exitCodes waits for every process and returns their exit codes.
func exitCodes(ps []*harness.Proc, timeout time.Duration) []int {
	GinkgoHelper()
	var codes []int
	deadline := time.After(timeout)
	for _, p := range ps {
		select {
		case <-p.Done():
		case <-deadline:
			Fail(fmt.Sprintf("herd recv pid %d still runs; stderr: %s", p.Pid(), p.Stderr()))
		}
		codes = append(codes, p.ExitCode())
	}
	return codes
}

// inNode runs a shell command inside n and returns its stdout.
func inNode(n *harness.Node, script string) string {
	GinkgoHelper()
	out, err := n.Run(context.Background(), "sh", "-c", script)
	Expect(err).NotTo(HaveOccurred())
	return string(out)
}

// treeSums lists "sha256  ./path" for every file under dir, sorted.
const treeSums = `cd "$0" && find . -type f -print0 | sort -z | xargs -0 sha256sum`

// progressEvent is one progress line of `herd send --json`.
type progressEvent = report.Event

// startSend starts `herd send -f cfg --json` with the suite's key in
// golden and returns at once; finishSend waits for it. The process is
// killed when the spec ends.
func startSend(c *harness.Cluster, cfg string, extra ...string) *harness.Proc {
	GinkgoHelper()
	ctx, cancel := context.WithCancel(context.Background())
	DeferCleanup(cancel)
	p, err := c.Golden().Start(ctx, herdBin, append([]string{"send", "-f", cfg, "--json", "--key-file", suiteKey}, extra...)...)
	Expect(err).NotTo(HaveOccurred())
	return p
}

// finishSend waits for a send started by startSend and returns its exit
// code and summary line.
func finishSend(p *harness.Proc, timeout time.Duration) (int, summary) {
	GinkgoHelper()
	select {
	case <-p.Done():
	case <-time.After(timeout):
		_ = p.Kill()
		Fail(fmt.Sprintf("herd send did not finish in %v; stderr: %s", timeout, p.Stderr()))
	}
	lines := strings.Split(strings.TrimSpace(string(p.Stdout())), "\n")
	last := lines[len(lines)-1]
	s, err := parseSummary(last)
	Expect(err).NotTo(HaveOccurred(), "last line of herd send: %q; stderr: %s", last, p.Stderr())
	return p.ExitCode(), s
}

// lastProgress returns the latest progress line herd send printed so far
// (ok false if none yet).
func lastProgress(p *harness.Proc) (progressEvent, bool) {
	out := p.Stdout()
	for len(out) > 0 {
		out = bytes.TrimRight(out, "\n")
		i := bytes.LastIndexByte(out, '\n')
		line := out[i+1:]
		out = out[:max(i, 0)]
		if ev, err := report.Parse(line); err == nil && ev.Event == report.Progress {
			return *ev, true
		}
		if i < 0 {
			break
		}
	}
	return progressEvent{}, false
}

// awaitProgress polls the progress lines of a running herd send until cond
// holds for one, and returns it. It fails the spec if send ends first or
// timeout passes.
func awaitProgress(p *harness.Proc, timeout time.Duration, what string, cond func(progressEvent) bool) progressEvent {
	GinkgoHelper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if ev, ok := lastProgress(p); ok && cond(ev) {
			return ev
		}
		select {
		case <-p.Done():
			Fail(fmt.Sprintf("herd send ended before %s; stdout tail: %s; stderr: %s", what, tail(p.Stdout(), 2000), p.Stderr()))
		case <-time.After(20 * time.Millisecond):
		}
	}
	Fail(fmt.Sprintf("no progress line showed %s within %v; stdout tail: %s", what, timeout, tail(p.Stdout(), 2000)))
	return progressEvent{}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// tcpEstablished reports whether the network namespace of process pid has
// an established TCP connection whose local port is port and, unless from
// is the zero Addr, whose peer is the IPv4 address from.
func tcpEstablished(pid, port int, from netip.Addr) bool {
	return tcpState(pid, port, "01", from)
}

// tcpListening reports whether process pid's network namespace has a TCP
// socket listening on port.
func tcpListening(pid, port int) bool {
	return tcpState(pid, port, "0A", netip.Addr{})
}

// tcpState reports whether the network namespace of process pid has a TCP
// socket on local port port in state (hex, as the kernel prints it) with
// peer from (any peer if from is the zero Addr). It reads both
// /proc/PID/net/tcp and tcp6 (a listener on ":port" accepts IPv4 peers as
// v4-mapped IPv6 addresses).
func tcpState(pid, port int, state string, from netip.Addr) bool {
	want := fmt.Sprintf(":%04X", port)
	peer := ""
	if from.Is4() {
		a := from.As4()
		// The kernel prints an IPv4 address as one native (little-endian)
		// word, also as the last word of a v4-mapped IPv6 address.
		peer = fmt.Sprintf("%02X%02X%02X%02X", a[3], a[2], a[1], a[0])
	}
	for _, table := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(l)
			if len(f) < 4 || !strings.HasSuffix(f[1], want) || f[3] != state {
				continue
			}
			remote, _, _ := strings.Cut(f[2], ":")
			if strings.HasSuffix(remote, peer) {
				return true
			}
		}
	}
	return false
}
