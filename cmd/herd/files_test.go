package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/desc"
	"github.com/herd-cluster/herd/internal/testenv"
	"github.com/herd-cluster/herd/pxe/agent"
)

func TestFilesUsageErrorsExit2(t *testing.T) {
	dir := t.TempDir()
	d := filepath.Join(dir, "golden.desc")
	require.NoError(t, os.WriteFile(d, []byte("linux fill mount=/\n"), 0o644))
	bad := filepath.Join(dir, "bad.desc")
	require.NoError(t, os.WriteFile(bad, []byte("linux fill mount=/\nlinux 10\n"), 0o644))
	for _, c := range []struct {
		args []string
		want string
	}{
		{keyed("send", "--files", "--to", "127.0.0.1:1"), "--files needs --desc"},
		{keyed("send", "--files", "--desc", d), "--to is required"},
		{keyed("send", "--files", "--desc", d, "--to", "127.0.0.1:1", "--in", "x", "--out", "y"), "not -f, --in, --out"},
		{keyed("send", "--files", "--desc", filepath.Join(dir, "none"), "--to", "127.0.0.1:1"), "read desc"},
		{keyed("send", "--files", "--desc", bad, "--to", "127.0.0.1:1"), "bad.desc: desc:1:7: `fill` must be the last"},
		{keyed("send", "--files", "--desc", d, "--from", filepath.Join(dir, "nothing"), "--to", "127.0.0.1:1"), "golden filesystem for /"},
		{keyed("recv", "--files", "--listen", "127.0.0.1:0"), "--files needs --disk"},
		{keyed("recv", "--disk", "/dev/null", "--listen", "127.0.0.1:0"), "add --files"},
		{keyed("recv", "--files", "--disk", "x", "--root", dir, "--listen", "127.0.0.1:0"), "cannot be confined"},
	} {
		code, _, stderr := runHerd(t, c.args...)
		assert.Equal(t, ExitUsage, code, "%v: %s", c.args, stderr)
		assert.Contains(t, stderr, c.want, "%v", c.args)
	}
}

// TestFilesSendRecvProcesses runs herd send --files and two herd recv
// --files processes on loopback, with image files of two sizes as disks.
func TestFilesSendRecvProcesses(t *testing.T) {
	testenv.NeedRoot(t, "loop devices, mkfs, mount", "losetup", "mkfs.ext4", "mkfs.xfs", "mkswap", "blkid", "ss")
	dir := t.TempDir()
	golden := filepath.Join(dir, "golden")
	require.NoError(t, os.MkdirAll(filepath.Join(golden, "etc"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(golden, "var/log"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(golden, "tmp"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(golden, "etc/fstab"), []byte("/dev/sda1 / ext4 defaults 0 1\n/dev/sda3 /var xfs defaults 0 2\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(golden, "var/log/messages"), bytes.Repeat([]byte("hello\n"), 1000), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(golden, "tmp/junk"), []byte("junk"), 0o644))
	descFile := filepath.Join(dir, "golden.desc")
	require.NoError(t, os.WriteFile(descFile, []byte("linux 200 mount=/\nswap 16\nlinux fill fs=xfs mount=/var\n"), 0o644))

	type node struct {
		img    string
		addr   string
		cmd    *exec.Cmd
		stderr bytes.Buffer
		done   chan error
	}
	var nodes []*node
	for i, port := range freePorts(t, 2) {
		n := &node{img: filepath.Join(dir, fmt.Sprintf("disk%d.img", i)), addr: fmt.Sprintf("127.0.0.1:%d", port), done: make(chan error, 1)}
		f, err := os.Create(n.img)
		require.NoError(t, err)
		require.NoError(t, f.Truncate(int64(600+300*i)*desc.MiB))
		require.NoError(t, f.Close())
		// --files --disk: the disk is named here, it needs no --allow.
		n.cmd = exec.Command(herdBin, keyed("recv", "--files", "--disk", n.img, "--listen", n.addr, "--verify")...)
		n.cmd.Stderr = &n.stderr
		require.NoError(t, n.cmd.Start())
		go func() { n.done <- n.cmd.Wait() }()
		t.Cleanup(func() {
			n.cmd.Process.Kill()
			<-n.done
			if t.Failed() {
				t.Logf("recv %s stderr:\n%s", n.addr, n.stderr.String())
			}
		})
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		waitListening(t, n.addr)
	}
	code, stdout, stderr := runHerd(t, keyed("send", "--files", "--desc", descFile, "--from", golden, "-x", "/tmp", "--to", nodes[0].addr+","+nodes[1].addr, "--json")...)
	require.Equal(t, ExitOK, code, "stderr: %s", stderr)
	s := lastSummary(t, stdout)
	assert.True(t, s.OK)
	require.Len(t, s.Items, 4, "header, /, /var and the digest list")
	assert.Equal(t, []string{"header", "/", "/var", "verify"}, []string{s.Items[0].Dest, s.Items[1].Dest, s.Items[2].Dest, s.Items[3].Dest})
	require.Len(t, s.Stats, 4)
	varStats := s.Stats[2]
	assert.Equal(t, "files", varStats.Method)
	assert.Equal(t, int64(6000), varStats.UsedBytes, "/var holds one 6000-byte file")
	assert.Equal(t, varStats.UsedBytes, varStats.DeviceBytes, "no holes")
	assert.Equal(t, s.Items[2].Bytes, varStats.WireBytes, "the tar stream of /var")
	for _, n := range nodes {
		select {
		case err := <-n.done:
			n.done <- err
			require.NoError(t, err, "recv stderr: %s", n.stderr.String())
		case <-time.After(60 * time.Second):
			t.Fatalf("recv %s did not exit", n.addr)
		}
		out := n.stderr.String()
		assert.Contains(t, out, "file-level copy done")
		// The agent finds the clone's root by that line (its fix-ups).
		root := ""
		for _, l := range strings.Split(out, "\n") {
			if u := agent.ParseFilesRoot(l); u != "" {
				root = u
			}
		}
		assert.Regexp(t, `^[0-9a-f-]{36}$`, root, "the agent reads the root file system's UUID in herd recv's log")
		assert.Contains(t, out, "2 files verified (disk)", "/etc/fstab and /var/log/messages")
		assert.Contains(t, out, "fix-up: /etc/fstab:1: /dev/sda1 -> UUID=")
		f, err := os.Open(n.img)
		require.NoError(t, err)
		st, err := f.Stat()
		require.NoError(t, err)
		p, err := desc.ReadTable(f, st.Size())
		f.Close()
		require.NoError(t, err)
		require.Len(t, p.Parts, 3)
		assert.Equal(t, st.Size()/512, p.Parts[2].End(), "fill reaches the end of %s", n.img)
		assert.False(t, strings.Contains(mustRead(t, "/proc/self/mountinfo"), n.img), "nothing left mounted")
	}
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return string(b)
}

// A node started without --files refuses a file-level session with a
// hint, and writes nothing.
func TestFilesSessionRefusedByPlainRecv(t *testing.T) {
	dir := t.TempDir()
	golden := filepath.Join(dir, "golden")
	require.NoError(t, os.MkdirAll(filepath.Join(golden, "etc"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(golden, "etc/hostname"), []byte("golden\n"), 0o644))
	descFile := filepath.Join(dir, "golden.desc")
	require.NoError(t, os.WriteFile(descFile, []byte("linux fill mount=/\n"), 0o644))
	rs := startReceivers(t, 1)
	code, stdout, stderr := runHerd(t, keyed("send", "--files", "--desc", descFile, "--from", golden, "--to", addrs(rs), "--json")...)
	assert.Equal(t, ExitFailed, code, "stderr: %s", stderr)
	s := lastSummary(t, stdout)
	require.Len(t, s.Nodes, 1)
	assert.Equal(t, "failed", s.Nodes[0].State)
	assert.Contains(t, s.Nodes[0].Error, "herd recv --files --disk")
	assert.Equal(t, 1, exitOf(t, rs[0]))
	ents, err := os.ReadDir(rs[0].root)
	require.NoError(t, err)
	assert.Empty(t, ents, "nothing written under --root")
}
