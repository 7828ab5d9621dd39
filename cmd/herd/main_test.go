package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/ring/report"
)

// herdBin is the herd binary built once for the multi-process tests.
var herdBin string

// chainKey is a key file (herd key new) the tests' senders and receivers
// share unless a test says otherwise.
var chainKey string

// keyed appends --key-file chainKey to args (of herd send).
func keyed(args ...string) []string { return append(args, "--key-file", chainKey) }

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "herd-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	herdBin = filepath.Join(dir, "herd")
	out, err := exec.Command("go", "build", "-o", herdBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build herd: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	chainKey = filepath.Join(dir, "key")
	if _, err := writeNewKey(chainKey, false); err != nil {
		fmt.Fprintf(os.Stderr, "test key: %v\n", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runHerd runs herd in-process and returns its exit code and output.
func runHerd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(""), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// freePorts reserves n distinct loopback ports.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// writeRandom writes size pseudo-random bytes (seeded) to path.
func writeRandom(t testing.TB, path string, size int64, seed uint64) {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		for i := 0; i+8 <= len(buf); i += 8 {
			v := r.Uint64()
			for j := 0; j < 8; j++ {
				buf[i+j] = byte(v >> (8 * j))
			}
		}
		n := int64(len(buf))
		if left < n {
			n = left
		}
		_, err := f.Write(buf[:n])
		require.NoError(t, err)
		left -= n
	}
}

func sha256File(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, f)
	require.NoError(t, err)
	return hex.EncodeToString(h.Sum(nil))
}

// receiver is a herd recv process on loopback.
type receiver struct {
	addr   string
	root   string
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr bytes.Buffer
	exited chan struct{} // closed when the process has exited
	err    error         // its Wait result, once exited is closed
}

// startReceivers starts n herd recv processes, each with its own --root
// and chainKey (unless extra has --key-file or --insecure).
// They are killed at the end of the test if still running.
func startReceivers(t testing.TB, n int, extra ...string) []*receiver {
	t.Helper()
	return startReceiversIn(t, n, "", extra...)
}

// startReceiverAt starts one herd recv on addr with --root root (made;
// none if "") and chainKey (unless extra has --key-file or --insecure);
// it is killed at the end of the test if still running.
func startReceiverAt(t testing.TB, addr, root string, extra ...string) *receiver {
	t.Helper()
	r := &receiver{addr: addr, root: root, exited: make(chan struct{})}
	args := []string{"recv", "--listen", r.addr, "--json"}
	if root != "" {
		require.NoError(t, os.MkdirAll(r.root, 0o755))
		args = append(args, "--root", r.root)
	}
	args = append(args, extra...)
	if !slices.Contains(extra, "--key-file") && !slices.Contains(extra, "--insecure") {
		args = append(args, "--key-file", chainKey)
	}
	r.cmd = exec.Command(herdBin, args...)
	r.cmd.Stdout, r.cmd.Stderr = &r.stdout, &r.stderr
	require.NoError(t, r.cmd.Start())
	go func() { r.err = r.cmd.Wait(); close(r.exited) }()
	t.Cleanup(func() {
		r.cmd.Process.Kill()
		<-r.exited
		if t.Failed() {
			t.Logf("recv %s stderr:\n%s", r.addr, r.stderr.String())
		}
	})
	return r
}

// startReceiversIn is startReceivers with every --root under dir ("": a
// temporary folder of the test).
func startReceiversIn(t testing.TB, n int, dir string, extra ...string) []*receiver {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	var rs []*receiver
	for i, port := range freePorts(t, n) {
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		rs = append(rs, startReceiverAt(t, addr, filepath.Join(dir, fmt.Sprintf("node%d-%d", i+1, port)), extra...))
	}
	for _, r := range rs {
		waitListening(t, r.addr)
	}
	return rs
}

func waitListening(t testing.TB, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		// A bare connect would be a stray connection to the receiver;
		// check the listening socket instead.
		if out, _ := exec.Command("ss", "-Htln", "sport = :"+addr[strings.LastIndex(addr, ":")+1:]).Output(); len(bytes.TrimSpace(out)) > 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("receiver %s is not listening", addr)
}

// exitOf waits for a receiver and returns its exit code.
func exitOf(t testing.TB, r *receiver) int {
	t.Helper()
	select {
	case <-r.exited:
		err := r.err
		if err == nil {
			return 0
		}
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		t.Fatalf("recv %s: %v", r.addr, err)
	case <-time.After(60 * time.Second):
		t.Fatalf("recv %s did not exit", r.addr)
	}
	return -1
}

// summary is the last JSON line of herd send --json, with its verdict.
type summary struct {
	*report.Event
	OK bool
}

func lastSummary(t testing.TB, out string) summary {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.NotEmpty(t, lines)
	ev, err := report.Parse([]byte(lines[len(lines)-1]))
	require.NoError(t, err, "last line: %s", lines[len(lines)-1])
	require.True(t, ev.IsSummary(), "last line: %s", lines[len(lines)-1])
	return summary{Event: ev, OK: *ev.OK}
}

func addrs(rs []*receiver) string {
	var a []string
	for _, r := range rs {
		a = append(a, r.addr)
	}
	return strings.Join(a, ",")
}

func TestSendConfigErrorsExit2BeforeConnecting(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "dolly.cfg")
	require.NoError(t, os.WriteFile(cfg, []byte("infile /etc/hostname\noutfile /x\nserver s\nfirstclient a\nlastclient a\nclients 2\n127.0.0.1:1\nendconfig\n"), 0o644))
	code, _, stderr := runHerd(t, "send", "-f", cfg)
	assert.Equal(t, ExitUsage, code)
	assert.Contains(t, stderr, cfg+":8: 'clients 2' on line 6 but only 1 client lines")

	code, _, stderr = runHerd(t, keyed("send", "--to", "127.0.0.1:1", "--in", filepath.Join(dir, "missing"), "--out", "/x")...)
	assert.Equal(t, ExitUsage, code)
	assert.Contains(t, stderr, "missing")

	code, _, stderr = runHerd(t, "send", "--to", "127.0.0.1:1")
	assert.Equal(t, ExitUsage, code)
	assert.Contains(t, stderr, "--in is required")

	short := filepath.Join(dir, "key")
	require.NoError(t, os.WriteFile(short, []byte("abc"), 0o600))
	code, _, stderr = runHerd(t, "send", "--to", "h", "--in", cfg, "--out", "/x", "--key-file", short)
	assert.Equal(t, ExitUsage, code)
	assert.Contains(t, stderr, "at least 16")

	code, _, _ = runHerd(t, "send", "--bogus")
	assert.Equal(t, ExitUsage, code)
}

func TestSendUnreachableNodeIsNamed(t *testing.T) {
	src := filepath.Join(t.TempDir(), "img")
	writeRandom(t, src, 1<<20, 1)
	port := freePorts(t, 1)[0]
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	code, _, stderr := runHerd(t, keyed("send", "--to", addr, "--in", src, "--out", "/img", "--connect-timeout", "1s")...)
	assert.Equal(t, ExitFailed, code)
	assert.Contains(t, stderr, addr)
}

// TestClone1GiBTo8Processes is the acceptance test: one herd send
// clones a 1 GiB file to 8 herd recv processes over TCP on loopback; all 8
// outputs are byte-identical to the source.
func TestClone1GiBTo8Processes(t *testing.T) {
	size := int64(1 << 30)
	if testing.Short() {
		size = 64 << 20
	}
	src := filepath.Join(t.TempDir(), "golden.img")
	writeRandom(t, src, size, 42)
	want := sha256File(t, src)
	rs := startReceivers(t, 8)
	cmd := exec.Command(herdBin, keyed("send", "--to", addrs(rs), "--in", src, "--out", "/images/golden.img", "--json")...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("sent %d MiB to 8 receivers in %s", size>>20, time.Since(start))
	require.NoError(t, err, "herd send: %s", stderr.String())
	s := lastSummary(t, stdout.String())
	require.True(t, s.OK)
	require.Len(t, s.Nodes, 8)
	for i, r := range rs {
		assert.Equal(t, 0, exitOf(t, r), "recv %d: %s", i+1, r.stderr.String())
		assert.Equal(t, "done", s.Nodes[i].State)
		require.Len(t, s.Nodes[i].Items, 1)
		assert.True(t, s.Nodes[i].Items[0].Verified)
		assert.Equal(t, s.Items[0].Digest, s.Nodes[i].Items[0].Digest)
		assert.Equal(t, want, sha256File(t, filepath.Join(r.root, "images/golden.img")), "node %d", i+1)
	}
}

func TestDollyPlusConfigSeveralItems(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.img"), filepath.Join(dir, "b.bin")
	writeRandom(t, a, 5<<20+123, 7)
	writeRandom(t, b, 1<<20, 8)
	rs := startReceivers(t, 3)
	var hosts []string
	for _, r := range rs {
		hosts = append(hosts, r.addr)
	}
	cfg := fmt.Sprintf(`# two items, three clients
iofiles 2
%s > /disk/a.img
%s  > /data/b.bin
server golden
firstclient %s
lastclient %s
clients 3
%s
endconfig
`, a, b, hosts[0], hosts[2], strings.Join(hosts, "\n"))
	cfgPath := filepath.Join(dir, "dollyplus.cfg")
	require.NoError(t, os.WriteFile(cfgPath, []byte(cfg), 0o644))
	code, stdout, stderr := runHerd(t, keyed("send", "-f", cfgPath, "--json")...)
	require.Equal(t, ExitOK, code, stderr)
	s := lastSummary(t, stdout)
	require.True(t, s.OK)
	for _, r := range rs {
		assert.Equal(t, 0, exitOf(t, r))
		assert.Equal(t, sha256File(t, a), sha256File(t, filepath.Join(r.root, "disk/a.img")))
		assert.Equal(t, sha256File(t, b), sha256File(t, filepath.Join(r.root, "data/b.bin")))
	}
}

func TestKeyMismatchNodeWritesNothing(t *testing.T) {
	dir := t.TempDir()
	key, wrong := filepath.Join(dir, "key"), filepath.Join(dir, "wrong")
	require.NoError(t, os.WriteFile(key, []byte("0123456789abcdef0123456789abcdef"), 0o600))
	require.NoError(t, os.WriteFile(wrong, []byte("fedcba9876543210fedcba9876543210"), 0o600))
	src := filepath.Join(dir, "img")
	writeRandom(t, src, 2<<20, 3)
	good := startReceivers(t, 1, "--key-file", key)
	bad := startReceivers(t, 1, "--key-file", wrong)
	code, stdout, _ := runHerd(t, "send", "--to", good[0].addr+","+bad[0].addr, "--in", src, "--out", "/img", "--key-file", key, "--json", "--connect-timeout", "3s")
	assert.Equal(t, ExitPartial, code)
	s := lastSummary(t, stdout)
	assert.False(t, s.OK)
	assert.Equal(t, "done", s.Nodes[0].State)
	assert.Equal(t, "failed", s.Nodes[1].State)
	assert.NotEmpty(t, s.Nodes[1].Error)
	assert.Equal(t, sha256File(t, src), sha256File(t, filepath.Join(good[0].root, "img")))
	_, err := os.Stat(filepath.Join(bad[0].root, "img"))
	assert.True(t, os.IsNotExist(err), "the node with the wrong key must write nothing")
}

func TestRecvVerifyReadsBack(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "disk.img")
	writeRandom(t, src, 9<<20+17, 11)
	rs := startReceivers(t, 3, "--verify")
	code, stdout, stderr := runHerd(t, keyed("send", "--to", addrs(rs), "--in", src, "--out", "/disk.img", "--json")...)
	require.Equal(t, ExitOK, code, stderr)
	require.True(t, lastSummary(t, stdout).OK)
	for _, r := range rs {
		assert.Equal(t, 0, exitOf(t, r), r.stderr.String())
		assert.Equal(t, sha256File(t, src), sha256File(t, filepath.Join(r.root, "disk.img")))
	}
}

func TestSendCompressZstdOnTheWire(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "log.img")
	// Compressible data: a text log repeated with a changing counter.
	var b strings.Builder
	for i := 0; b.Len() < 12<<20; i++ {
		fmt.Fprintf(&b, "%08d node42 kernel: eth0 link up 1000 Mbit/s full duplex\n", i)
	}
	require.NoError(t, os.WriteFile(src, []byte(b.String()), 0o644))
	rs := startReceivers(t, 2)
	code, stdout, stderr := runHerd(t, keyed("send", "--to", addrs(rs), "--in", src, "--out", "/log.img", "--compress", "zstd", "--json")...)
	require.Equal(t, ExitOK, code, stderr)
	s := lastSummary(t, stdout)
	require.True(t, s.OK)
	assert.True(t, strings.HasPrefix(s.Compress, "zstd"), "compress %q", s.Compress)
	assert.Equal(t, int64(b.Len()), s.Bytes)
	assert.Less(t, s.WireBytes, s.Bytes/4, "zstd on a text log: wire %d of %d bytes", s.WireBytes, s.Bytes)
	for _, r := range rs {
		assert.Equal(t, 0, exitOf(t, r))
		assert.Equal(t, sha256File(t, src), sha256File(t, filepath.Join(r.root, "log.img")))
	}

	// Without --compress the summary says none and the wire carries every byte.
	rs = startReceivers(t, 1)
	code, stdout, stderr = runHerd(t, keyed("send", "--to", addrs(rs), "--in", src, "--out", "/log.img", "--json")...)
	require.Equal(t, ExitOK, code, stderr)
	s = lastSummary(t, stdout)
	assert.Equal(t, "none", s.Compress)
	assert.Equal(t, s.Bytes, s.WireBytes)
}
