package live

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/herd-cluster/herd/pxe/state"
	"github.com/herd-cluster/herd/ring"
)

func node(i int, addr string, st ring.State, bytes int64, err string) ring.NodeStatus {
	return ring.NodeStatus{Index: i, Addr: addr, State: st, Bytes: bytes, Rate: float64(bytes), Err: err}
}

// A chain of three: one moved to the tail, one failing, then all done.
func TestHubFollowsTheChain(t *testing.T) {
	h := NewHub("send")
	clock := time.Unix(1000, 0)
	h.SetClock(func() time.Time { return clock })
	addrs := []string{"10.0.0.1:9998", "10.0.0.2:9998", "10.0.0.3:9998"}
	h.Plan(addrs, map[string]string{addrs[0]: "n1"})
	v := h.View()
	if v.Counts[Waiting] != 3 || len(v.Route) != 3 {
		t.Fatalf("planned: counts %v route %v", v.Counts, v.Route)
	}
	h.Progress(ring.Snapshot{Elapsed: time.Second, Total: 300, Sent: 100,
		Nodes: []ring.NodeStatus{node(0, addrs[0], ring.StateReceiving, 100, ""), node(1, addrs[1], ring.StateReceiving, 50, ""), node(2, addrs[2], ring.StateReceiving, 10, "")},
		Route: []ring.Slot{{Index: 0}, {Index: 2}, {Index: 1, Tail: true}}})
	v = h.View()
	if v.Counts[Receiving] != 3 || v.Moves != 1 {
		t.Fatalf("receiving: counts %v moves %d", v.Counts, v.Moves)
	}
	if strings.Join(v.Route, " ") != addrs[0]+" "+addrs[2]+" "+addrs[1] {
		t.Fatalf("route %v", v.Route)
	}
	if m := v.Machines[2]; m.ID != addrs[1] || m.Place != "tail" || m.Position != 3 {
		t.Fatalf("moved node shown as %+v", m)
	}
	clock = clock.Add(2 * time.Second)
	h.Progress(ring.Snapshot{Elapsed: 3 * time.Second, Total: 300, Sent: 300,
		Nodes: []ring.NodeStatus{node(0, addrs[0], ring.StateDone, 300, ""), node(1, addrs[1], ring.StateSyncing, 300, ""), node(2, addrs[2], ring.StateFailed, 10, "dead at offset 10")},
		Route: []ring.Slot{{Index: 0}, {Index: 1, Tail: true}}})
	h.Finish(false)
	v = h.View()
	if v.Counts[Verified] != 1 || v.Counts[Writing] != 1 || v.Counts[KO] != 1 || v.Bypasses != 1 || v.Moves != 1 {
		t.Fatalf("end: counts %v bypasses %d moves %d", v.Counts, v.Bypasses, v.Moves)
	}
	if len(v.Failures) != 1 || v.Failures[0].ID != addrs[2] || v.Failures[0].Reason != "dead at offset 10" {
		t.Fatalf("failures %+v", v.Failures)
	}
	if v.Running || v.OK == nil || *v.OK {
		t.Fatalf("finished view says running=%v ok=%v", v.Running, v.OK)
	}
	if v.Machines[0].Name != "n1" || len(v.Machines[0].Spark) != 2 {
		t.Fatalf("first machine %+v", v.Machines[0])
	}
}

// PXE state and chain addresses meet: a registered machine's chain node
// is the same machine, named by its MAC.
func TestHubJoinsPXEStateAndChain(t *testing.T) {
	h := NewHub("deploy")
	h.Machines([]state.Machine{
		{MAC: "52:54:00:00:00:01", Name: "a", State: state.New},
		{MAC: "52:54:00:00:00:02", Name: "b", State: state.Cloning, IP: "10.0.0.2", Port: 9998},
	})
	if v := h.View(); v.Counts[Booting] != 1 || v.Counts[Registered] != 1 {
		t.Fatalf("counts %v", v.Counts)
	}
	h.StartChain("image", []string{"10.0.0.2:9998"})
	h.Progress(ring.Snapshot{Nodes: []ring.NodeStatus{node(0, "10.0.0.2:9998", ring.StateReceiving, 5, "")}, Route: []ring.Slot{{Index: 0}}})
	v := h.View()
	if len(v.Machines) != 2 || v.Machines[0].ID != "52:54:00:00:00:02" || v.Machines[0].State != Receiving || v.Machines[0].Position != 1 {
		t.Fatalf("machines %+v", v.Machines)
	}
	h.Machines([]state.Machine{{MAC: "52:54:00:00:00:01", Name: "a", State: state.Failed, Reason: "no disk fits: sda 1 GiB", Log: []string{"line\x1b[31m one"}}})
	lines, ok := h.MachineLog("52:54:00:00:00:01")
	if !ok || len(lines) != 3 || lines[0] != "kernel log:" || lines[1] != "line [31m one" || !strings.Contains(lines[2], "no disk fits") {
		t.Fatalf("log %q", lines)
	}
	h.Machines([]state.Machine{{MAC: "52:54:00:00:00:02", Name: "b", State: state.Local, IP: "10.0.0.2", Port: 9998,
		AgentLog: []string{"herd: clone verified"}, Fixups: "hostname b"}})
	if l, _ := h.MachineLog("52:54:00:00:00:02"); strings.Join(l, "|") != "herd: clone verified|fix-ups: hostname b" {
		t.Fatalf("log of b: %q", l)
	}
	if v := h.View(); v.Counts[Local] != 1 || v.Counts[KO] != 1 || len(v.Failures) != 1 {
		t.Fatalf("counts %v failures %+v", v.Counts, v.Failures)
	}
}

// Whatever a peer feeds it, a hub stays bounded.
func TestHubBounds(t *testing.T) {
	h := NewHub("pxe")
	ms := make([]state.Machine, maxMachines+50)
	for i := range ms {
		ms[i] = state.Machine{MAC: string(rune('a'+i%26)) + strings.Repeat("x", i%7) + string(rune(i)), State: state.New, Name: strings.Repeat("n", 1000)}
	}
	h.Machines(ms)
	v := h.View()
	if len(v.Machines) != maxMachines {
		t.Fatalf("%d machines kept", len(v.Machines))
	}
	if len(v.Machines[0].Name) > 64 {
		t.Fatalf("a name of %d bytes kept", len(v.Machines[0].Name))
	}
	h.Log(v.Machines[0].ID, make([]string, 5000)...)
	if l, _ := h.MachineLog(v.Machines[0].ID); len(l) != maxLogLines {
		t.Fatalf("%d log lines kept", len(l))
	}
}

func get(t *testing.T, srv *httptest.Server, path string) (int, string) {
	t.Helper()
	r, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r.StatusCode, string(b)
}

func TestHandler(t *testing.T) {
	h := NewHub("send")
	h.Plan([]string{"10.0.0.1:9998", "10.0.0.2:9998"}, nil)
	h.Progress(ring.Snapshot{Total: 10, Sent: 10, Nodes: []ring.NodeStatus{node(0, "10.0.0.1:9998", ring.StateDone, 10, ""), node(1, "10.0.0.2:9998", ring.StateFailed, 3, "digest mismatch on item 1")},
		Route: []ring.Slot{{Index: 0}}})
	h.Count("dhcp", "ok")
	h.Count("dhcp", "ok")
	h.Count("tftp", "error")
	srv := httptest.NewServer(h.Handler())
	defer srv.Close()

	code, body := get(t, srv, "/")
	if code != 200 || !strings.Contains(body, "/assets/app.js") {
		t.Fatalf("/: %d %.200s", code, body)
	}
	for _, a := range []string{"/assets/app.js", "/assets/style.css"} {
		if code, body := get(t, srv, a); code != 200 || len(body) < 100 {
			t.Fatalf("%s: %d", a, code)
		}
	}
	code, body = get(t, srv, "/api/v1/view")
	var v View
	if code != 200 || json.Unmarshal([]byte(body), &v) != nil || v.Version != Version || v.Counts[Verified] != 1 || v.Counts[KO] != 1 {
		t.Fatalf("view: %d %s", code, body)
	}
	code, body = get(t, srv, "/api/v1/machines/10.0.0.2:9998/log")
	if code != 200 || !strings.Contains(body, "failed: digest mismatch on item 1") {
		t.Fatalf("log: %d %q", code, body)
	}
	if code, _ := get(t, srv, "/api/v1/machines/nobody/log"); code != 404 {
		t.Fatalf("log of nobody: %d", code)
	}
	code, body = get(t, srv, "/metrics")
	for _, want := range []string{
		`herd_machines{state="verified"} 1`, `herd_machines{state="ko"} 1`, `herd_machines{state="waiting"} 0`,
		`herd_failures_total{reason="verify"} 1`, `herd_bypasses_total 1`, `herd_sent_bytes 10`,
		`herd_pxe_requests_total{outcome="ok",service="dhcp"} 2`, `herd_pxe_requests_total{outcome="error",service="tftp"} 1`,
		`herd_node_written_bytes{id="10.0.0.1:9998",name=""} 10`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, m := range []string{"POST", "PUT", "DELETE"} {
		req, _ := http.NewRequest(m, srv.URL+"/api/v1/view", strings.NewReader("{}"))
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("%s: %d, want 405", m, r.StatusCode)
		}
	}
	if code, _ := get(t, srv, "/../../etc/passwd"); code == 200 {
		t.Fatal("a path outside the assets answered 200")
	}
}

// The event stream sends the view at once and again after a change.
func TestEvents(t *testing.T) {
	h := NewHub("send")
	srv := httptest.NewServer(h.Handler())
	defer srv.Close()
	r, err := http.Get(srv.URL + "/api/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	if ct := r.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	sc := bufio.NewScanner(r.Body)
	next := func() View {
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var v View
				if err := json.Unmarshal([]byte(d), &v); err != nil {
					t.Fatal(err)
				}
				return v
			}
		}
		t.Fatalf("stream ended: %v", sc.Err())
		return View{}
	}
	if v := next(); len(v.Machines) != 0 {
		t.Fatalf("first view %+v", v)
	}
	h.Plan([]string{"10.0.0.9:9998"}, nil)
	if v := next(); len(v.Machines) != 1 || v.Machines[0].State != Waiting {
		t.Fatalf("second view %+v", v)
	}
}

// Past MaxStreams, an event stream is refused, not served.
func TestEventsBounded(t *testing.T) {
	h := NewHub("send")
	var stops []func()
	for range MaxStreams {
		_, stop := h.Subscribe()
		stops = append(stops, stop)
	}
	srv := httptest.NewServer(h.Handler())
	defer srv.Close()
	if code, _ := get(t, srv, "/api/v1/events"); code != http.StatusServiceUnavailable {
		t.Fatalf("stream %d: %d", MaxStreams+1, code)
	}
	for _, s := range stops {
		s()
	}
}

func TestCheckAddr(t *testing.T) {
	for _, a := range []string{":8081", "127.0.0.1:0", "[::1]:9000"} {
		if err := CheckAddr(a); err != nil {
			t.Errorf("%s: %v", a, err)
		}
	}
	for _, a := range []string{":99999", "8080", "host:port", ":-1", ""} {
		if err := CheckAddr(a); err == nil {
			t.Errorf("%s accepted", a)
		}
	}
}

func TestReasonClass(t *testing.T) {
	for r, want := range map[string]string{
		"dead at offset 4096":                          "dead",
		"not verified by the source: item 1 digest":    "verify",
		"unreachable: connect: connection refused":     "unreachable",
		"power: ipmitool: Unable to establish":         "power",
		"no disk fits the rule: sda (1 GiB) too small": "disk",
		"something else":                               "other",
	} {
		if got := reasonClass(r); got != want {
			t.Errorf("%q: %s, want %s", r, got, want)
		}
	}
}

// FuzzHandler: any GET path, any method, answers without a panic and
// with a status the routes give.
func FuzzHandler(f *testing.F) {
	f.Add("GET", "/api/v1/machines/52:54:00:00:00:01/log")
	f.Add("GET", "/assets/../index.html")
	f.Add("POST", "/metrics")
	f.Add("GET", "/api/v1/machines/%00/log")
	h := NewHub("pxe")
	h.Machines([]state.Machine{{MAC: "52:54:00:00:00:01", State: state.Failed, Reason: "x", Log: []string{"a"}}})
	hd := h.Handler()
	f.Fuzz(func(t *testing.T, method, path string) {
		if strings.Contains(path, "events") {
			return // a stream does not end by itself
		}
		req, err := http.NewRequest(method, "http://x"+path, nil)
		if err != nil {
			return
		}
		w := httptest.NewRecorder()
		hd.ServeHTTP(w, req)
		switch w.Code {
		case 200, 301, 307, 308, 400, 404, 405:
		default:
			t.Fatalf("%s %q: %d", method, path, w.Code)
		}
	})
}

// A chain's outcome keeps what was written; a stage 2 chain's done nodes
// wait for the system, they are not verified.
func TestOutcomeAndStage2(t *testing.T) {
	h := NewHub("deploy")
	a := "10.0.0.5:9998"
	h.StartChain("stage2", []string{a})
	h.Progress(ring.Snapshot{Total: 50, Sent: 50, Nodes: []ring.NodeStatus{node(0, a, ring.StateDone, 50, "")}, Route: []ring.Slot{{Index: 0}}})
	if v := h.View(); v.Machines[0].State != Registered {
		t.Fatalf("after stage 2: %s", v.Machines[0].State)
	}
	h.StartChain("image", []string{a})
	h.Progress(ring.Snapshot{Total: 100, Sent: 60, Nodes: []ring.NodeStatus{node(0, a, ring.StateReceiving, 60, "")}, Route: []ring.Slot{{Index: 0}}})
	h.Outcome([]ring.NodeStatus{{Addr: a, State: ring.StateFailed, Err: "unreachable: gone"}})
	v := h.View()
	if m := v.Machines[0]; m.State != KO || m.Bytes != 60 || m.Reason != "unreachable: gone" || v.Bypasses != 1 || v.Sent != 60 {
		t.Fatalf("after the outcome: %+v sent %d bypasses %d", m, v.Sent, v.Bypasses)
	}
}
