package agent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pxe/httpboot"
)

// goldenRoot writes the identity files of a golden system under a new
// folder and returns it.
func goldenRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"etc/ssh", "var/lib/dbus"} {
		require.NoError(t, os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	for name, text := range map[string]string{
		"etc/hostname":                     "golden\n",
		"etc/machine-id":                   "0123456789abcdef0123456789abcdef\n",
		"var/lib/dbus/machine-id":          "0123456789abcdef0123456789abcdef\n",
		"etc/hosts":                        "127.0.0.1 localhost\n127.0.1.1 golden.example.org golden\n::1 localhost ip6-localhost\n",
		"etc/ssh/ssh_host_ed25519_key":     "private",
		"etc/ssh/ssh_host_ed25519_key.pub": "public",
		"etc/ssh/ssh_host_rsa_key":         "private",
		"etc/ssh/sshd_config":              "Port 22\n",
	} {
		require.NoError(t, os.WriteFile(filepath.Join(root, name), []byte(text), 0o640))
	}
	return root
}

func readString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

func TestFixIdentityGivesTheCloneItsOwnIdentity(t *testing.T) {
	root := goldenRoot(t)
	did, err := FixIdentity(root, "node07.rack1")
	require.NoError(t, err)
	assert.Equal(t, []string{"hostname node07.rack1", "/etc/hosts 127.0.1.1 node07.rack1", "machine-id emptied", "dbus machine-id removed", "3 ssh host key files removed"}, did)
	assert.Equal(t, "node07.rack1\n", readString(t, filepath.Join(root, "etc/hostname")))
	assert.Equal(t, "127.0.0.1 localhost\n127.0.1.1\tnode07.rack1 node07\n::1 localhost ip6-localhost\n", readString(t, filepath.Join(root, "etc/hosts")))
	assert.Equal(t, "", readString(t, filepath.Join(root, "etc/machine-id")))
	fi, err := os.Stat(filepath.Join(root, "etc/machine-id"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o640), fi.Mode().Perm(), "the machine-id file keeps its mode")
	_, err = os.Lstat(filepath.Join(root, "var/lib/dbus/machine-id"))
	assert.ErrorIs(t, err, os.ErrNotExist)
	left, err := filepath.Glob(filepath.Join(root, "etc/ssh/*"))
	require.NoError(t, err)
	assert.Equal(t, []string{filepath.Join(root, "etc/ssh/sshd_config")}, left, "only the host keys go")
}

func TestFixIdentityWithoutANameKeepsTheHostName(t *testing.T) {
	root := goldenRoot(t)
	// dbus's machine-id as a link to /etc/machine-id stays.
	require.NoError(t, os.Remove(filepath.Join(root, "var/lib/dbus/machine-id")))
	require.NoError(t, os.Symlink("/etc/machine-id", filepath.Join(root, "var/lib/dbus/machine-id")))
	require.NoError(t, os.RemoveAll(filepath.Join(root, "etc/ssh")))
	did, err := FixIdentity(root, "")
	require.NoError(t, err)
	assert.Equal(t, []string{"machine-id emptied"}, did)
	assert.Equal(t, "golden\n", readString(t, filepath.Join(root, "etc/hostname")))
	l, err := os.Readlink(filepath.Join(root, "var/lib/dbus/machine-id"))
	require.NoError(t, err)
	assert.Equal(t, "/etc/machine-id", l)
}

func TestFixIdentityRefuses(t *testing.T) {
	for name, c := range map[string]struct {
		name  string
		setup func(root string)
		want  string
	}{
		"a name that is not a host name":    {"node_1;rm -rf", nil, "not a host name"},
		"a dotted name with an empty label": {"node..a", nil, "not a host name"},
		"no /etc":                           {"node1", func(root string) { os.RemoveAll(filepath.Join(root, "etc")) }, "no /etc"},
		"a hostname link out of the clone": {"node1", func(root string) {
			os.Remove(filepath.Join(root, "etc/hostname"))
			os.Symlink("../../../../../../../../tmp/herd-escape", filepath.Join(root, "etc/hostname"))
		}, "/etc/hostname"},
		"a machine-id that is a folder": {"node1", func(root string) {
			os.Remove(filepath.Join(root, "etc/machine-id"))
			os.Mkdir(filepath.Join(root, "etc/machine-id"), 0o755)
		}, "not a regular file"},
	} {
		t.Run(name, func(t *testing.T) {
			root := goldenRoot(t)
			if c.setup != nil {
				c.setup(root)
			}
			_, err := FixIdentity(root, c.name)
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
			_, err = os.Lstat("/tmp/herd-escape")
			assert.ErrorIs(t, err, os.ErrNotExist, "nothing written outside the clone")
		})
	}
}

func TestHostsWithName(t *testing.T) {
	b, ok := hostsWithName([]byte("127.0.0.1 localhost\n"), "n1")
	assert.False(t, ok)
	assert.Equal(t, "127.0.0.1 localhost\n", string(b))
	b, ok = hostsWithName([]byte("127.0.1.1 golden"), "n1")
	assert.True(t, ok)
	assert.Equal(t, "127.0.1.1\tn1", string(b), "a last line without a newline stays without one")
}

func TestTailBufferKeepsTheLastLinesCut(t *testing.T) {
	tb := newTailBuffer(3, 5)
	tb.Write([]byte("one\ntwo\nthree-long\nfo"))
	tb.Write([]byte("ur\nfive"))
	assert.Equal(t, []string{"three", "four", "five"}, tb.Lines())
	tb.Write([]byte("\n"))
	assert.Equal(t, []string{"three", "four", "five"}, tb.Lines())
}

func TestFitReportKeepsTheBodyLimit(t *testing.T) {
	long := strings.Repeat("<&>", 200) // json escapes each as \u003c…: six bytes
	var agentLog, klog []string
	for range AgentLogLines {
		agentLog = append(agentLog, long)
	}
	for range ReportLogLines {
		klog = append(klog, long)
	}
	rep := FitReport(httpboot.ReportRequest{MAC: "52:54:00:00:00:01", Error: "boom", AgentLog: agentLog, Log: klog}, httpboot.MaxBody-1024)
	b, err := json.Marshal(rep)
	require.NoError(t, err)
	assert.LessOrEqual(t, len(b), httpboot.MaxBody-1024)
	require.NotEmpty(t, rep.AgentLog)
	assert.Less(t, len(rep.AgentLog), AgentLogLines, "the oldest lines were dropped")
	assert.Len(t, rep.AgentLog[0], AgentLogLine, "each line cut")
	assert.Len(t, rep.Log, ReportLogLines, "the kernel log is kept while the agent's log can give way")
	assert.Equal(t, "boom", rep.Error)

	small := httpboot.ReportRequest{MAC: "52:54:00:00:00:01", AgentLog: []string{"a", "b"}}
	assert.Equal(t, small, FitReport(small, httpboot.MaxBody))
}

func FuzzHostsWithName(f *testing.F) {
	f.Add("127.0.0.1 localhost\n127.0.1.1 golden.example.org golden\n::1 localhost\n", "node07.rack1")
	f.Add("127.0.1.1\tgolden", "n")
	f.Add("", "node")
	f.Add("  127.0.1.1 x\r\n#127.0.1.1 y\n", "a-b")
	f.Fuzz(func(t *testing.T, hosts, name string) {
		if !httpboot.ValidHostname(name) {
			return
		}
		out, found := hostsWithName([]byte(hosts), name)
		in, got := strings.SplitAfter(hosts, "\n"), strings.SplitAfter(string(out), "\n")
		if len(in) != len(got) {
			t.Fatalf("%d lines became %d", len(in), len(got))
		}
		seen := false
		for i := range in {
			f := strings.Fields(in[i])
			if len(f) > 0 && f[0] == "127.0.1.1" {
				seen = true
				if g := strings.Fields(got[i]); len(g) < 2 || g[0] != "127.0.1.1" || g[1] != name {
					t.Fatalf("line %q became %q", in[i], got[i])
				}
			} else if in[i] != got[i] {
				t.Fatalf("line %q changed to %q", in[i], got[i])
			}
		}
		if seen != found {
			t.Fatalf("found %v, want %v", found, seen)
		}
	})
}

func TestParseFilesRoot(t *testing.T) {
	for line, want := range map[string]string{
		"herd recv: file-level copy done: /=ext4(0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0) /boot=vfat(1234-ABCD) swap=swap(aa-bb); 12 files verified (disk); 3 fix-ups; boot loader: /boot; hooks: 0": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
		"herd recv: file-level copy NOT finished: /boot=vfat(1234-ABCD) /=xfs(ABCD-12); 0 files":                                                                                                  "ABCD-12",
		"herd recv: file-level copy done: /boot=vfat(1234-ABCD); 0 files":                                                                                                                         "",
		"herd recv: file-level copy done: /=ext4(../../etc) x":                                                                                                                                    "",
		"herd recv: file-level copy done: /=ext4(abc":                                                                                                                                             "",
		"2026-12-04 09:12:48 INFO recv: file-level copy done: /=ext4(cccab47c-cf1e-4ae8-91e9-2259d68c9e0f); 12 files verified (page cache); 0 fix-ups; boot loader: /; hooks: 0 session=e2e":      "cccab47c-cf1e-4ae8-91e9-2259d68c9e0f",
		"something else /=ext4(abcd)": "",
		"":                            "",
	} {
		assert.Equal(t, want, ParseFilesRoot(line), "%q", line)
	}
}

func FuzzParseFilesRoot(f *testing.F) {
	f.Add("herd recv: file-level copy done: /=ext4(0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0) /boot=vfat(1234-ABCD); 1 files")
	f.Add("herd recv: file-level copy done: /=ext4(")
	f.Fuzz(func(t *testing.T, line string) {
		u := ParseFilesRoot(line)
		if strings.Trim(u, "0123456789abcdefABCDEF-") != "" || !strings.Contains(line, u) {
			t.Fatalf("%q gave %q", line, u)
		}
	})
}

func TestLineWatcher(t *testing.T) {
	var got []string
	w := &lineWatcher{fn: func(l string) { got = append(got, l) }}
	w.Write([]byte("one\ntw"))
	w.Write([]byte("o\n" + strings.Repeat("x", 5000) + "\nunfinished"))
	require.Len(t, got, 3)
	assert.Equal(t, []string{"one", "two"}, got[:2])
	assert.Len(t, got[2], 4096)
}
