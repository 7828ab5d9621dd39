package harness_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/herd-cluster/herd/harness"
	"github.com/herd-cluster/herd/harness/harnesstest"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		helperMain()
	}
	os.Exit(m.Run())
}

// needTools skips the test when a command it runs is not installed.
func needTools(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("%s not installed (make deps installs it)", n)
		}
	}
}

// helper runs the test binary as a helper role inside node n.
func helper(t *testing.T, n *harness.Node, role string, args ...string) *harness.Proc {
	t.Helper()
	a := append([]string{helperEnv + "=" + role, os.Args[0]}, args...)
	p, err := n.Start(t.Context(), "env", a...)
	require.NoError(t, err)
	return p
}

func waitOK(t *testing.T, p *harness.Proc) string {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(30 * time.Second):
		t.Fatalf("helper did not finish; stderr: %s", p.Stderr())
	}
	require.NoError(t, p.Wait(), "stderr: %s", p.Stderr())
	return strings.TrimSpace(string(p.Stdout()))
}

func TestNodesHaveOwnDiskAtSamePath(t *testing.T) {
	needTools(t, "blockdev", "dd")
	c := harnesstest.New(t, harness.Config{Nodes: 3, DiskSize: 8 << 20})
	ctx := t.Context()
	for _, n := range c.Nodes() {
		out, err := n.Run(ctx, "sh", "-c", fmt.Sprintf(
			"blockdev --getsize64 %s && printf 'disk of %s' | dd of=%s conv=notrunc,fsync status=none",
			harness.NodeDisk, n.Name(), harness.NodeDisk))
		require.NoError(t, err)
		assert.Equal(t, "8388608", strings.TrimSpace(string(out)), n.Name())
	}
	seen := map[string]bool{}
	for _, n := range c.Nodes() {
		require.NotEmpty(t, n.Disk())
		assert.False(t, seen[n.Disk()], "disk %s shared", n.Disk())
		seen[n.Disk()] = true
		b := make([]byte, 32)
		f, err := os.Open(n.Disk())
		require.NoError(t, err)
		_, err = f.ReadAt(b, 0)
		f.Close()
		require.NoError(t, err)
		assert.Equal(t, "disk of "+n.Name(), string(bytes.TrimRight(b, "\x00")))
	}
	// Relative paths work the same inside a node.
	wd, err := os.Getwd()
	require.NoError(t, err)
	out, err := c.Nodes()[1].Run(ctx, "pwd")
	require.NoError(t, err)
	assert.Equal(t, wd+"\n", string(out))
	// Golden shares the host's filesystem: it has no NodeDisk.
	_, err = c.Golden().Run(ctx, "test", "-b", harness.NodeDisk)
	assert.Error(t, err)
}

func TestPerNodeDiskSizes(t *testing.T) {
	needTools(t, "blockdev")
	// node1 gets its own size, node2 has 0 (falls back), node3 is past
	// the slice (falls back).
	c := harnesstest.New(t, harness.Config{Nodes: 3, DiskSize: 8 << 20, DiskSizes: []int64{12 << 20, 0}})
	want := []int64{12 << 20, 8 << 20, 8 << 20}
	for i, n := range c.Nodes() {
		assert.Equal(t, want[i], n.DiskSize(), n.Name())
		out, err := n.Run(t.Context(), "blockdev", "--getsize64", harness.NodeDisk)
		require.NoError(t, err)
		assert.Equal(t, strconv.FormatInt(want[i], 10), strings.TrimSpace(string(out)), n.Name())
	}
	assert.Equal(t, int64(8<<20), c.DiskSize())
	assert.Zero(t, c.Golden().DiskSize())
}

func TestPerNodeDiskSizesSurviveOpen(t *testing.T) {
	if err := harness.Available(); err != nil {
		t.Skipf("harness unavailable: %v", err)
	}
	name := fmt.Sprintf("s%d", os.Getpid())
	c, err := harness.New(t.Context(), harness.Config{Name: name, Nodes: 2, DiskSize: 4 << 20, DiskSizes: []int64{0, 6 << 20}, Persistent: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = harness.Destroy(name) })
	o, err := harness.Open(name)
	require.NoError(t, err)
	assert.Equal(t, int64(4<<20), o.Nodes()[0].DiskSize())
	assert.Equal(t, int64(6<<20), o.Nodes()[1].DiskSize())
	fi, err := os.Stat(filepath.Join(c.WorkDir(), "node2.img"))
	require.NoError(t, err)
	assert.Equal(t, int64(6<<20), fi.Size())
	require.NoError(t, harness.Destroy(name))
}

func TestAddressesAndReachability(t *testing.T) {
	needTools(t, "ip")
	c := harnesstest.New(t, harness.Config{Nodes: 2})
	ctx := t.Context()
	assert.Equal(t, "10.99.0.1", c.Golden().Addr().String())
	assert.Equal(t, "10.99.0.11", c.Nodes()[0].Addr().String())
	assert.Equal(t, "10.99.0.12", c.Nodes()[1].Addr().String())
	out, err := c.Nodes()[0].Run(ctx, "ip", "-4", "-o", "addr", "show", "dev", "eth0")
	require.NoError(t, err)
	assert.Contains(t, string(out), "inet 10.99.0.11/24 brd 10.99.0.255")
	out, err = c.Golden().Run(ctx, "ip", "-4", "-o", "addr", "show", "dev", "br0")
	require.NoError(t, err)
	assert.Contains(t, string(out), "inet 10.99.0.1/24 brd 10.99.0.255")

	// node2 -> node1 through the bridge, and golden -> node2.
	for _, tc := range []struct{ from, to *harness.Node }{
		{c.Nodes()[1], c.Nodes()[0]}, {c.Golden(), c.Nodes()[1]},
	} {
		addr := net.JoinHostPort(tc.to.Addr().String(), "7001")
		sink := helper(t, tc.to, "sink", addr)
		src := helper(t, tc.from, "source", addr, "100000")
		waitOK(t, src)
		assert.Equal(t, "100000", waitOK(t, sink))
	}
	// The host namespace cannot see the cluster's addresses.
	out, err = exec.Command("ip", "-4", "-o", "addr").Output()
	require.NoError(t, err)
	assert.NotContains(t, string(out), " 10.99.0.11/")
}

// transfer sends size bytes from node from to node to and returns the
// achieved rate in bits per second.
func transfer(t *testing.T, from, to *harness.Node, port string, size int) float64 {
	t.Helper()
	addr := net.JoinHostPort(to.Addr().String(), port)
	sink := helper(t, to, "sink", addr)
	src := helper(t, from, "source", addr, strconv.Itoa(size))
	secs, err := strconv.ParseFloat(waitOK(t, src), 64)
	require.NoError(t, err)
	assert.Equal(t, strconv.Itoa(size), waitOK(t, sink))
	return float64(size) * 8 / secs
}

func TestRateLimit(t *testing.T) {
	const rate = 80e6 // 10 MB/s
	c := harnesstest.New(t, harness.Config{Nodes: 2, Rate: rate})
	n1, n2 := c.Nodes()[0], c.Nodes()[1]
	got := transfer(t, n1, n2, "7002", 6<<20)
	t.Logf("shaped: %.1f Mbit/s (limit %.0f)", got/1e6, rate/1e6)
	assert.Greater(t, got, 0.6*rate)
	assert.Less(t, got, 1.1*rate)

	require.NoError(t, n1.SetRate(0))
	require.NoError(t, n2.SetRate(0))
	free := transfer(t, n1, n2, "7003", 24<<20)
	t.Logf("unshaped: %.1f Mbit/s", free/1e6)
	assert.Greater(t, free, 3*rate)

	require.NoError(t, n1.SetRate(40e6))
	got = transfer(t, n1, n2, "7004", 2<<20)
	t.Logf("reshaped: %.1f Mbit/s (limit 40)", got/1e6)
	assert.Less(t, got, 1.1*40e6)
}

func udpLoss(t *testing.T, from, to *harness.Node, port string, n int) int {
	t.Helper()
	addr := net.JoinHostPort(to.Addr().String(), port)
	recv := helper(t, to, "udprecv", addr)
	require.Eventually(t, func() bool { return bytes.Contains(recv.Stderr(), []byte("ready")) }, 5*time.Second, 10*time.Millisecond)
	waitOK(t, helper(t, from, "udpsend", addr, strconv.Itoa(n)))
	got, err := strconv.Atoi(waitOK(t, recv))
	require.NoError(t, err)
	return got
}

func TestLoss(t *testing.T) {
	c := harnesstest.New(t, harness.Config{Nodes: 1})
	n1 := c.Nodes()[0]
	require.NoError(t, n1.SetLoss(4))
	got := udpLoss(t, c.Golden(), n1, "7010", 2000)
	t.Logf("loss 1 in 4: %d of 2000 arrived", got)
	// Expected 1500; the binomial spread is about ±20.
	assert.InDelta(t, 1500, got, 150)

	require.NoError(t, n1.SetLoss(0))
	got = udpLoss(t, c.Golden(), n1, "7011", 2000)
	assert.GreaterOrEqual(t, got, 1990)

	assert.ErrorIs(t, n1.SetLoss(1), harness.ErrBadConfig)
	assert.ErrorIs(t, c.Golden().SetLoss(2), harness.ErrBadConfig)
}

func dialOK(n *harness.Node, addr string) bool {
	p, err := n.Start(context.Background(), "timeout", "1", "bash", "-c", "exec 3<>/dev/tcp/"+strings.Replace(addr, ":", "/", 1))
	if err != nil {
		return false
	}
	return p.Wait() == nil
}

func TestCutAndRestore(t *testing.T) {
	needTools(t, "ping", "bash", "timeout")
	c := harnesstest.New(t, harness.Config{Nodes: 2})
	n1, n2 := c.Nodes()[0], c.Nodes()[1]
	addr := net.JoinHostPort(n1.Addr().String(), "7020")
	p, err := n1.Start(t.Context(), "env", helperEnv+"=sink", os.Args[0], addr)
	require.NoError(t, err)
	_ = p
	require.Eventually(t, func() bool { return dialOK(n2, addr) }, 5*time.Second, 50*time.Millisecond)
	require.NoError(t, n1.Cut())
	// The sink accepted the first connection and stopped listening, so a
	// working link would refuse at once; a cut link times out instead.
	start := time.Now()
	assert.False(t, dialOK(n2, addr))
	assert.Greater(t, time.Since(start), 900*time.Millisecond, "a cut link must not answer at all")
	require.NoError(t, n1.Restore())
	out, err := n2.Run(t.Context(), "ping", "-c1", "-W2", n1.Addr().String())
	require.NoError(t, err, "after restore: %s", out)
}

func procState(pid int) byte {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0
	}
	return b[i+2]
}

func TestFreezeThawKill(t *testing.T) {
	c := harnesstest.New(t, harness.Config{Nodes: 2})
	n1 := c.Nodes()[0]
	p, err := n1.Start(t.Context(), "sleep", "1000")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(n1.Pids()) == 1 }, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, []int{p.Pid()}, n1.Pids())
	assert.Empty(t, c.Nodes()[1].Pids())

	require.NoError(t, n1.Freeze())
	require.Eventually(t, func() bool { return procState(p.Pid()) == 'T' }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, n1.Thaw())
	require.Eventually(t, func() bool { return procState(p.Pid()) == 'S' }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, n1.Kill())
	err = p.Wait()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, syscall.SIGKILL, ee.Sys().(syscall.WaitStatus).Signal())
	assert.Equal(t, -1, p.ExitCode())

	// Output is captured per process and in the node's log.
	q, err := n1.Start(t.Context(), "sh", "-c", "echo out-$0; echo err-$0 >&2; exit 3", n1.Name())
	require.NoError(t, err)
	assert.Error(t, q.Wait())
	assert.Equal(t, 3, q.ExitCode())
	assert.Equal(t, "out-node1\n", string(q.Stdout()))
	assert.Equal(t, "err-node1\n", string(q.Stderr()))
	log, err := os.ReadFile(n1.LogPath())
	require.NoError(t, err)
	assert.Contains(t, string(log), "out-node1")
}

func TestSlowDisk(t *testing.T) {
	needTools(t, "dd")
	c := harnesstest.New(t, harness.Config{Nodes: 1, DiskSize: 16 << 20})
	n1 := c.Nodes()[0]
	write := func() time.Duration {
		start := time.Now()
		_, err := n1.Run(t.Context(), "dd", "if=/dev/zero", "of="+harness.NodeDisk, "bs=1M", "count=3", "oflag=direct", "status=none")
		require.NoError(t, err)
		return time.Since(start)
	}
	err := n1.SlowDisk(0, 2<<20)
	if errors.Is(err, harness.ErrUnsupported) {
		t.Skipf("no disk throttling here: %v", err)
	}
	require.NoError(t, err)
	slow := write()
	t.Logf("3 MiB at 2 MiB/s: %v", slow)
	assert.Greater(t, slow, 1200*time.Millisecond)
	require.NoError(t, n1.SlowDisk(0, 0))
	fast := write()
	assert.Less(t, fast, slow/2)
}

func TestLimitDirtyMakesTheWriterSlow(t *testing.T) {
	needTools(t, "dd")
	c := harnesstest.New(t, harness.Config{Nodes: 1, DiskSize: 16 << 20})
	n1 := c.Nodes()[0]
	// Buffered writes (no O_DIRECT, no sync): the page cache absorbs
	// them unless the dirty limit holds the writer to the disk's pace.
	// The last close of a block device syncs it: a holder keeps dd's
	// close from being the last.
	holder, err := n1.Start(t.Context(), "sh", "-c", "exec 3<"+harness.NodeDisk+"; exec sleep 60")
	require.NoError(t, err)
	t.Cleanup(func() { _ = holder.Kill(); _ = holder.Wait() })
	time.Sleep(100 * time.Millisecond)
	write := func(seek string) time.Duration {
		start := time.Now()
		_, err := n1.Run(t.Context(), "dd", "if=/dev/zero", "of="+harness.NodeDisk, "bs=1M", "count=8", "seek="+seek, "status=none")
		require.NoError(t, err)
		return time.Since(start)
	}
	err = n1.SlowDisk(0, 4<<20)
	if errors.Is(err, harness.ErrUnsupported) {
		t.Skipf("no disk throttling here: %v", err)
	}
	require.NoError(t, err)
	fast := write("0")
	err = n1.LimitDirty(1 << 20)
	if errors.Is(err, harness.ErrUnsupported) {
		t.Skipf("no per-device dirty limit here: %v", err)
	}
	require.NoError(t, err)
	bdi := fmt.Sprintf("/sys/class/bdi/%s/strict_limit", devID(t, n1.Disk()))
	b, err := os.ReadFile(bdi)
	require.NoError(t, err)
	assert.Equal(t, "1", strings.TrimSpace(string(b)))
	slow := write("8")
	t.Logf("8 MiB buffered at 4 MiB/s: %v without the dirty limit, %v with it", fast, slow)
	// 8 MiB at 4 MiB/s, less the 1 MiB that may stay dirty.
	assert.Greater(t, slow, 1200*time.Millisecond)
	assert.Less(t, fast, slow/2)
	assert.ErrorIs(t, n1.LimitDirty(-1), harness.ErrBadConfig)
	assert.ErrorIs(t, c.Golden().LimitDirty(1<<20), harness.ErrBadConfig)
	// Close puts the device back as it was (loop devices are reused).
	require.NoError(t, n1.SlowDisk(0, 0))
	_ = holder.Kill()
	require.NoError(t, c.Close())
	b, err = os.ReadFile(bdi)
	require.NoError(t, err)
	assert.Equal(t, "0", strings.TrimSpace(string(b)))
}

// devID returns "MAJOR:MINOR" of a block device node.
func devID(t *testing.T, path string) string {
	t.Helper()
	var st syscall.Stat_t
	require.NoError(t, syscall.Stat(path, &st))
	return fmt.Sprintf("%d:%d", (st.Rdev>>8)&0xfff, (st.Rdev&0xff)|((st.Rdev>>12)&0xfff00))
}

// leftovers lists what of cluster name still exists on the machine.
func leftovers(name, workDir string) []string {
	var out []string
	for _, g := range []string{"/run/netns/" + harness.Prefix + name + "-*", harness.StateDir + "/ns/" + harness.Prefix + name + "-*", harness.StateDir + "/" + name + ".json"} {
		m, _ := filepath.Glob(g)
		out = append(out, m...)
	}
	if _, err := os.Stat(workDir); err == nil {
		out = append(out, workDir)
	}
	bf, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, f := range bf {
		b, _ := os.ReadFile(f)
		if strings.HasPrefix(string(b), workDir+"/") {
			out = append(out, f)
		}
	}
	return out
}

// procStart returns a process's start time in clock ticks since boot
// (field 22 of /proc/PID/stat), or "" when it is gone.
func procStart(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return ""
	}
	return f[19]
}

func procCmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
}

func pidAlive(pid int) bool {
	s := procState(pid)
	return s != 0 && s != 'Z'
}

func TestCloseRemovesEverything(t *testing.T) {
	needTools(t, "ip")
	if err := harness.Available(); err != nil {
		t.Skipf("harness unavailable: %v", err)
	}
	c, err := harness.New(t.Context(), harness.Config{Nodes: 2, DiskSize: 8 << 20, Rate: 1e9})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	name, work := c.Name(), c.WorkDir()
	require.Len(t, leftovers(name, work), 3+2+1+1+2) // 3 netns, 2 mount pins, state, work dir, 2 loops
	p, err := c.Nodes()[1].Start(context.Background(), "sleep", "1000")
	require.NoError(t, err)
	// A process started behind the harness' back is found too.
	ext := exec.Command("ip", "netns", "exec", harness.Prefix+name+"-node1", "sleep", "1000")
	require.NoError(t, ext.Start())
	t.Cleanup(func() { _ = ext.Process.Kill(); _ = ext.Wait() })
	require.Eventually(t, func() bool { return len(c.Nodes()[0].Pids()) == 1 }, 5*time.Second, 10*time.Millisecond)

	require.NoError(t, c.Close())
	assert.Empty(t, leftovers(name, work))
	assert.Error(t, p.Wait())
	_ = ext.Wait()
	assert.False(t, pidAlive(ext.Process.Pid))
	require.NoError(t, c.Close(), "Close is idempotent")
	_, err = c.Nodes()[0].Start(context.Background(), "true")
	assert.ErrorIs(t, err, harness.ErrClosed)
}

// startOwner runs the test binary as a helper that builds a cluster and
// waits; it returns the helper, the cluster name and the pid of the
// process it started in node1.
func startOwner(t *testing.T, role string) (*exec.Cmd, string, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"="+role)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		// stderr is written by exec's goroutine until Wait returns.
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("helper printed no cluster: %v; stderr: %s", err, stderr.String())
	}
	var name string
	var pid int
	_, err = fmt.Sscan(line, &name, &pid)
	require.NoError(t, err)
	t.Cleanup(func() {
		// Should the test fail early, do not leave the crashed cluster.
		_ = harness.Sweep()
	})
	return cmd, name, pid
}

func TestLeftoversOfCrashedRunAreSwept(t *testing.T) {
	if err := harness.Available(); err != nil {
		t.Skipf("harness unavailable: %v", err)
	}
	cmd, name, pid := startOwner(t, "crash")
	work := filepath.Join(harness.DefaultWorkRoot, name)
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	// The creator is gone, its cluster and the process inside remain.
	assert.Len(t, leftovers(name, work), 3+2+1+1+2)
	assert.True(t, pidAlive(pid))
	start := procStart(pid)

	// The next start removes them.
	c := harnesstest.New(t, harness.Config{Nodes: 1})
	assert.Empty(t, leftovers(name, work))
	// The pid may be reused once the killed process is reaped: only the
	// process that started at the same time counts.
	assert.Eventually(t, func() bool { return !pidAlive(pid) || procStart(pid) != start }, 10*time.Second, 20*time.Millisecond,
		"pid %d still running: state %q, cmdline %q", pid, procState(pid), procCmdline(pid))
	assert.NotEqual(t, name, c.Name())
}

func TestInterruptCleansUp(t *testing.T) {
	if err := harness.Available(); err != nil {
		t.Skipf("harness unavailable: %v", err)
	}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		cmd, name, pid := startOwner(t, "interrupt")
		work := filepath.Join(harness.DefaultWorkRoot, name)
		require.NotEmpty(t, leftovers(name, work))
		require.NoError(t, cmd.Process.Signal(sig))
		err := cmd.Wait()
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee)
		assert.Equal(t, 128+int(sig), ee.ExitCode())
		assert.Empty(t, leftovers(name, work), "after %v", sig)
		assert.False(t, pidAlive(pid))
	}
}

func TestPersistentClusterSurvivesSweepAndReopens(t *testing.T) {
	if err := harness.Available(); err != nil {
		t.Skipf("harness unavailable: %v", err)
	}
	name := fmt.Sprintf("p%d", os.Getpid())
	c, err := harness.New(t.Context(), harness.Config{Name: name, Nodes: 2, Persistent: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	_, err = harness.New(t.Context(), harness.Config{Name: name, Nodes: 1})
	require.ErrorIs(t, err, harness.ErrExists)
	require.NoError(t, harness.Sweep())

	o, err := harness.Open(name)
	require.NoError(t, err)
	assert.Len(t, o.Nodes(), 2)
	assert.Equal(t, c.Nodes()[1].Disk(), o.Nodes()[1].Disk())
	n2, err := o.Node("node2")
	require.NoError(t, err)
	out, err := n2.Run(t.Context(), "cat", "/sys/class/net/eth0/address")
	require.NoError(t, err)
	assert.NotEmpty(t, out)
	_, err = o.Node("node3")
	assert.ErrorIs(t, err, harness.ErrNotFound)
	require.NoError(t, o.Close())
	assert.Empty(t, leftovers(name, c.WorkDir()))
	_, err = harness.Open(name)
	assert.ErrorIs(t, err, harness.ErrNotFound)
}

func TestBadConfig(t *testing.T) {
	if err := harness.Available(); err != nil {
		t.Skipf("harness unavailable: %v", err)
	}
	for _, cfg := range []harness.Config{{Nodes: 0}, {Nodes: 241}, {Nodes: 1, Name: "Bad-Name"}, {Nodes: 1, DiskSize: -1},
		{Nodes: 1, DiskSizes: []int64{1 << 20, 1 << 20}}, {Nodes: 2, DiskSizes: []int64{0, -5}}} {
		_, err := harness.New(t.Context(), cfg)
		assert.ErrorIs(t, err, harness.ErrBadConfig, "%+v", cfg)
	}
}

func TestAddTap(t *testing.T) {
	needTools(t, "ip")
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("no /dev/net/tun: %v", err)
	}
	c := harnesstest.New(t, harness.Config{Nodes: 1})
	tap := fmt.Sprintf("tap%d", os.Getpid()%100000)
	require.NoError(t, c.AddTap(tap))
	out, err := c.Golden().Run(t.Context(), "ip", "-o", "link", "show", "dev", tap)
	require.NoError(t, err)
	assert.Contains(t, string(out), "master br0")
	assert.Contains(t, string(out), "UP")
	// Not in the host namespace.
	assert.Error(t, exec.Command("ip", "link", "show", "dev", tap).Run())
	assert.ErrorIs(t, c.AddTap(""), harness.ErrBadConfig)
	require.NoError(t, c.Close())
	assert.Error(t, exec.Command("ip", "link", "show", "dev", tap).Run(), "tap must not fall back to the host")
}

func TestDestroyBrokenCluster(t *testing.T) {
	needTools(t, "ip")
	if err := harness.Available(); err != nil {
		t.Skipf("harness unavailable: %v", err)
	}
	name := fmt.Sprintf("b%d", os.Getpid())
	c, err := harness.New(t.Context(), harness.Config{Name: name, Nodes: 2, Persistent: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = harness.Destroy(name) })
	work := c.WorkDir()
	// Half broken: node2's network namespace vanished (as after a reboot).
	require.NoError(t, exec.Command("ip", "netns", "delete", harness.Prefix+name+"-node2").Run())
	_, err = harness.Open(name)
	require.ErrorIs(t, err, harness.ErrBadState)
	require.NoError(t, harness.Destroy(name))
	assert.Empty(t, leftovers(name, work))
	assert.ErrorIs(t, harness.Destroy(name), harness.ErrNotFound)
}

// resident counts the pages of the first n bytes of a block device that
// are in the page cache (mincore over a shared read-only mapping, unmapped
// again before it returns).
func resident(t *testing.T, dev string, n int) int {
	t.Helper()
	f, err := os.Open(dev)
	require.NoError(t, err)
	defer f.Close()
	m, err := syscall.Mmap(int(f.Fd()), 0, n, syscall.PROT_READ, syscall.MAP_SHARED)
	require.NoError(t, err)
	defer syscall.Munmap(m)
	vec := make([]byte, (n+os.Getpagesize()-1)/os.Getpagesize())
	_, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(n), uintptr(unsafe.Pointer(&vec[0])))
	require.Zero(t, e, "mincore: %v", e)
	k := 0
	for _, v := range vec {
		k += int(v & 1)
	}
	return k
}

func TestPowerOffAndOn(t *testing.T) {
	needTools(t, "dd", "ping")
	c := harnesstest.New(t, harness.Config{Nodes: 2, DiskSize: 8 << 20})
	n1, n2 := c.Nodes()[0], c.Nodes()[1]
	// Held open, so that the writer's close is not the last one (the
	// kernel writes and drops a block device's cache on its last close).
	hold, err := os.Open(n1.Disk())
	require.NoError(t, err)
	defer hold.Close()
	// Written without a sync: the bytes sit dirty in the disk's cache.
	_, err = n1.Run(t.Context(), "sh", "-c", "yes before-the-power-cut | head -c 1048576 | dd of="+harness.NodeDisk+" bs=64k status=none")
	require.NoError(t, err)
	p, err := n1.Start(t.Context(), "sleep", "1000")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(n1.Pids()) == 1 }, 5*time.Second, 10*time.Millisecond)
	require.Positive(t, resident(t, n1.Disk(), 1<<20), "the writes are cached")

	require.NoError(t, n1.PowerOff(10*time.Second))
	assert.Empty(t, n1.Pids(), "every process is gone")
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("sleep survived the power cut")
	}
	assert.Equal(t, -1, p.ExitCode(), "killed by a signal")
	assert.Zero(t, resident(t, n1.Disk(), 1<<20), "page cache of the disk dropped")
	// The writes reached the backing file (a loop device writes its dirty
	// pages before it drops them), read here past the loop device.
	img, err := os.ReadFile(filepath.Join(c.WorkDir(), n1.Name()+".img"))
	require.NoError(t, err)
	assert.Equal(t, strings.Repeat("before-the-power-cut\n", 3), string(img[:3*21]))
	// The link is down: nobody reaches the node.
	_, err = n2.Run(t.Context(), "ping", "-c1", "-W1", n1.Addr().String())
	assert.Error(t, err, "a powered-off node answers no ping")

	require.NoError(t, n1.PowerOn())
	out, err := n2.Run(t.Context(), "ping", "-c1", "-W2", n1.Addr().String())
	require.NoError(t, err, "after power on: %s", out)
	assert.ErrorIs(t, c.Golden().PowerOff(time.Second), harness.ErrBadConfig)
}
