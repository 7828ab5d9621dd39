package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/herd-cluster/herd/internal/testenv"
	"github.com/herd-cluster/herd/internal/units"
)

func TestRecvMemoryFlag(t *testing.T) {
	for _, bad := range []string{"0", "512K", "lots", "1.5G", "64Q"} {
		code, _, stderr := runHerd(t, keyed("recv", "--listen", "127.0.0.1:0", "--allow", "/srv/**", "--memory", bad)...)
		assert.Equal(t, ExitUsage, code, bad)
		assert.Contains(t, stderr, "--memory", bad)
	}
	// A value that is no size says what a size is.
	_, _, stderr := runHerd(t, keyed("recv", "--listen", "127.0.0.1:0", "--allow", "/srv/**", "--memory", "lots")...)
	assert.Contains(t, stderr, units.SizeForms)
}

// The sizes and rates of every command follow one rule (internal/units):
// a value that breaks it is a usage error naming the flag and the forms.
func TestSizeAndRateFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{keyed("send", "--chunk-size", "1.5M", "--to", "127.0.0.1:1", "--in", "/dev/null", "--out", "/x"), "--chunk-size: bad size \"1.5M\""},
		{keyed("send", "--chunk-size", "32K", "--to", "127.0.0.1:1", "--in", "/dev/null", "--out", "/x"), "want a size from 64K to 64M"},
		{[]string{"lab", "up", "--disk", "2X"}, "--disk: bad size \"2X\": want " + units.SizeForms},
		{[]string{"lab", "up", "--rate", "100M"}, "--rate: bad rate \"100M\": bits or bytes per second?"},
	} {
		code, _, stderr := runHerd(t, tc.args...)
		assert.Equal(t, ExitUsage, code, "%v: %s", tc.args, stderr)
		assert.Contains(t, stderr, tc.want, tc.args)
	}
}

// recvExits runs herd recv as a process on a free port and returns its
// exit code and stderr; it fails if the process still runs after 10 s.
func recvExits(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1)[0])
	cmd := exec.Command(herdBin, append([]string{"recv", "--listen", addr}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("herd recv %v still runs (it listens on %s); stderr: %s", args, addr, stderr.String())
	}
	return cmd.ProcessState.ExitCode(), stderr.String(), addr
}

// Secure by default: no key and no --insecure, and herd recv does not
// start (exit 2, one line saying how to make and pass a key); it never
// listened.
func TestRecvRefusesToStartWithoutKey(t *testing.T) {
	dir := t.TempDir()
	code, stderr, addr := recvExits(t, "--allow", dir+"/**")
	assert.Equal(t, ExitUsage, code)
	assert.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
	for _, want := range []string{"herd key new FILE", "--key-file FILE", "--insecure"} {
		assert.Contains(t, stderr, want)
	}
	l, err := net.Listen("tcp", addr)
	require.NoError(t, err, "the port is free: herd recv never listened")
	l.Close()

	// No --allow either: the key is what it asks for first.
	code, stderr, _ = recvExits(t)
	assert.Equal(t, ExitUsage, code)
	assert.Contains(t, stderr, "herd key new")

	// A key but nothing writable: refused too, naming the flags to add.
	code, stderr, _ = recvExits(t, "--key-file", chainKey)
	assert.Equal(t, ExitUsage, code)
	for _, want := range []string{"--allow", "--root", "--files --disk"} {
		assert.Contains(t, stderr, want)
	}
	code, stderr, _ = recvExits(t, "--insecure")
	assert.Equal(t, ExitUsage, code, "--insecure still obeys the allow list: nothing allowed, no start")
	assert.Contains(t, stderr, "--allow")

	code, stderr, _ = recvExits(t, "--insecure", "--key-file", chainKey, "--allow", dir+"/**")
	assert.Equal(t, ExitUsage, code)
	assert.Contains(t, stderr, "contradict")

	// And herd send without a key or --insecure sends nothing.
	code, _, serr := runHerd(t, "send", "--to", "127.0.0.1:1", "--in", chainKey, "--out", "/x")
	assert.Equal(t, ExitUsage, code)
	assert.Contains(t, serr, "--key-file FILE")
	assert.Contains(t, serr, "--insecure")
	code, _, serr = runHerd(t, "send", "--to", "127.0.0.1:1", "--in", chainKey, "--out", "/x", "--insecure", "--key-file", chainKey)
	assert.Equal(t, ExitUsage, code)
	assert.Contains(t, serr, "contradict")
}

func TestRecvBadFlagsExit2NamingTheFlag(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--allow", "relative/path"}, "--allow"},
		{[]string{"--allow", "/srv/**/x"}, "--allow"},
		{[]string{"--allow", "/dev/sd["}, "--allow"},
		{[]string{"--allow", "/ok/**,/srv/../etc"}, "--allow"},
		{[]string{"--allow", ""}, "--allow"},
		{[]string{"--allow-device", "dev/sda"}, "--allow"},
		{[]string{"--root", filepath.Join(dir, "missing")}, "--root"},
		{[]string{"--root", chainKey}, "--root"},
		{[]string{"--key-file", filepath.Join(dir, "nokey"), "--allow", "/srv/**"}, "nokey"},
		{[]string{"--allow", "/srv/**", "--state", filepath.Join(chainKey, "state")}, "--state"},
	} {
		args := c.args
		if !strings.Contains(strings.Join(args, " "), "--key-file") {
			args = keyed(args...)
		}
		code, _, stderr := runHerd(t, append([]string{"recv", "--listen", "127.0.0.1:0"}, args...)...)
		assert.Equal(t, ExitUsage, code, "%v: %s", c.args, stderr)
		assert.Contains(t, stderr, c.want, "%v", c.args)
	}
}

// herd recv makes the folder of its journal (--state) before it listens,
// private to root: missing, the journal would not be kept, and a restart
// would receive everything again.
func TestRecvMakesItsStateDir(t *testing.T) {
	state := filepath.Join(t.TempDir(), "var", "lib", "herd")
	allowNode(t, keyed("--root", t.TempDir(), "--state", state)...)
	fi, err := os.Stat(state)
	require.NoError(t, err)
	assert.True(t, fi.IsDir())
	assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
}

// allowNode is a herd recv process on loopback started with exactly
// args (plus --listen and --json), listening when it returns.
func allowNode(t *testing.T, args ...string) *receiver {
	t.Helper()
	r := startReceiverAt(t, fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1)[0]), "", args...)
	waitListening(t, r.addr)
	return r
}

// attack sends src to dest (cooked with cook) through two nodes: the
// first with allow (an --allow list), the second confined to its own
// --root so it writes nowhere that matters. It returns herd send's exit
// code and summary.
func attack(t *testing.T, insecure bool, allow []string, src, dest string, cook bool) (int, summary, *receiver, *receiver) {
	t.Helper()
	key := []string{"--key-file", chainKey}
	if insecure {
		key = []string{"--insecure"}
	}
	var al []string
	for _, a := range allow {
		al = append(al, "--allow", a)
	}
	guard := allowNode(t, append(al, key...)...)
	other := allowNode(t, append([]string{"--root", t.TempDir()}, key...)...)
	args := append([]string{"send", "--to", guard.addr + "," + other.addr, "--in", src, "--out", dest, "--json"}, key...)
	if cook {
		args = append(args, "--cook")
	}
	code, stdout, stderr := runHerd(t, args...)
	if insecure {
		assert.Contains(t, stderr, "WARN --insecure: no key")
	}
	return code, lastSummary(t, stdout), guard, other
}

// TestRecvAllowListHoldsAgainstTheSender is issue #12's first attack: a
// sender names a destination outside what the receiver allows (a cron
// file, a sibling directory, a symbolic link out of the allowed
// directory, '..', a directory to unpack into, a file to decompress
// into). The node writes nothing there, fails alone with a reason naming
// the destination, the rest of the chain is served, and herd send exits
// 1 saying why; keyed or --insecure alike.
func TestRecvAllowListHoldsAgainstTheSender(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	require.NoError(t, err)
	allowed, outside := filepath.Join(dir, "allowed"), filepath.Join(dir, "outside")
	require.NoError(t, os.MkdirAll(allowed, 0o755))
	require.NoError(t, os.MkdirAll(outside, 0o755))
	require.NoError(t, os.Symlink(outside, filepath.Join(allowed, "esc")))
	require.NoError(t, os.Symlink(filepath.Join(outside, "dangling"), filepath.Join(allowed, "dl")))
	payload := filepath.Join(dir, "payload")
	require.NoError(t, os.WriteFile(payload, []byte("* * * * * root touch /tmp/pwned\n"), 0o644))
	tgz := filepath.Join(dir, "tree.tar.gz")
	tree := filepath.Join(dir, "tree")
	require.NoError(t, os.MkdirAll(tree, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "evil"), []byte("x"), 0o644))
	out, err := exec.Command("tar", "-C", tree, "-czf", tgz, ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	gz := filepath.Join(dir, "payload.gz")
	out, err = exec.Command("sh", "-c", "gzip -c <"+payload+" >"+gz).CombinedOutput()
	require.NoError(t, err, "%s", out)

	cron := fmt.Sprintf("/etc/cron.d/herd-test-evil-%d", os.Getpid())
	_, err = os.Stat(cron)
	require.True(t, os.IsNotExist(err), "%s exists before the test", cron)
	t.Cleanup(func() { os.Remove(cron) })

	cases := []struct {
		name, src, dest, gone string // gone must not exist afterwards
		cook                  bool
	}{
		{"a cron file", payload, cron, cron, false},
		{"a sibling directory", payload, outside + "/evil", outside + "/evil", false},
		{"a link out of the allowed directory", payload, allowed + "/esc/evil", outside + "/evil", false},
		{"a dangling link out", payload, allowed + "/dl", outside + "/dangling", false},
		{"'..' out of the allowed directory", payload, allowed + "/../outside/evil", outside + "/evil", false},
		{"an archive unpacked outside", tgz, outside + "/tree", outside + "/tree", true},
		{"an archive unpacked through a link", tgz, allowed + "/esc/tree", outside + "/tree", true},
		{"a file decompressed outside", gz, outside + "/evil", outside + "/evil", true},
		{"the allowed directory's parent", tgz, dir, dir + "/evil", true},
	}
	for _, insecure := range []bool{false, true} {
		for _, c := range cases {
			t.Run(fmt.Sprintf("%s insecure=%v", c.name, insecure), func(t *testing.T) {
				code, s, guard, other := attack(t, insecure, []string{allowed + "/**"}, c.src, c.dest, c.cook)
				_, err := os.Lstat(c.gone)
				assert.True(t, os.IsNotExist(err), "%s was written", c.gone)
				assert.Equal(t, ExitPartial, code, "herd send exits 1: one node failed, one ok")
				require.Len(t, s.Nodes, 2)
				assert.Equal(t, "failed", s.Nodes[0].State)
				assert.Contains(t, s.Nodes[0].Error, c.dest, "the reason names the destination")
				assert.Contains(t, s.Nodes[0].Error, "--allow")
				assert.Contains(t, s.Nodes[0].Error, allowed+"/**", "the reason names the allow list")
				assert.Equal(t, "done", s.Nodes[1].State, "the rest of the chain is served: %s", s.Nodes[1].Error)
				assert.Equal(t, 1, exitOf(t, guard))
				assert.Equal(t, 0, exitOf(t, other))
				if insecure {
					assert.Contains(t, guard.stdout.String(), `"insecure":true`, "the node's summary says it")
					assert.Contains(t, guard.stderr.String(), "--insecure: any machine that reaches")
				}
			})
		}
	}
	entries, err := os.ReadDir(outside)
	require.NoError(t, err)
	assert.Empty(t, entries, "nothing written outside the allowed directory")
	entries, err = os.ReadDir(allowed)
	require.NoError(t, err)
	assert.Len(t, entries, 2, "only the two links in the allowed directory")
}

// An allowed destination is written and verified, raw and cooked, keyed
// and --insecure, through a link that stays inside and with globs.
func TestRecvAllowListWritesWhatItAllows(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	require.NoError(t, err)
	allowed := filepath.Join(dir, "allowed")
	require.NoError(t, os.MkdirAll(filepath.Join(allowed, "sub"), 0o755))
	require.NoError(t, os.Symlink("sub", filepath.Join(allowed, "in")))
	src := filepath.Join(dir, "disk.img")
	writeRandom(t, src, 3<<20+5, 21)
	tree := filepath.Join(dir, "tree")
	require.NoError(t, os.MkdirAll(filepath.Join(tree, "etc"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "etc/hostname"), []byte("node\n"), 0o644))
	tgz := filepath.Join(dir, "tree.tar.gz")
	out, err := exec.Command("tar", "-C", tree, "-czf", tgz, ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, c := range []struct {
		name     string
		allow    []string
		src      string
		dest     string
		cook     bool
		check    string // a file that holds src (raw) or tree/etc/hostname (cooked)
		insecure bool
	}{
		{"below DIR/**", []string{allowed + "/**"}, src, allowed + "/a/b.img", false, allowed + "/a/b.img", false},
		{"a glob", []string{"/nonexistent/x", allowed + "/*.img"}, src, allowed + "/c.img", false, allowed + "/c.img", false},
		{"a trailing slash, --insecure", []string{allowed + "/"}, src, allowed + "/d.img", false, allowed + "/d.img", true},
		{"a link that stays inside", []string{allowed + "/sub/**"}, src, allowed + "/in/e.img", false, allowed + "/sub/e.img", false},
		{"an archive unpacked", []string{allowed + "/tree"}, tgz, allowed + "/tree", true, allowed + "/tree/etc/hostname", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, s, guard, other := attack(t, c.insecure, c.allow, c.src, c.dest, c.cook)
			require.Equal(t, ExitOK, code, "%+v", s.Nodes)
			require.Len(t, s.Nodes, 2)
			for _, n := range s.Nodes {
				assert.Equal(t, "done", n.State, n.Error)
				require.Len(t, n.Items, 1)
				assert.True(t, n.Items[0].Verified)
				assert.Equal(t, s.Items[0].Digest, n.Items[0].Digest)
			}
			assert.Equal(t, 0, exitOf(t, guard))
			assert.Equal(t, 0, exitOf(t, other))
			if c.cook {
				assert.Equal(t, "node\n", mustRead(t, c.check))
			} else {
				assert.Equal(t, sha256File(t, src), sha256File(t, c.check))
			}
		})
	}
}

// A block device is written only when --allow names it (here a loop
// device standing for a node's disk); one the list does not name keeps
// every byte.
func TestRecvAllowListAndDevices(t *testing.T) {
	testenv.NeedRoot(t, "loop devices", "losetup")
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	writeRandom(t, img, 4<<20, 5)
	out, err := exec.Command("losetup", "--find", "--show", img).Output()
	require.NoError(t, err)
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	before := sha256File(t, img)
	src := filepath.Join(dir, "golden.img")
	writeRandom(t, src, 1<<20, 6)

	code, s, _, _ := attack(t, false, []string{dir + "/**", "/dev/herd-no-such-disk"}, src, dev, false)
	assert.Equal(t, ExitPartial, code)
	assert.Equal(t, "failed", s.Nodes[0].State)
	assert.Contains(t, s.Nodes[0].Error, dev)
	assert.Equal(t, before, sha256File(t, img), "the unlisted device keeps every byte")

	code, s, _, _ = attack(t, true, []string{dir + "/**", "/dev/herd-no-such-disk"}, src, dev, false)
	assert.Equal(t, ExitPartial, code)
	assert.Contains(t, s.Nodes[0].Error, dev)
	assert.Equal(t, before, sha256File(t, img), "the unlisted device keeps every byte (--insecure)")

	// A device node below an allowed directory, as an archive unpacked
	// there may make one for the disk: the directory pattern does not
	// reach it.
	var st unix.Stat_t
	require.NoError(t, unix.Stat(dev, &st))
	node := filepath.Join(dir, "images", "disk-node")
	require.NoError(t, os.MkdirAll(filepath.Dir(node), 0o755))
	require.NoError(t, unix.Mknod(node, unix.S_IFBLK|0o600, int(st.Rdev)))
	code, s, _, _ = attack(t, false, []string{dir + "/images/**"}, src, node, false)
	assert.Equal(t, ExitPartial, code)
	assert.Contains(t, s.Nodes[0].Error, node)
	assert.Equal(t, before, sha256File(t, img), "a device node below an allowed directory is not written")

	code, s, _, _ = attack(t, false, []string{dev}, src, dev, false)
	require.Equal(t, ExitOK, code, "%+v", s.Nodes)
	f, err := os.Open(img)
	require.NoError(t, err)
	defer f.Close()
	got := make([]byte, 1<<20)
	_, err = f.ReadAt(got, 0)
	require.NoError(t, err)
	want, err := os.ReadFile(src)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(want, got), "the allowed device holds the image")
}
