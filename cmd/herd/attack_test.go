package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// vmHWM reads the peak resident set of process pid (VmHWM, bytes).
func vmHWM(pid int) (int64, bool) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
}

// A real herd recv keeps to its --memory plus a small constant whatever
// peers send: a flood of connections announcing huge Hellos, silent ones,
// wrong-key handshakes, garbage; then a real session goes through it, and
// its peak RSS stays bounded.
func TestRecvMemoryBoundedUnderAttack(t *testing.T) {
	const memory = 16 << 20
	// What a herd recv process holds besides its chunk memory: the Go
	// runtime, the binary, buffers of the handshakes and the session.
	const overhead = 24 << 20
	rs := startReceivers(t, 1, "--memory", "16M")
	r := rs[0]
	pid := r.cmd.Process.Pid
	var peak atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			if v, ok := vmHWM(pid); ok {
				peak.Store(max(peak.Load(), v))
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { close(stop); wg.Wait() })

	// The flood: 60 peers each announcing and sending a 16 MiB Hello,
	// 150 silent ones, 20 sending garbage.
	hello := make([]byte, 16<<20)
	copy(hello, []byte{'h', 'd', 1, 0})
	binary.LittleEndian.PutUint32(hello[4:], 16<<20-8)
	var conns []net.Conn
	var mu sync.Mutex
	var fw sync.WaitGroup
	for i := 0; i < 230; i++ {
		c, err := net.Dial("tcp", r.addr)
		if err != nil {
			continue // the backlog may be full: refused is fine too
		}
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
		switch {
		case i < 60:
			fw.Add(1)
			go func() {
				defer fw.Done()
				_ = c.SetWriteDeadline(time.Now().Add(6 * time.Second))
				c.Write(hello)
			}()
		case i < 80:
			c.Write(bytes.Repeat([]byte("GARBAGE "), 8192))
		}
	}
	fw.Wait()
	time.Sleep(6 * time.Second) // past the handshake deadline
	for _, c := range conns {
		c.Close()
	}

	// A real session still goes through, within the bound.
	src := filepath.Join(t.TempDir(), "img")
	writeRandom(t, src, 128<<20, 5)
	out, err := exec.Command(herdBin, keyed("send", "--to", r.addr, "--in", src, "--out", "/img")...).CombinedOutput()
	require.NoError(t, err, "%s", out)
	<-r.exited
	require.NoError(t, r.err, "%s", r.stderr.String())
	got, want := filepath.Join(r.root, "img"), src
	assert.Equal(t, sha256File(t, want), sha256File(t, got))
	p := peak.Load()
	require.Positive(t, p, "VmHWM was read")
	t.Logf("herd recv --memory 16M: peak RSS %d MiB after %d hostile connections and a 128 MiB session", p>>20, len(conns))
	assert.LessOrEqual(t, p, int64(memory+overhead), "peak RSS %d MiB exceeds --memory 16M + %d MiB", p>>20, overhead>>20)
}
