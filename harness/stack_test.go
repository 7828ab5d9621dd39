package harness_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/herd-cluster/herd/harness"
	"github.com/herd-cluster/herd/harness/harnesstest"
	"github.com/herd-cluster/herd/internal/testenv"
)

// mi is a line of /proc/self/mountinfo: mount ID, parent ID, root, mount
// point, filesystem type.
type mi struct {
	id, parent          string
	root, point, fstype string
}

func readMI(t testing.TB) []mi {
	t.Helper()
	// thread-self: the main thread may sit in a node's mount namespace.
	runtime.LockOSThread()
	b, err := os.ReadFile("/proc/thread-self/mountinfo")
	runtime.UnlockOSThread()
	require.NoError(t, err)
	var out []mi
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(l)
		sep := 0
		for i := range f {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		out = append(out, mi{id: f[0], parent: f[1], root: f[3], point: f[4], fstype: f[sep+1]})
	}
	return out
}

// mountIDsAt returns the IDs of the mounts on path (every layer).
func mountIDsAt(t testing.TB, path string) map[string]bool {
	out := map[string]bool{}
	for _, m := range readMI(t) {
		if m.point == path {
			out[m.id] = true
		}
	}
	return out
}

// topMountID returns the ID of the mount a lookup of path reaches.
func topMountID(t testing.TB, path string) string {
	var stx unix.Statx_t
	require.NoError(t, unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &stx))
	return fmt.Sprint(stx.Mnt_id)
}

// stackNetns binds /run/netns over itself, recursively, as `ip netns add`
// does the first time (shared) or as another tool might (private). The
// binds are removed at the end of the test (private first, so that the
// removal does not propagate to anybody's pins).
func stackNetns(t *testing.T, shared bool) {
	t.Helper()
	before := mountIDsAt(t, "/run/netns")
	prop := "--make-rprivate"
	if shared {
		prop = "--make-rshared"
	}
	out, err := exec.Command("sh", "-c", "mount --rbind /run/netns /run/netns && mount "+prop+" /run/netns").CombinedOutput()
	require.NoError(t, err, "%s", out)
	t.Cleanup(func() {
		for i := 0; i < 16; i++ {
			top := topMountID(t, "/run/netns")
			if before[top] {
				return
			}
			_ = unix.Mount("", "/run/netns", "", unix.MS_PRIVATE, "")
			if err := unix.Unmount("/run/netns", unix.MNT_DETACH); err != nil {
				t.Errorf("remove the test's bind of /run/netns: %v", err)
				return
			}
		}
	})
}

// foreignNetns makes a namespace with `ip netns add` that is none of the
// harness's business; the test removes it at the end.
func foreignNetns(t *testing.T, tag string) string {
	t.Helper()
	name := fmt.Sprintf("herdtest-%s-%d", tag, os.Getpid())
	out, err := exec.Command("ip", "netns", "add", name).CombinedOutput()
	require.NoError(t, err, "%s", out)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", name).Run() })
	return name
}

// assertNoTrace checks that nothing of cluster name is left: no pin file,
// no mount (in any layer, hidden or not) on a path naming it.
func assertNoTrace(t *testing.T, name string) {
	t.Helper()
	for _, g := range []string{"/run/netns/" + harness.Prefix + name + "-*", harness.StateDir + "/ns/" + harness.Prefix + name + "-*"} {
		m, _ := filepath.Glob(g)
		assert.Empty(t, m, "pin files left")
	}
	for _, m := range readMI(t) {
		assert.NotContains(t, m.point, harness.Prefix+name+"-", "mount %s (%s %s) left", m.id, m.fstype, m.root)
	}
}

// The leak of issue #13: /run/netns bound over itself while a cluster
// runs hides its pins; Close must still remove every one of them, and must
// not remove anything of anybody else.
func TestCloseRemovesPinsHiddenByStackedNetns(t *testing.T) {
	needTools(t, "ip", "mount")
	if !testenv.InPrivateMounts(t) {
		return
	}
	if err := harness.Available(); err != nil {
		t.Skipf("harness unavailable: %v", err)
	}
	for _, tc := range []struct {
		name   string
		shared bool
	}{{"ip-like shared binds", true}, {"private binds", false}} {
		t.Run(tc.name, func(t *testing.T) {
			before := foreignNetns(t, "before")
			c := harnesstest.New(t, harness.Config{Nodes: 2, DiskSize: 4 << 20})
			name := c.Name()
			// Twice: the second bind hides the copies the first made.
			stackNetns(t, tc.shared)
			stackNetns(t, tc.shared)
			var after string
			if tc.shared {
				// Made in the top layer; shared binds propagate it down.
				after = foreignNetns(t, "after")
			}
			hidden := 0
			for _, m := range readMI(t) {
				if strings.Contains(m.point, harness.Prefix+name+"-") {
					hidden++
				}
			}
			require.Greater(t, hidden, 5, "the binds copied the pins (3 netns + 2 mount namespaces)")
			_, err := c.Golden().Run(t.Context(), "true")
			require.NoError(t, err, "the cluster works under the binds")

			require.NoError(t, c.Close())
			assertNoTrace(t, name)
			for _, ns := range []string{before, after} {
				if ns == "" {
					continue
				}
				out, err := exec.Command("ip", "netns", "exec", ns, "true").CombinedOutput()
				assert.NoError(t, err, "namespace %s of another program must survive: %s", ns, out)
			}
		})
	}
}

// A cover that holds another program's namespace (only there) is left
// alone, and the pins it hides are removed once it is gone.
func TestHiddenPinsUnderAForeignCoverWaitForIt(t *testing.T) {
	needTools(t, "ip", "mount")
	if !testenv.InPrivateMounts(t) {
		return
	}
	if err := harness.Available(); err != nil {
		t.Skipf("harness unavailable: %v", err)
	}
	c, err := harness.New(t.Context(), harness.Config{Nodes: 1, DiskSize: 4 << 20})
	require.NoError(t, err)
	name := c.Name()
	t.Cleanup(func() { _ = c.Close(); _, _ = harness.Down(name) })
	stackNetns(t, false)
	stackNetns(t, false)
	// The foreign namespace exists in the top bind only.
	foreign := foreignNetns(t, "top")
	err = c.Close()
	require.Error(t, err, "removing the top bind would take %s with it", foreign)
	assert.Contains(t, err.Error(), "another program")
	out, err := exec.Command("ip", "netns", "exec", foreign, "true").CombinedOutput()
	require.NoError(t, err, "%s", out)

	require.NoError(t, exec.Command("ip", "netns", "delete", foreign).Run())
	removed, err := harness.Down(name)
	require.NoError(t, err)
	assert.NotEmpty(t, removed)
	assertNoTrace(t, name)
}

// A cluster can be built by a process in a mount namespace of its own (a
// container, InPrivateMounts), whichever CPU that namespace was made on.
// Namespace IDs come from per-CPU batches, so a node's mount namespace can
// get a smaller ID than the process's own, and the kernel refuses to pin
// it (ELOOP) unless it is made again on the right CPU.
func TestClusterFromAMountNamespaceMadeOnAnyCPU(t *testing.T) {
	needTools(t, "unshare", "taskset")
	if err := harness.Available(); err != nil {
		t.Skipf("harness unavailable: %v", err)
	}
	if os.Getenv(testenv.PrivateMountsEnv) == "1" {
		c := harnesstest.New(t, harness.Config{Nodes: 4, DiskSize: 4 << 20})
		for _, n := range c.Nodes() {
			_, err := n.Run(t.Context(), "true")
			require.NoError(t, err, n.Name())
		}
		require.NoError(t, c.Close())
		return
	}
	var cpus unix.CPUSet
	require.NoError(t, unix.SchedGetaffinity(0, &cpus))
	var all []string
	for cpu := 0; cpu < len(cpus)*64; cpu++ {
		if cpus.IsSet(cpu) {
			all = append(all, fmt.Sprint(cpu))
		}
	}
	for _, cpu := range all {
		// The namespace is made on cpu; the test binary may run anywhere.
		cmd := exec.CommandContext(t.Context(), "taskset", "-c", cpu,
			"unshare", "--mount", "--propagation", "private",
			"taskset", "-c", strings.Join(all, ","),
			os.Args[0], "-test.run", "^"+t.Name()+"$", "-test.count", "1", "-test.v")
		cmd.Env = append(os.Environ(), testenv.PrivateMountsEnv+"=1")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "namespace made on CPU %s:\n%s", cpu, out)
		require.Contains(t, string(out), "--- PASS: "+t.Name(), "namespace made on CPU %s", cpu)
	}
}
