package ring

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/blockdev"
)

// fileSink opens items as herd recv does, with blockdev's file sink: a
// restarted receiver's Open must keep what the file holds (Item.Keep).
func fileSink(dir string) func(Item) (Sink, error) {
	return func(it Item) (Sink, error) {
		p := filepath.Join(dir, filepath.Base(it.Dest))
		s, err := blockdev.OpenSink(p, it.Size, blockdev.SinkOptions{Keep: it.Keep})
		if err != nil {
			return nil, err
		}
		return WithReadBack(s, p), nil
	}
}

// proc is a receiver process.
type proc struct {
	cmd  *exec.Cmd
	out  strings.Builder
	err  error
	done chan struct{} // closed when it exited (err set)
}

// TestHelperReceiverProcess is not a test: TestTCPKilledReceiverProcess
// runs the test binary as a receiver process through it.
func TestHelperReceiverProcess(t *testing.T) {
	addr, dir := os.Getenv("HERD_RING_HELPER_ADDR"), os.Getenv("HERD_RING_HELPER_DIR")
	if addr == "" {
		t.Skip("helper process for TestTCPKilledReceiverProcess")
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		os.Exit(3)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := Receive(ctx, l, ReceiverConfig{Key: testKey, Open: fileSink(dir), StateDir: dir, DeadTimeout: testDead, UpstreamWait: testDead,
		MemoryLimit: 1 << 20, Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }})
	if err != nil || st.State != StateDone {
		fmt.Fprintln(os.Stderr, "receive:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// TestTCPKilledReceiverProcess: receiver 1 is a real process, killed with
// SIGKILL a third into the stream and started again with the same state
// directory; it ends verified, sent only what it lacked.
func TestTCPKilledReceiverProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	const total = 24 << 20
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close()
	start := func() *proc {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperReceiverProcess$", "-test.v")
		cmd.Env = append(os.Environ(), "HERD_RING_HELPER_ADDR="+addr, "HERD_RING_HELPER_DIR="+dir)
		p := &proc{cmd: cmd, done: make(chan struct{})}
		cmd.Stdout, cmd.Stderr = &p.out, &p.out
		require.NoError(t, cmd.Start())
		go func() { p.err = cmd.Wait(); close(p.done) }()
		t.Cleanup(func() { cmd.Process.Kill(); <-p.done; t.Logf("receiver process:\n%s", p.out.String()) })
		return p
	}
	first := start()
	var sent atomic.Int64
	dial := func(ctx context.Context, network, a string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, a)
		if err == nil && a == addr {
			return countConn{conn, &sent}, nil
		}
		return conn, err
	}
	c := startCluster(t, 3, func(i int, rc *ReceiverConfig) {
		rc.Dial = dial
		if i == 2 {
			// The last node keeps the session going past the restart.
			rc.Open = func(it Item) (Sink, error) { return &slowSink{delay: 4 * time.Millisecond}, nil }
		}
	})
	nodes := []string{c.addrs[0], addr, c.addrs[1], c.addrs[2]}
	// Kill the process once a third is on its disk, then start it again.
	restarted := make(chan *proc, 1)
	go func() {
		out := filepath.Join(dir, "a")
		for {
			// The file has its full size at once: count what is on disk.
			if fi, err := os.Stat(out); err == nil && fi.Sys().(*syscall.Stat_t).Blocks*512 >= total/3 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		first.cmd.Process.Signal(syscall.SIGKILL)
		<-first.done
		sent.Store(0)
		restarted <- start()
	}()
	a := randomData(71, total)
	rep, err := Send(context.Background(), SenderConfig{Key: testKey, Nodes: nodes, DeadTimeout: testDead, ChunkSize: 64 << 10, MemoryLimit: 1 << 20,
		Items: []SendItem{bytesItem("a", a)}, Dial: dial, Rejoin: 200 * time.Millisecond, Slow: SlowWait})
	require.NoError(t, err)
	require.True(t, rep.OK(), "%+v", rep.Nodes)
	var second *proc
	select {
	case second = <-restarted:
	case <-time.After(30 * time.Second):
		t.Fatal("the receiver was not restarted")
	}
	select {
	case <-second.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the restarted receiver did not end")
	}
	require.NoError(t, second.err, "the restarted receiver process ends verified")
	got, err := os.ReadFile(filepath.Join(dir, "a"))
	require.NoError(t, err)
	assert.Equal(t, b3hex(a), b3hex(got))
	t.Logf("bytes sent to the restarted process: %d of %d", sent.Load(), total)
	assert.Less(t, sent.Load(), int64(total)*3/4, "the restarted process did not receive everything again")
	for i := range c.addrs {
		require.NoError(t, c.wait(i).err)
	}
}
