package agent

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/blockdev/disksel"
	"github.com/herd-cluster/herd/pxe/httpboot"
	"github.com/herd-cluster/herd/pxe/state"
)

// Keys of the fake server: the chain key its answers carry, the agent
// key the test agents boot with and the machine key they get back.
var (
	testChainKey   = []byte("the chain key of the agent tests")
	testAgentKey   = bytes.Repeat([]byte{0xab}, AgentKeySize)
	testMachineKey = bytes.Repeat([]byte{0xcd}, httpboot.KeySize)
)

// fakeServer records the agent API calls it gets and answers
// registrations with a sealed answer (it checks no signature: it is a
// stand-in for the agent's side; pxe/httpboot tests the server's).
type fakeServer struct {
	mu         sync.Mutex
	registers  []httpboot.RegisterRequest
	roles      []httpboot.Role // of every call, in order
	reports    []httpboot.ReportRequest
	failFirstN int
	checks     int
	// orders are the fix-up fields sealed into every answer.
	orders httpboot.Credentials
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	h, err := httpboot.ParseAuthHeader(r.Header.Get("Authorization"))
	if err != nil {
		w.WriteHeader(http.StatusUnauthorized)
		json.NewEncoder(w).Encode(httpboot.Reply{Error: err.Error()})
		return
	}
	f.roles = append(f.roles, h.Role)
	switch r.URL.Path {
	case httpboot.PathRegister:
		var req httpboot.RegisterRequest
		json.NewDecoder(r.Body).Decode(&req)
		f.registers = append(f.registers, req)
		if len(f.registers) <= f.failFirstN {
			w.WriteHeader(http.StatusServiceUnavailable)
			json.NewEncoder(w).Encode(httpboot.Reply{Error: "not ready"})
			return
		}
		key := testAgentKey
		if h.Role == httpboot.RoleMachine {
			key = testMachineKey
		}
		pub, err := httpboot.ParseAnswerKey(req.Pub)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(httpboot.Reply{Error: err.Error()})
			return
		}
		c := f.orders
		c.ChainKey, c.MachineKey = testChainKey, testMachineKey
		ans, err := httpboot.SealAnswer(httpboot.Credential{Role: h.Role, Key: key}, pub, req.MAC, h.Nonce, c)
		if err != nil {
			panic(err)
		}
		json.NewEncoder(w).Encode(httpboot.Reply{OK: true, Answer: ans})
		return
	case httpboot.PathReport:
		var req httpboot.ReportRequest
		json.NewDecoder(r.Body).Decode(&req)
		f.reports = append(f.reports, req)
	case httpboot.PathMachines + "/52:54:00:00:00:01":
		f.checks++
		if len(f.registers) == 0 {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"mac": "52:54:00:00:00:01", "state": "cloning"})
		return
	default:
		http.NotFound(w, r)
		return
	}
	json.NewEncoder(w).Encode(httpboot.Reply{OK: true})
}

// newTestServer serves fs on loopback until the test ends and returns
// its IP:PORT.
func newTestServer(t *testing.T, fs *fakeServer) string {
	srv := httptest.NewServer(fs)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

type harness struct {
	// disk is what FindDisk answers for the rule (default the rule
	// itself); noDisk makes it fail.
	disk    string
	noDisk  error
	rules   []string
	console bytes.Buffer
	reboots int
	recv    []string
	keyFile string
	keyMode os.FileMode
}

// agentFor returns an Agent against server whose receive prints line
// and exits with code.
func (h *harness) agentFor(t *testing.T, server string, line string, code int) *Agent {
	t.Helper()
	return &Agent{
		Config:  Config{Server: server, Session: "s1", Port: 9998, Method: "raw", Disk: "/dev/vda", Timeout: 300 * time.Millisecond, Retries: 3, AgentKey: testAgentKey},
		Console: &h.console,
		Drivers: func(context.Context) error { return nil },
		FindDisk: func(_ context.Context, rule string) (disksel.Disk, error) {
			h.rules = append(h.rules, rule)
			if h.noDisk != nil {
				return disksel.Disk{}, h.noDisk
			}
			return disksel.Disk{Path: cmp.Or(h.disk, rule), Size: 80 << 20}, nil
		},
		NetUp: func(ctx context.Context) (Lease, error) {
			return Lease{Interface: "eth0", MAC: "52:54:00:00:00:01", IP: "10.0.0.5"}, nil
		},
		KernelLog: func(n int) []string { return []string{fmt.Sprintf("the last %d kernel lines", n)} },
		RecvCommand: func(ctx context.Context, args []string) *exec.Cmd {
			h.recv = args
			if i := indexOf(args, "--key-file"); i >= 0 {
				b, _ := os.ReadFile(args[i+1])
				h.keyFile = string(b)
				if fi, err := os.Stat(args[i+1]); err == nil {
					h.keyMode = fi.Mode()
				}
			}
			return exec.CommandContext(ctx, "sh", "-c", `echo '{"event":"progress","bytes":1,"nodes":[]}'; echo "$0"; echo "recv says hi" >&2; exit $1`, line, strconv.Itoa(code))
		},
		Reboot:      func() error { h.reboots++; return nil },
		RetryDelay:  10 * time.Millisecond,
		RefusedWait: 10 * time.Millisecond,
		TempDir:     t.TempDir(),
	}
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func TestAgentClonesReportsAndReboots(t *testing.T) {
	fs := &fakeServer{failFirstN: 1}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	h := &harness{}
	a := h.agentFor(t, strings.TrimPrefix(srv.URL, "http://"), `{"event":"summary","ok":true,"bytes":4096,"nodes":[{"error":""}]}`, 0)
	require.NoError(t, a.Run(context.Background()))

	assert.Equal(t, 1, h.reboots)
	assert.Equal(t, []string{"recv", "--listen", ":9998", "--json", "--key-file", filepath.Join(a.TempDir, ChainKeyFile), "--allow", "/dev/vda", "--disk-dest", "/dev/vda"}, h.recv,
		"herd recv gets the chain key from the answer and may write this machine's disk only")
	assert.Equal(t, string(testChainKey), h.keyFile, "the key file holds the chain key of the sealed answer")
	assert.Equal(t, os.FileMode(0o600), h.keyMode.Perm())
	_, err := os.Stat(filepath.Join(a.TempDir, ChainKeyFile))
	assert.ErrorIs(t, err, os.ErrNotExist, "the key file is gone after the receive")
	require.Len(t, fs.registers, 2, "the first refused register is retried within the attempt")
	pub := fs.registers[1].Pub
	assert.Equal(t, httpboot.RegisterRequest{MAC: "52:54:00:00:00:01", IP: "10.0.0.5", Port: 9998, Session: "s1", Pub: pub}, fs.registers[1])
	assert.Equal(t, fs.registers[0].Pub, pub, "one answer key for the retries of one registration")
	assert.Equal(t, []httpboot.Role{httpboot.RoleAgent, httpboot.RoleAgent, httpboot.RoleMachine}, fs.roles, "registered with the agent key, reported with the machine key")
	require.Len(t, fs.reports, 1)
	agentLog := fs.reports[0].AgentLog
	fs.reports[0].AgentLog = nil
	assert.Equal(t, httpboot.ReportRequest{MAC: "52:54:00:00:00:01", OK: true, Bytes: 4096}, fs.reports[0])
	require.NotEmpty(t, agentLog, "a verified clone's report carries the agent's log")
	assert.Contains(t, agentLog[0], "herd: agent starting: server")
	assert.Equal(t, []string{"herd: disk /dev/vda: /dev/vda 80.0MiB", "recv says hi"}, agentLog[len(agentLog)-2:], "the lines printed up to the report, in order, herd recv's messages too")
	out := h.console.String()
	assert.NotContains(t, out, "cannot reach", "a refusal retried in time is not a failed attempt")
	assert.Contains(t, out, "recv says hi", "herd recv's stderr goes to the console")
	assert.Contains(t, out, "herd: clone verified (4096 bytes), rebooting")
}

func TestAgentReportsAFailedClone(t *testing.T) {
	fs := &fakeServer{}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	h := &harness{}
	a := h.agentFor(t, strings.TrimPrefix(srv.URL, "http://"), `{"event":"summary","ok":false,"bytes":100,"nodes":[{"error":"digest mismatch"}]}`, 1)
	err := a.Run(context.Background())
	assert.ErrorIs(t, err, ErrCloneFailed)
	assert.Equal(t, 1, h.reboots)
	require.Len(t, fs.reports, 1)
	assert.False(t, fs.reports[0].OK)
	assert.Contains(t, fs.reports[0].Error, "digest mismatch")
	assert.Contains(t, h.console.String(), "clone failed, rebooting")
	assert.NotContains(t, h.console.String(), "clone verified")
}

func TestAgentFixesTheCloneBeforeItReports(t *testing.T) {
	hooks := []httpboot.Hook{{Name: "a.sh", Script: []byte("true")}}
	fs := &fakeServer{orders: httpboot.Credentials{Name: "node07", Identity: true, Hooks: hooks, HookTimeout: 30}}
	h := &harness{}
	a := h.agentFor(t, newTestServer(t, fs), `{"event":"summary","ok":true,"bytes":4096,"nodes":[]}`, 0)
	var jobs []FixupJob
	var disks []string
	a.Fixup = func(_ context.Context, disk string, job FixupJob) (string, error) {
		jobs, disks = append(jobs, job), append(disks, disk)
		return "identity: hostname node07; hooks ran: a.sh", nil
	}
	require.NoError(t, a.Run(context.Background()))
	require.Len(t, jobs, 1)
	assert.Equal(t, []string{"/dev/vda"}, disks)
	assert.Equal(t, FixupJob{Orders: httpboot.Fixups{Identity: true, Hooks: hooks, HookTimeout: 30 * time.Second}, Name: "node07", MAC: "52:54:00:00:00:01", IP: "10.0.0.5"}, jobs[0],
		"the orders of the sealed answer, this machine's name and addresses")
	require.Len(t, fs.reports, 1)
	assert.True(t, fs.reports[0].OK)
	assert.Equal(t, "identity: hostname node07; hooks ran: a.sh", fs.reports[0].Fixups)
	assert.Contains(t, fs.reports[0].AgentLog, `herd: fix-ups of the clone on /dev/vda: identity (name "node07") and 1 hook(s)`)
	assert.Equal(t, "herd: fix-ups done: identity: hostname node07; hooks ran: a.sh", fs.reports[0].AgentLog[len(fs.reports[0].AgentLog)-1])

	// A failed fix-up fails the machine with the reason.
	fs = &fakeServer{orders: httpboot.Credentials{Hooks: hooks}}
	h = &harness{}
	a = h.agentFor(t, newTestServer(t, fs), `{"event":"summary","ok":true,"bytes":4096,"nodes":[]}`, 0)
	a.Fixup = func(context.Context, string, FixupJob) (string, error) {
		return "", errors.New("hook a.sh: exit status 2: no such user")
	}
	err := a.Run(context.Background())
	assert.ErrorIs(t, err, ErrFixup)
	require.Len(t, fs.reports, 1)
	assert.False(t, fs.reports[0].OK)
	assert.Equal(t, "agent: fix-ups failed: hook a.sh: exit status 2: no such user", fs.reports[0].Error)
	assert.Empty(t, fs.reports[0].Fixups)
	assert.Contains(t, h.console.String(), "clone failed, rebooting")

	// Nothing ordered: no fix-ups at all.
	fs = &fakeServer{orders: httpboot.Credentials{Name: "node07"}}
	h = &harness{}
	a = h.agentFor(t, newTestServer(t, fs), `{"event":"summary","ok":true,"bytes":4096,"nodes":[]}`, 0)
	a.Fixup = func(context.Context, string, FixupJob) (string, error) {
		t.Error("fix-ups without orders")
		return "", nil
	}
	require.NoError(t, a.Run(context.Background()))
	require.Len(t, fs.reports, 1)
	assert.True(t, fs.reports[0].OK)
}

// TestAgentDiskRule checks that the rule on the kernel line is turned
// into a device before herd recv runs, which may then write that device
// only.
func TestAgentDiskRule(t *testing.T) {
	fs := &fakeServer{}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	h := &harness{disk: "/dev/sdb"}
	a := h.agentFor(t, strings.TrimPrefix(srv.URL, "http://"), `{"event":"summary","ok":true,"bytes":1,"nodes":[]}`, 0)
	a.Config.Disk = "model=PERC*,largest"
	require.NoError(t, a.Run(context.Background()))
	assert.Equal(t, []string{"model=PERC*,largest"}, h.rules)
	assert.Equal(t, "/dev/sdb", h.recv[len(h.recv)-1], "herd recv --allow gets the disk the rule picked")
	assert.Contains(t, h.console.String(), "herd: disk model=PERC*,largest: /dev/sdb")
}

// TestAgentWithoutADiskReportsWhy checks that a machine whose rule picks
// no disk writes nothing, tells the server which disks it saw, and
// waits before it reboots.
func TestAgentWithoutADiskReportsWhy(t *testing.T) {
	fs := &fakeServer{}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	h := &harness{noDisk: fmt.Errorf("%w: disksel: no disk fits rule size>=10T; disks: /dev/sda 80.0MiB model=\"QEMU HARDDISK\"", ErrNoDisk)}
	a := h.agentFor(t, strings.TrimPrefix(srv.URL, "http://"), "", 0)
	a.RefusedWait = 50 * time.Millisecond
	start := time.Now()
	err := a.Run(context.Background())
	assert.ErrorIs(t, err, ErrNoDisk)
	assert.GreaterOrEqual(t, time.Since(start), 50*time.Millisecond, "it waits before rebooting")
	assert.Nil(t, h.recv, "herd recv never ran")
	assert.Equal(t, 1, h.reboots)
	require.Len(t, fs.reports, 1)
	assert.False(t, fs.reports[0].OK)
	assert.Contains(t, fs.reports[0].Error, `disks: /dev/sda 80.0MiB model="QEMU HARDDISK"`, "the server learns which disks the machine has")
	assert.Equal(t, []string{"the last 30 kernel lines"}, fs.reports[0].Log, "and the kernel log's tail")
	assert.Contains(t, h.console.String(), "nothing was written")
}

func TestAgentRecvWithoutSummaryFails(t *testing.T) {
	fs := &fakeServer{}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	h := &harness{}
	a := h.agentFor(t, strings.TrimPrefix(srv.URL, "http://"), `not json`, 3)
	assert.ErrorIs(t, a.Run(context.Background()), ErrCloneFailed)
	require.Len(t, fs.reports, 1)
	assert.False(t, fs.reports[0].OK)
}

func TestAgentUnreachableServerRetriesThenReboots(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close() // nothing listens there any more
	h := &harness{}
	a := h.agentFor(t, addr, "", 0)
	start := time.Now()
	err = a.Run(context.Background())
	assert.ErrorIs(t, err, ErrUnreachable)
	took := time.Since(start)
	assert.GreaterOrEqual(t, took, 900*time.Millisecond, "each of the 3 attempts lasts herd.timeout")
	assert.Less(t, took, 5*time.Second)
	assert.Equal(t, 1, h.reboots)
	assert.Nil(t, h.recv, "no receive without the server")
	out := h.console.String()
	for _, n := range []string{"1/3", "2/3", "3/3"} {
		assert.Contains(t, out, "cannot reach herd server "+addr+" (attempt "+n+")")
	}
	assert.NotContains(t, out, "attempt 4/3")
	assert.Contains(t, out, "giving up on herd server "+addr+" after 3 attempts, rebooting to try PXE again")
}

func TestAgentNoNetworkCountsAsAttempts(t *testing.T) {
	h := &harness{}
	a := h.agentFor(t, "10.255.255.1:80", "", 0)
	calls := 0
	a.NetUp = func(ctx context.Context) (Lease, error) { calls++; return Lease{}, context.DeadlineExceeded }
	assert.ErrorIs(t, a.Run(context.Background()), ErrUnreachable)
	assert.GreaterOrEqual(t, calls, 3, "DHCP is tried again within each attempt")
	assert.Equal(t, 1, h.reboots)
	assert.Contains(t, h.console.String(), "no network, cannot reach herd server 10.255.255.1:80 (attempt 3/3)")
}

func TestAgentRefusesUnknownMethod(t *testing.T) {
	h := &harness{}
	a := h.agentFor(t, "127.0.0.1:1", "", 0)
	a.Config.Method = "kamethod"
	err := a.Run(context.Background())
	assert.ErrorContains(t, err, `method "kamethod" is not supported`)
	assert.Equal(t, 1, h.reboots)
}

func TestAgentFileLevelMethod(t *testing.T) {
	fs := &fakeServer{}
	srv := newTestServer(t, fs)
	h := &harness{}
	a := h.agentFor(t, srv, `{"event":"summary","ok":true,"bytes":777,"nodes":[]}`, 0)
	a.Config.Method, a.Config.Disk = "files", "/dev/sdb"
	require.NoError(t, a.Run(context.Background()))
	assert.Equal(t, []string{"recv", "--listen", ":9998", "--json", "--key-file", filepath.Join(a.TempDir, ChainKeyFile), "--allow", "/dev/sdb", "--files", "--disk", "/dev/sdb"}, h.recv,
		"herd recv may write the disk only, partitions it and unpacks")
	require.Len(t, fs.reports, 1)
	assert.Equal(t, int64(777), fs.reports[0].Bytes)
}

// waitingAgent is an agent whose herd recv waits for a session that
// never comes (until killed), checking its server every 20 ms.
func waitingAgent(t *testing.T, h *harness, server string) *Agent {
	a := h.agentFor(t, server, "", 0)
	a.RecvCommand = func(ctx context.Context, args []string) *exec.Cmd {
		h.recv = args
		return exec.CommandContext(ctx, "sleep", "60")
	}
	a.WatchInterval = 20 * time.Millisecond
	a.SessionActive = func(int) bool { return false }
	return a
}

func TestAgentRebootsWhenServerDiesAfterRegistering(t *testing.T) {
	fs := &fakeServer{}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	h := &harness{}
	a := waitingAgent(t, h, strings.TrimPrefix(srv.URL, "http://"))
	go func() {
		// The server goes away once the agent registered and was seen
		// waiting.
		for {
			fs.mu.Lock()
			n := fs.checks
			fs.mu.Unlock()
			if n >= 3 {
				srv.CloseClientConnections()
				srv.Close()
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	start := time.Now()
	err := a.Run(context.Background())
	took := time.Since(start)
	assert.ErrorIs(t, err, ErrServerLost)
	assert.ErrorIs(t, err, ErrUnreachable, "a lost server is handled like an unreachable one")
	assert.Less(t, took, 10*time.Second, "herd recv was stopped, not waited for (it sleeps 60 s)")
	assert.GreaterOrEqual(t, took, 300*time.Millisecond, "the server is given herd.timeout to come back")
	assert.Equal(t, 1, h.reboots)
	require.NotNil(t, h.recv, "herd recv was waiting")
	assert.Len(t, fs.reports, 0)
	out := h.console.String()
	assert.Contains(t, out, "does not answer while waiting for session s1")
	assert.Contains(t, out, "rebooting to try PXE again")
	assert.NotContains(t, out, "clone verified")
}

func TestAgentRebootsWhenServerForgetsIt(t *testing.T) {
	fs := &fakeServer{}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	h := &harness{}
	a := waitingAgent(t, h, strings.TrimPrefix(srv.URL, "http://"))
	go func() {
		// A server restarted without its state: it answers, but not
		// for this machine.
		time.Sleep(50 * time.Millisecond)
		fs.mu.Lock()
		fs.registers = nil
		fs.mu.Unlock()
	}()
	err := a.Run(context.Background())
	assert.ErrorIs(t, err, ErrServerLost)
	assert.Contains(t, err.Error(), "404")
	assert.Equal(t, 1, h.reboots)
}

func TestAgentKeepsReceivingWhileASessionIsOpen(t *testing.T) {
	fs := &fakeServer{}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	h := &harness{}
	a := h.agentFor(t, strings.TrimPrefix(srv.URL, "http://"), "", 0)
	a.WatchInterval = 20 * time.Millisecond
	var active sync.Mutex
	isActive := false
	a.SessionActive = func(port int) bool {
		assert.Equal(t, 9998, port)
		active.Lock()
		defer active.Unlock()
		return isActive
	}
	a.RecvCommand = func(ctx context.Context, args []string) *exec.Cmd {
		// The session starts, then the server's API goes away while
		// the data still flows; the receive finishes.
		active.Lock()
		isActive = true
		active.Unlock()
		fs.mu.Lock()
		fs.registers = nil
		fs.mu.Unlock()
		return exec.CommandContext(ctx, "sh", "-c", `sleep 1; echo '{"event":"summary","ok":true,"bytes":10,"nodes":[]}'`)
	}
	require.NoError(t, a.Run(context.Background()))
	assert.Contains(t, h.console.String(), "clone verified (10 bytes)")
	require.Len(t, fs.reports, 1)
	assert.True(t, fs.reports[0].OK)
}

func TestEstablishedOnPort(t *testing.T) {
	b, err := os.ReadFile("testdata/proc-net-tcp")
	require.NoError(t, err)
	for port, want := range map[int]bool{9998: true, 8080: false, 22: true, 1: false} {
		got, err := EstablishedOnPort(bytes.NewReader(b), port)
		require.NoError(t, err)
		assert.Equal(t, want, got, "port %d", port)
	}
	_, err = EstablishedOnPort(strings.NewReader("  sl local\n  0: 0100007F 0A 01\n"), 1)
	assert.ErrorContains(t, err, "line 2")
}

func FuzzEstablishedOnPort(f *testing.F) {
	b, err := os.ReadFile("testdata/proc-net-tcp")
	require.NoError(f, err)
	f.Add(b, 9998)
	f.Add([]byte("  0: 0100007F:270E 00000000:0000 0A"), 9998)
	f.Add([]byte(""), 0)
	f.Fuzz(func(t *testing.T, b []byte, port int) {
		EstablishedOnPort(bytes.NewReader(b), port)
	})
}

func TestSessionActiveSeesARealConnection(t *testing.T) {
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		t.Skip("no /proc/net/tcp here")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	port := l.Addr().(*net.TCPAddr).Port
	assert.False(t, SessionActive(port), "a listener alone is no session")
	c, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	s, err := l.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	assert.True(t, SessionActive(port))
}

// realServer is herd's own API server (httpboot) with the session key
// testChainKey and a clock offset from this machine's; mac is approved
// and its agent key returned.
func realServer(t *testing.T, mac string, clockOffset time.Duration) (*httptest.Server, *state.Store, []byte) {
	t.Helper()
	st, err := state.Open("")
	require.NoError(t, err)
	m, err := st.Add(mac, "")
	require.NoError(t, err)
	s := &httpboot.Server{Dir: t.TempDir(), Store: st, Key: testChainKey, Clock: func() time.Time { return time.Now().Add(clockOffset) }}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts, st, httpboot.AgentKey(testChainKey, m.MAC, m.KeyID)
}

func TestAgentSignsItsRequests(t *testing.T) {
	for name, off := range map[string]time.Duration{"same clock": 0, "server clock two hours ahead": 2 * time.Hour} {
		t.Run(name, func(t *testing.T) {
			ts, st, key := realServer(t, "52:54:00:00:00:01", off)
			h := &harness{}
			a := h.agentFor(t, strings.TrimPrefix(ts.URL, "http://"), `{"event":"summary","ok":true,"bytes":4096,"nodes":[]}`, 0)
			a.Config.AgentKey = key
			require.NoError(t, a.Run(context.Background()))
			m, ok := st.Get("52:54:00:00:00:01")
			require.True(t, ok)
			assert.Equal(t, state.Done, m.State, "register and report were accepted")
			assert.Equal(t, int64(4096), m.Bytes)
			assert.Equal(t, string(testChainKey), h.keyFile, "the chain key came in the answer")
			if off != 0 {
				assert.Contains(t, h.console.String(), "following the server")
			}
		})
	}
}

// TestAgentWithAWrongKeyIsRefused: a server that does not take the
// agent's key refuses it for good: no retries, no herd recv, a wait,
// then the reboot.
func TestAgentWithAWrongKeyIsRefused(t *testing.T) {
	ts, st, _ := realServer(t, "52:54:00:00:00:01", 0)
	h := &harness{}
	a := h.agentFor(t, strings.TrimPrefix(ts.URL, "http://"), "", 0)
	a.RefusedWait = 200 * time.Millisecond
	start := time.Now()
	err := a.Run(context.Background())
	assert.ErrorIs(t, err, ErrRefused)
	assert.ErrorContains(t, err, "401 Unauthorized")
	assert.ErrorContains(t, err, "wrong signature")
	assert.GreaterOrEqual(t, time.Since(start), 200*time.Millisecond, "waits before rebooting")
	assert.Equal(t, 1, h.reboots)
	m, _ := st.Get("52:54:00:00:00:01")
	assert.Equal(t, state.New, m.State, "nothing registered")
	assert.Nil(t, h.recv)
	assert.NotContains(t, h.console.String(), "attempt 2/3", "a refusal is not retried")
	assert.Contains(t, h.console.String(), "does not let this machine in")
}

// TestAgentKeyUsedTwiceIsRefused: the second boot of a machine whose
// agent key already registered (it rebooted during its clone, or a
// spoofer came first) is refused with an alarm on the server, and the
// agent says so instead of retrying.
func TestAgentKeyUsedTwiceIsRefused(t *testing.T) {
	ts, st, key := realServer(t, "52:54:00:00:00:01", 0)
	for boot := 1; boot <= 2; boot++ {
		h := &harness{}
		a := waitingAgent(t, h, strings.TrimPrefix(ts.URL, "http://"))
		a.Config.AgentKey = key
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err := a.Run(ctx)
		cancel()
		if boot == 1 {
			require.NotNil(t, h.recv, "the first boot registered and waits for its session")
			continue
		}
		assert.ErrorIs(t, err, ErrRefused)
		assert.ErrorContains(t, err, "was used already")
		assert.Nil(t, h.recv)
	}
	m, _ := st.Get("52:54:00:00:00:01")
	assert.Equal(t, state.Cloning, m.State)
	assert.Contains(t, m.Alarm, "with the used agent key (key 1) refused")
}

func TestAgentWithoutAgentKeyDoesNotRegister(t *testing.T) {
	fs := &fakeServer{}
	srv := newTestServer(t, fs)
	h := &harness{}
	a := h.agentFor(t, srv, "", 0)
	a.Config.AgentKey = nil
	err := a.Run(context.Background())
	assert.ErrorIs(t, err, ErrRefused)
	assert.ErrorContains(t, err, "carries no agent key")
	assert.Empty(t, fs.registers)
	assert.Equal(t, 1, h.reboots)
}

func TestAgentRefusesAForgedAnswer(t *testing.T) {
	// A stand-in that answers with a chain key of its own, sealed to the
	// agent's answer key but without the agent key: the agent never runs
	// herd recv with it.
	forger := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, _ := httpboot.ParseAuthHeader(r.Header.Get("Authorization"))
		var req httpboot.RegisterRequest
		json.NewDecoder(r.Body).Decode(&req)
		pub, err := httpboot.ParseAnswerKey(req.Pub)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		ans, _ := httpboot.SealAnswer(httpboot.Credential{Role: httpboot.RoleAgent, Key: []byte("a guess")}, pub, req.MAC, h.Nonce,
			httpboot.Credentials{ChainKey: []byte("the attacker's chain key"), MachineKey: testMachineKey})
		json.NewEncoder(w).Encode(httpboot.Reply{OK: true, Answer: ans})
	})
	srv := httptest.NewServer(forger)
	defer srv.Close()
	h := &harness{}
	a := h.agentFor(t, strings.TrimPrefix(srv.URL, "http://"), "", 0)
	a.Config.Retries = 1
	// Room for the forger's answer on a busy host: the test is about what
	// the agent does with it, not how fast it comes.
	a.Config.Timeout = 10 * time.Second
	err := a.Run(context.Background())
	assert.ErrorIs(t, err, ErrUnreachable)
	assert.ErrorContains(t, err, "wrong tag")
	assert.Nil(t, h.recv, "no herd recv with a chain key from a stranger")
}

func TestConfined(t *testing.T) {
	assert.True(t, confined([]string{"--allow", "/dev/vda"}))
	assert.True(t, confined([]string{"--root", "/run/herd"}))
	assert.False(t, confined(nil))
	assert.False(t, confined([]string{"--files", "--disk", "/dev/vda"}))
	assert.False(t, confined([]string{"--allow"}))
	assert.False(t, confined([]string{"--allow", ""}))
}

func TestWritePrivateReplacesALink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	require.NoError(t, os.WriteFile(target, []byte("keep"), 0o644))
	link := filepath.Join(dir, ChainKeyFile)
	require.NoError(t, os.Symlink(target, link))
	require.NoError(t, writePrivate(link, []byte("secret")))
	b, _ := os.ReadFile(target)
	assert.Equal(t, "keep", string(b), "the link was not followed")
	fi, err := os.Lstat(link)
	require.NoError(t, err)
	assert.True(t, fi.Mode().IsRegular())
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
}
