package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/herd-cluster/herd/harness"
	"github.com/herd-cluster/herd/internal/testenv"
)

func TestLabUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"lab", "up", "--disk", "huge"},
		{"lab", "up", "--rate", "fast"},
		{"lab", "up", "--subnet", "nonsense"},
		{"lab", "exec", "node1"},
		{"lab", "bogus"},
	} {
		code, _, stderr := runHerd(t, args...)
		assert.Equal(t, ExitUsage, code, "%v: %s", args, stderr)
	}
}

func TestLabUpExecStatusDown(t *testing.T) {
	if err := harness.Available(); err != nil {
		t.Skipf("lab needs the harness: %v", err)
	}
	for _, tool := range []string{"ip", "ping", "tc", "blockdev"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (make deps installs it)", tool)
		}
	}
	name := fmt.Sprintf("labt%d", os.Getpid())
	t.Cleanup(func() { _ = harness.Destroy(name) })
	code, out, stderr := runHerd(t, "lab", "up", "--name", name, "-n", "3", "--disk", "16M", "--rate", "500mbit")
	require.Equal(t, ExitOK, code, stderr)
	assert.Contains(t, out, "node3   10.99.0.13")

	code, _, stderr = runHerd(t, "lab", "up", "--name", name, "-n", "2")
	assert.Equal(t, ExitFailed, code)
	assert.Contains(t, stderr, "already up")

	// Every node sees its own disk at the same path; the exit code passes through.
	for i := 1; i <= 3; i++ {
		code, out, stderr = runHerd(t, "lab", "--name", name, "exec", fmt.Sprintf("node%d", i), "--",
			"sh", "-c", "blockdev --getsize64 "+harness.NodeDisk+"; ip -4 -o addr show dev eth0; exit 7")
		assert.Equal(t, 7, code, stderr)
		assert.Contains(t, out, "16777216\n")
		assert.Contains(t, out, fmt.Sprintf("inet 10.99.0.1%d/24 brd 10.99.0.255", i))
	}
	code, out, _ = runHerd(t, "lab", "--name", name, "exec", "golden", "ping", "-c1", "-W2", "10.99.0.12")
	assert.Equal(t, ExitOK, code, out)
	code, _, stderr = runHerd(t, "lab", "--name", name, "exec", "node4", "--", "true")
	assert.Equal(t, ExitUsage, code, stderr)

	// Faults: a cut node does not answer, a restored one does.
	code, _, stderr = runHerd(t, "lab", "--name", name, "fault", "node2", "cut")
	require.Equal(t, ExitOK, code, stderr)
	code, _, _ = runHerd(t, "lab", "--name", name, "exec", "golden", "ping", "-c1", "-W1", "10.99.0.12")
	assert.NotEqual(t, ExitOK, code, "node2 answered through a cut link")
	code, _, stderr = runHerd(t, "lab", "--name", name, "fault", "node2", "restore")
	require.Equal(t, ExitOK, code, stderr)
	code, out, _ = runHerd(t, "lab", "--name", name, "exec", "golden", "ping", "-c1", "-W2", "10.99.0.12")
	assert.Equal(t, ExitOK, code, out)
	for _, args := range [][]string{{"node1", "loss", "10"}, {"node1", "loss", "0"}, {"node1", "rate", "100mbit"}, {"node1", "freeze"}, {"node1", "thaw"}, {"node1", "kill"}} {
		code, _, stderr = runHerd(t, append([]string{"lab", "--name", name, "fault"}, args...)...)
		assert.Equal(t, ExitOK, code, "%v: %s", args, stderr)
	}
	code, out, _ = runHerd(t, "lab", "--name", name, "exec", "node1", "tc", "qdisc", "show", "dev", "eth0")
	assert.Equal(t, ExitOK, code)
	assert.Contains(t, out, "rate 100Mbit")
	for _, args := range [][]string{{"node1", "loss"}, {"node1", "cut", "5"}, {"node1", "melt"}, {"node1", "loss", "x"}, {"golden", "cut"}} {
		code, _, stderr = runHerd(t, append([]string{"lab", "--name", name, "fault"}, args...)...)
		assert.Equal(t, ExitUsage, code, "%v: %s", args, stderr)
	}

	code, out, stderr = runHerd(t, "lab", "--name", name, "status", "--json")
	require.Equal(t, ExitOK, code, stderr)
	var st labStatus
	require.NoError(t, json.Unmarshal([]byte(out), &st))
	assert.Equal(t, uint64(500e6), st.RateBits)
	require.Len(t, st.Nodes, 4)
	assert.Equal(t, "golden", st.Nodes[0].Name)
	assert.Equal(t, harness.NodeDisk, st.Nodes[2].NodeDisk)
	assert.True(t, strings.HasPrefix(st.Nodes[2].HostDisk, "/dev/loop"))

	code, out, stderr = runHerd(t, "lab", "--name", name, "down")
	require.Equal(t, ExitOK, code, stderr)
	assert.Contains(t, out, "is down")
	_, err := os.Stat("/run/netns/" + harness.Prefix + name + "-node1")
	assert.ErrorIs(t, err, os.ErrNotExist)
	code, _, _ = runHerd(t, "lab", "--name", name, "status")
	assert.Equal(t, ExitFailed, code)
	code, out, _ = runHerd(t, "lab", "--name", name, "down")
	assert.Equal(t, ExitOK, code)
	assert.Contains(t, out, "no lab")
}

// A `herd lab up` killed while it builds, then /run/netns bound over itself
// twice (hiding the pins, as `ip netns add` by another program can), a
// process left running in the lab: `herd lab down` removes all of it, says
// what it removed, and a second one finds nothing to do.
func TestLabDownRemovesLeftoversOfKilledRun(t *testing.T) {
	// It binds /run/netns over itself: only in a mount namespace of its
	// own, or the labs of tests running beside it could not be removed.
	if !testenv.InPrivateMounts(t) {
		return
	}
	if err := harness.Available(); err != nil {
		t.Skipf("lab needs the harness: %v", err)
	}
	for _, tool := range []string{"ip", "mount", "losetup"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (make deps installs it)", tool)
		}
	}
	name := fmt.Sprintf("labk%d", os.Getpid())
	prefix := "/run/netns/" + harness.Prefix + name + "-"
	work := filepath.Join(harness.DefaultWorkRoot, name)
	t.Cleanup(func() { _, _ = harness.Down(name) })
	hostLinks := func() string {
		out, err := exec.Command("ip", "-o", "link", "show").Output()
		require.NoError(t, err)
		var names []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if f := strings.Fields(l); len(f) > 1 {
				names = append(names, f[1])
			}
		}
		return strings.Join(names, " ")
	}
	linksBefore := hostLinks()
	// Another program's namespace, which must survive.
	other := fmt.Sprintf("herdtest-other-%d", os.Getpid())
	require.NoError(t, exec.Command("ip", "netns", "add", other).Run())
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", other).Run() })

	up := exec.Command(herdBin, "lab", "up", "--name", name, "-n", "8", "--disk", "8M")
	require.NoError(t, up.Start())
	t.Cleanup(func() { _ = up.Process.Kill(); _ = up.Wait() })
	require.Eventually(t, func() bool {
		_, err := os.Stat(prefix + "node3")
		return err == nil
	}, 60*time.Second, 5*time.Millisecond, "lab up made no node3")
	require.NoError(t, up.Process.Kill())
	_ = up.Wait()

	sleeper := exec.Command("ip", "netns", "exec", harness.Prefix+name+"-node1", "sleep", "1000")
	require.NoError(t, sleeper.Start())
	t.Cleanup(func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() })
	// Two binds of /run/netns over itself, removed at the end (made
	// private first, so the removal propagates nowhere).
	before, err := readThreadMountinfo()
	require.NoError(t, err)
	for i := 0; i < 2; i++ {
		out, err := exec.Command("sh", "-c", "mount --rbind /run/netns /run/netns && mount --make-rprivate /run/netns").CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	t.Cleanup(func() {
		for i := 0; i < 4; i++ {
			var stx unix.Statx_t
			if unix.Statx(unix.AT_FDCWD, "/run/netns", unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &stx) != nil ||
				strings.Contains(string(before), fmt.Sprintf("\n%d ", stx.Mnt_id)) || strings.HasPrefix(string(before), fmt.Sprintf("%d ", stx.Mnt_id)) {
				return
			}
			_ = unix.Mount("", "/run/netns", "", unix.MS_PRIVATE, "")
			_ = unix.Unmount("/run/netns", unix.MNT_DETACH)
		}
	})
	mi, _ := readThreadMountinfo()
	require.Greater(t, strings.Count(string(mi), harness.Prefix+name+"-"), 6, "pins and their hidden copies")

	code, out, stderr := runHerd(t, "lab", "--name", name, "down")
	require.Equal(t, ExitOK, code, "%s%s", out, stderr)
	assert.Contains(t, out, "removed:")
	assert.Contains(t, out, "network namespace "+harness.Prefix+name+"-node1")
	assert.Contains(t, out, "loop device /dev/loop")
	assert.Contains(t, out, "process ")

	m, _ := filepath.Glob(prefix + "*")
	assert.Empty(t, m, "pins in /run/netns")
	mi, _ = readThreadMountinfo()
	assert.NotContains(t, string(mi), harness.Prefix+name+"-", "mounts left")
	lo, err := exec.Command("losetup", "-a").Output()
	require.NoError(t, err)
	assert.NotContains(t, string(lo), work+"/", "loop devices left")
	_, err = os.Stat(work)
	assert.ErrorIs(t, err, os.ErrNotExist)
	assert.Equal(t, linksBefore, hostLinks(), "links of the host")
	_ = sleeper.Wait()
	assert.NotNil(t, sleeper.ProcessState, "the process in the lab was killed")
	out2, err := exec.Command("ip", "netns", "exec", other, "true").CombinedOutput()
	assert.NoError(t, err, "another program's namespace must survive: %s", out2)

	code, out, _ = runHerd(t, "lab", "--name", name, "down")
	assert.Equal(t, ExitOK, code)
	assert.Contains(t, out, "nothing to remove")
}

// readThreadMountinfo reads this thread's mountinfo on a locked thread:
// the main thread of a process that built a lab in-process may sit in a
// node's mount namespace.
func readThreadMountinfo() ([]byte, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return os.ReadFile("/proc/thread-self/mountinfo")
}
