package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/chromedp/chromedp"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/herd-cluster/herd/harness"
	"github.com/herd-cluster/herd/internal/testenv"
)

// Issue #16: the live view, seen by a real browser. herd send --http runs
// in golden, a 4-node lab clone with node2 killed mid-stream; headless
// Chromium (Debian's) watches the page through a forwarder into golden's
// namespace and records every state each machine's card shows. At the
// end /metrics is scraped and its counts checked against the summary.
var _ = Describe("the live view (issue #16)", func() {
	It("shows every node go from receiving to verified and the killed node's reason in a browser, and /metrics counts them", func() {
		chromium, err := exec.LookPath("chromium")
		if err != nil {
			Skip("no chromium: make deps installs Debian's chromium")
		}
		loadIfAsked()
		const (
			nodes  = 4
			size   = 128 << 20
			rate   = 240e6
			victim = 1
			port   = 18080
		)
		c := newCluster(harness.Config{Nodes: nodes, DiskSize: size, Rate: rate})
		dir := GinkgoT().TempDir()
		golden := filepath.Join(dir, "golden.img")
		writeRandom(golden, size, 16)
		want := sha256File(golden)
		cfg := dollyConfig(dir, c, "infile "+golden, "outfile "+harness.NodeDisk)
		recvs := startRecv(c)
		p := startSend(c, cfg, "--http", fmt.Sprintf("127.0.0.1:%d", port), "--http-linger", "5m")

		base := forwardInto(c.Golden(), fmt.Sprintf("127.0.0.1:%d", port))
		Eventually(func() error {
			r, err := http.Get(base + "api/v1/view")
			if err == nil {
				r.Body.Close()
			}
			return err
		}).WithTimeout(30*time.Second).WithPolling(50*time.Millisecond).Should(Succeed(), "the live view answers")

		ctx := browser(chromium, dir)
		Expect(chromedp.Do(ctx, chromedp.Navigate(base))).To(Succeed())
		wctx, wcancel := context.WithTimeout(ctx, time.Minute)
		Expect(chromedp.Do(wctx, chromedp.WaitVisible(chromedp.CSS(`#grid .m`)))).To(Succeed(), "the page shows the machines")
		wcancel()

		// Every 100 ms, what each card shows: id, state, reason.
		type card struct{ ID, State, Reason string }
		seen := map[string]map[string]bool{}
		var last []card
		var running string
		poll := func() {
			GinkgoHelper()
			var err error
			last, err = chromedp.Run(ctx, chromedp.Evaluate[[]card](`[...document.querySelectorAll('#grid .m')].map(c => ({ID: c.dataset.id, State: c.dataset.state, Reason: (c.querySelector('.r')||{}).textContent||''}))`))
			Expect(err).NotTo(HaveOccurred())
			running, err = chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('status').dataset.running || ''`))
			Expect(err).NotTo(HaveOccurred())
			for _, c := range last {
				if seen[c.ID] == nil {
					seen[c.ID] = map[string]bool{}
				}
				seen[c.ID][c.State] = true
			}
		}
		killed := false
		deadline := time.Now().Add(2 * time.Minute)
		for running != "false" && time.Now().Before(deadline) {
			poll()
			if !killed {
				if ev, ok := lastProgress(p); ok && ev.Total > 0 && len(ev.Nodes) == nodes && float64(ev.Nodes[victim].Bytes) >= 0.4*float64(ev.Total) {
					Expect(c.Nodes()[victim].Kill()).To(Succeed())
					killed = true
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		Expect(killed).To(BeTrue(), "node2 reached 40%% while the page was watched")
		Expect(running).To(Equal("false"), "the page says the session ended")
		poll()

		shot := screenshot(ctx)
		Expect(shot).NotTo(BeEmpty())

		// The summary herd send printed (the view lingers after it).
		var s summary
		Eventually(func() error {
			lines := strings.Split(strings.TrimSpace(string(p.Stdout())), "\n")
			var err error
			s, err = parseSummary(lines[len(lines)-1])
			return err
		}).WithTimeout(30 * time.Second).Should(Succeed())
		Expect(s.Nodes).To(HaveLen(nodes))

		Expect(last).To(HaveLen(nodes), "one card per node")
		for i, n := range c.Nodes() {
			id := fmt.Sprintf("%s:9998", n.Addr())
			var got card
			for _, c := range last {
				if c.ID == id {
					got = c
				}
			}
			Expect(got.ID).To(Equal(id), "a card for %s", n.Name())
			AddReportEntry(n.Name()+" states seen in the browser", fmt.Sprint(seen[id]))
			if i == victim {
				Expect(got.State).To(Equal("ko"), n.Name())
				Expect(got.Reason).To(MatchRegexp(`^dead at offset [1-9][0-9]*: `), n.Name())
				Expect(got.Reason).To(Equal(s.Nodes[i].Error), "the page gives the summary's reason")
				continue
			}
			Expect(seen[id]).To(HaveKey("receiving"), "%s was seen receiving", n.Name())
			Expect(got.State).To(Equal("verified"), "%s: %s", n.Name(), got.Reason)
			Expect(s.Nodes[i].State).To(Equal("done"))
			Expect(sha256Prefix(n.Disk(), size)).To(Equal(want), "disk of %s", n.Name())
		}
		failures, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#failures li .reason')].map(e => e.textContent)`))
		Expect(err).NotTo(HaveOccurred())
		Expect(failures).To(ConsistOf(s.Nodes[victim].Error), "the failures list")

		// The log panel of the failed node gives its reason.
		Expect(chromedp.Do(ctx, chromedp.Click(chromedp.CSS(fmt.Sprintf(`#grid .m[data-id="%s:9998"]`, c.Nodes()[victim].Addr()))))).To(Succeed())
		_, err = chromedp.Run(ctx, chromedp.Poll[bool](`document.getElementById('log').textContent.includes('failed:')`, chromedp.WithPollingTimeout(10*time.Second)))
		Expect(err).NotTo(HaveOccurred(), "the log panel shows the failure")
		logText, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('log').textContent`))
		Expect(err).NotTo(HaveOccurred())
		Expect(logText).To(ContainSubstring("failed: " + s.Nodes[victim].Error))

		metrics := scrape(base + "metrics")
		for name, v := range map[string]float64{
			`herd_machines{state="verified"}`:      nodes - 1,
			`herd_machines{state="ko"}`:            1,
			`herd_machines{state="receiving"}`:     0,
			`herd_failures_total{reason="dead"}`:   1,
			`herd_bypasses_total`:                  1,
			`herd_sent_bytes`:                      size,
			`herd_total_bytes`:                     size,
			`herd_session_running`:                 0,
			`herd_failures_total{reason="verify"}`: 0,
			`herd_failures_total{reason="other"}`:  0,
			`herd_moves_total`:                     0,
		} {
			Expect(metrics).To(HaveKeyWithValue(name, v), "/metrics %s", name)
		}
		for i, n := range c.Nodes() {
			w := metrics[fmt.Sprintf(`herd_node_written_bytes{id="%s:9998",name=""}`, n.Addr())]
			if i == victim {
				Expect(w).To(BeNumerically("<", size))
			} else {
				Expect(w).To(BeNumerically("==", size), n.Name())
			}
		}

		// Ctrl-C ends the lingering view; herd send exits 1 (some nodes ok).
		Expect(syscall.Kill(p.Pid(), syscall.SIGTERM)).To(Succeed())
		code, _ := finishSend(p, 30*time.Second)
		Expect(code).To(Equal(1), "stderr: %s", p.Stderr())
		exitCodes(append(recvs[:victim:victim], recvs[victim+1:]...), time.Minute)
	})
})

// forwardInto serves a port on the host's loopback that forwards to addr
// inside n's network namespace, for a browser on the host, and returns
// its URL. It stops when the spec ends.
func forwardInto(n *harness.Node, addr string) string {
	GinkgoHelper()
	local, stop, err := testenv.Forward(n.NetNS(), addr)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(stop)
	return "http://" + local + "/"
}

// browser starts Debian's Chromium headless, with nothing that reaches
// out to the internet, and returns its context; it ends with the spec.
func browser(path, dir string) context.Context {
	GinkgoHelper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.UserDataDir(filepath.Join(dir, "chromium")),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.WindowSize(1280, 900),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	DeferCleanup(func() { cancel(); acancel() })
	return ctx
}

// screenshot saves the page as results/e2e/live-view.png (a test
// artifact; README shows one) and returns it.
func screenshot(ctx context.Context) []byte {
	GinkgoHelper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	Expect(err).NotTo(HaveOccurred())
	out := filepath.Join("..", "results", "e2e")
	if d := os.Getenv("HERD_ARTIFACTS"); d != "" {
		out = d
	}
	Expect(os.MkdirAll(out, 0o755)).To(Succeed())
	path := filepath.Join(out, "live-view.png")
	Expect(os.WriteFile(path, png, 0o644)).To(Succeed())
	AddReportEntry("screenshot of the live view", path)
	return png
}

// scrape reads a Prometheus text page into name{labels} → value.
func scrape(url string) map[string]float64 {
	GinkgoHelper()
	r, err := http.Get(url)
	Expect(err).NotTo(HaveOccurred())
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	Expect(err).NotTo(HaveOccurred())
	Expect(r.StatusCode).To(Equal(200))
	out := map[string]float64{}
	line := regexp.MustCompile(`^([a-z_]+(?:\{[^}]*\})?) (\S+)$`)
	for _, l := range strings.Split(string(b), "\n") {
		if m := line.FindStringSubmatch(l); m != nil {
			var v float64
			fmt.Sscan(m[2], &v)
			out[m[1]] = v
		}
	}
	return out
}
