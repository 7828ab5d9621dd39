package live

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/herd-cluster/herd/pxe/state"
	"github.com/herd-cluster/herd/ring"
)

// browser opens url in Debian's Chromium, headless and offline.
func browser(t *testing.T, url string) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("no chromium (make deps installs Debian's)")
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path), chromedp.UserDataDir(filepath.Join(t.TempDir(), "chromium")),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.WindowSize(1280, 900))
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); acancel() })
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	return ctx
}

func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	ectx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ectx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return v
}

// waitFor polls js in the page until it is true.
func waitFor(t *testing.T, ctx context.Context, js string) {
	t.Helper()
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := chromedp.Run(pctx, chromedp.Poll[bool](js)); err != nil {
		shown, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('shown').textContent`))
		t.Fatalf("waiting for %s: %v (the page shows %q)", js, err, shown)
	}
}

// At 1000 machines the page shows them all as a compact grid, updates
// live, and its filters find one machine by name, the failed ones, and
// a state; a machine's name with markup in it stays text.
func TestPageAt1000Machines(t *testing.T) {
	const n = 1000
	h := NewHub("deploy")
	ms := make([]state.Machine, n)
	addrs := make([]string, n)
	for i := range ms {
		ms[i] = state.Machine{MAC: fmt.Sprintf("52:54:00:00:%02x:%02x", i/256, i%256), Name: fmt.Sprintf("node%04d", i),
			State: state.Cloning, IP: fmt.Sprintf("10.1.%d.%d", i/250, i%250+1), Port: 9998}
		addrs[i] = fmt.Sprintf("10.1.%d.%d:9998", i/250, i%250+1)
	}
	ms[7].Name = `<img src=x onerror="document.title='owned'">`
	h.Machines(ms)
	h.StartChain("image", addrs)
	srv := httptest.NewServer(h.Handler())
	t.Cleanup(srv.Close) // after the browser (cleanups run last first): its event stream ends with it
	ctx := browser(t, srv.URL+"/")

	waitFor(t, ctx, fmt.Sprintf(`document.querySelectorAll('#grid .m').length === %d`, n))
	if got := eval[int](t, ctx, `document.querySelectorAll('#grid .m[data-state=registered]').length`); got != n {
		t.Fatalf("%d machines shown registered, want %d", got, n)
	}
	if title := eval[string](t, ctx, `document.title`); title != "herd: live view" {
		t.Fatalf("a machine's name ran as markup: title %q", title)
	}
	if txt := eval[string](t, ctx, `document.querySelector('#grid .m[data-id="52:54:00:00:00:07"] .n').textContent`); txt != ms[7].Name {
		t.Fatalf("machine 7 shown as %q", txt)
	}

	// The chain runs; node0500 fails; the page follows.
	nodes := make([]ring.NodeStatus, n)
	route := make([]ring.Slot, 0, n)
	for i := range nodes {
		nodes[i] = ring.NodeStatus{Index: i, Addr: addrs[i], State: ring.StateReceiving, Bytes: int64(i), Rate: 1e6}
		if i == 500 {
			nodes[i].State, nodes[i].Err = ring.StateFailed, "dead at offset 500: connection reset"
			continue
		}
		route = append(route, ring.Slot{Index: i})
	}
	start := time.Now()
	h.Progress(ring.Snapshot{Elapsed: time.Second, Total: 1 << 30, Sent: 1 << 20, Nodes: nodes, Route: route})
	waitFor(t, ctx, `document.querySelectorAll('#grid .m[data-state=receiving]').length === 999 && document.querySelectorAll('#grid .m[data-state=ko]').length === 1`)
	t.Logf("1000 machines: a change reached the page in %v", time.Since(start))
	if r := eval[string](t, ctx, `document.querySelector('#failures li .reason').textContent`); r != "dead at offset 500: connection reset" {
		t.Fatalf("failure shown as %q", r)
	}

	// Filters: by name, failed only, by state.
	filter := func(js, want string) {
		t.Helper()
		eval[bool](t, ctx, js+`; document.getElementById('filter').dispatchEvent(new Event('input')); true`)
		waitFor(t, ctx, `document.getElementById('shown').textContent === '`+want+`'`)
	}
	filter(`document.getElementById('filter').value = 'node0999'`, "1 of 1000 shown")
	if id := eval[string](t, ctx, `document.querySelector('#grid .m').dataset.id`); id != ms[999].MAC {
		t.Fatalf("filter by name shows %s", id)
	}
	filter(`document.getElementById('filter').value = ''; document.getElementById('only-failed').checked = true`, "1 of 1000 shown")
	if id := eval[string](t, ctx, `document.querySelector('#grid .m').dataset.id`); id != ms[500].MAC {
		t.Fatalf("failed only shows %s", id)
	}
	filter(`document.getElementById('only-failed').checked = false; document.getElementById('state-filter').value = 'receiving'`, "999 of 1000 shown")
}
