package tftp

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	ptftp "github.com/pin/tftp/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// startServer serves dir on a loopback port and returns its address.
func startServer(t *testing.T, s *Server) string {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- s.Serve(conn) }()
	t.Cleanup(func() {
		s.Shutdown()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("tftp server did not stop")
		}
		conn.Close()
	})
	return conn.LocalAddr().String()
}

func fetch(t *testing.T, addr, name string) ([]byte, error) {
	t.Helper()
	c, err := ptftp.NewClient(addr)
	require.NoError(t, err)
	c.SetTimeout(time.Second)
	c.SetRetries(2)
	wt, err := c.Receive(name, "octet")
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	_, err = wt.WriteTo(&buf)
	return buf.Bytes(), err
}

// bootDir makes a boot folder with a file, a secret beside it, and two
// symlinks: one inside (allowed) and one leaving the folder (refused).
func bootDir(t *testing.T) (dir string, payload []byte) {
	top := t.TempDir()
	dir = filepath.Join(top, "boot")
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "sub"), 0o755))
	payload = make([]byte, 300_000) // several hundred blocks
	_, err := rand.Read(payload)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "sub", "undionly.kpxe"), payload, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(top, "secret"), []byte("top secret"), 0o644))
	require.NoError(t, os.Symlink("sub/undionly.kpxe", filepath.Join(dir, "inside")))
	require.NoError(t, os.Symlink("../secret", filepath.Join(dir, "escape")))
	require.NoError(t, os.Symlink(filepath.Join(top, "secret"), filepath.Join(dir, "absescape")))
	return dir, payload
}

func TestServeFilesAndRefuseEscapes(t *testing.T) {
	dir, payload := bootDir(t)
	var mu sync.Mutex
	var logs []string
	counts := map[string]int{}
	s := &Server{Dir: dir, Logf: func(f string, a ...any) {
		mu.Lock()
		logs = append(logs, fmt.Sprintf(f, a...))
		mu.Unlock()
	}, Count: func(service, outcome string) {
		mu.Lock()
		counts[service+" "+outcome]++
		mu.Unlock()
	}}
	addr := startServer(t, s)

	got, err := fetch(t, addr, "/sub/undionly.kpxe")
	require.NoError(t, err)
	assert.True(t, bytes.Equal(payload, got), "content differs")

	got, err = fetch(t, addr, "inside")
	require.NoError(t, err)
	assert.Equal(t, len(payload), len(got))

	for _, name := range []string{"../secret", "sub/../../secret", "escape", "absescape", "..\\secret", "missing", "sub"} {
		got, err := fetch(t, addr, name)
		assert.Error(t, err, "%s must be refused", name)
		assert.NotContains(t, string(got), "top secret")
	}
	// A transfer is counted once the server is done with it, which may
	// be just after the client got its last block.
	assert.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return counts["tftp ok"]+counts["tftp error"] >= 9
	}, 5*time.Second, 10*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	assert.Contains(t, strings.Join(logs, "\n"), `refused "../secret"`)
	assert.Equal(t, map[string]int{"tftp ok": 2, "tftp error": 7}, counts, "every request counted once, by outcome")
}

func TestDynamic(t *testing.T) {
	dir, _ := bootDir(t)
	s := &Server{Dir: dir, Dynamic: func(name string, client net.IP) ([]byte, bool) {
		if name == "pxelinux.cfg/default" {
			return []byte("DEFAULT local for " + client.String()), true
		}
		return nil, false
	}}
	addr := startServer(t, s)
	got, err := fetch(t, addr, "pxelinux.cfg/default")
	require.NoError(t, err)
	assert.Equal(t, "DEFAULT local for 127.0.0.1", string(got))
}

// TestBusyboxClient fetches with a real TFTP client (busybox tftp).
func TestBusyboxClient(t *testing.T) {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox not installed (Debian busybox-static)")
	}
	dir, payload := bootDir(t)
	addr := startServer(t, &Server{Dir: dir})
	host, port, _ := net.SplitHostPort(addr)
	out := filepath.Join(t.TempDir(), "got")
	cmd := exec.Command(bb, "tftp", "-g", "-r", "sub/undionly.kpxe", "-l", out, host, port)
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "busybox tftp: %s", b)
	got, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(payload, got))

	bad := filepath.Join(t.TempDir(), "bad")
	b, err = exec.Command(bb, "tftp", "-g", "-r", "../secret", "-l", bad, host, port).CombinedOutput()
	require.Error(t, err, "escape must fail: %s", b)
	if data, err := os.ReadFile(bad); err == nil {
		assert.NotContains(t, string(data), "top secret")
	}
}

func TestCleanName(t *testing.T) {
	for in, want := range map[string]string{"/pxelinux.0": "pxelinux.0", "a//b/./c": "a/b/c", "\\x\\y": "x/y"} {
		got, err := CleanName(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got)
	}
	for _, in := range []string{"..", "../x", "a/../../x", "/", "", "a\x00b"} {
		_, err := CleanName(in)
		assert.ErrorIs(t, err, ErrOutside, in)
	}
}

func FuzzCleanName(f *testing.F) {
	for _, s := range []string{"pxelinux.0", "/pxelinux.cfg/01-52-54-00-12-34-56", "../etc/passwd", "a\\..\\..\\b", "x/./y//z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		got, err := CleanName(name)
		if err != nil {
			return
		}
		if !filepath.IsLocal(got) {
			t.Fatalf("CleanName(%q) = %q is not local", name, got)
		}
	})
}
