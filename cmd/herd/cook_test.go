package main

import (
	"bytes"
	"compress/gzip"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/blockdev/tarstream"
	"github.com/herd-cluster/herd/internal/tartest"
)

// startSend runs herd send of one cooked item in the background; it is
// killed at the end of the test.
func startSend(t *testing.T, to, in, out string) (*exec.Cmd, chan error) {
	cmd := exec.Command(herdBin, keyed("send", "--to", to, "--in", in, "--out", out, "--cook", "--json")...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		if t.Failed() {
			t.Logf("send stderr:\n%s", stderr.String())
		}
	})
	return cmd, done
}

// The attack's tar (a 1 PiB PAX 1.0 sparse entry, 10 KiB) no longer
// spins the receiver: the session ends within seconds, whatever the
// target filesystem makes of such a file.
func TestRecvSparsePetabyteTar(t *testing.T) {
	arc := append(tartest.SparsePAX10("big", 1<<50, []tarstream.Fragment{{Off: 1<<50 - 10, Len: 10}}), tartest.End()...)
	src := filepath.Join(t.TempDir(), "evil.tar")
	require.NoError(t, os.WriteFile(src, arc, 0o644))
	r := startReceivers(t, 1)[0]
	start := time.Now()
	_, sent := startSend(t, r.addr, src, "/unpacked")
	select {
	case <-sent:
	case <-time.After(20 * time.Second):
		t.Fatal("herd send of a 10 KiB sparse tar still running after 20 s")
	}
	code := exitOf(t, r)
	t.Logf("session over in %s; recv exit %d: %s", time.Since(start), code, r.stderr.String())
	require.Contains(t, []int{ExitOK, ExitPartial}, code)
}

// SIGTERM during a cooked item ends herd recv within a second or two. The
// item is a tar.gz whose first entry is an 8 TiB sparse file (a receiver
// that read its holes as zeros spun for an hour and ignored the signal)
// and whose second is 8 GiB of zeros from 8 MiB of gzip (seconds of
// work): the signal comes while the cooker is busy with it.
func TestRecvSIGTERMDuringSparseTar(t *testing.T) {
	var st syscall.Statfs_t
	require.NoError(t, syscall.Statfs(os.TempDir(), &st))
	if free := int64(st.Bavail) * st.Bsize; free < 16<<30 {
		t.Skipf("%d bytes free in %s: the test needs 16 GiB", free, os.TempDir())
	}
	gz := func(b []byte) []byte {
		var z bytes.Buffer
		w, err := gzip.NewWriterLevel(&z, gzip.BestCompression)
		require.NoError(t, err)
		_, err = w.Write(b)
		require.NoError(t, err)
		require.NoError(t, w.Close())
		return z.Bytes()
	}
	head := append(tartest.SparsePAX10("big", 8<<40, []tarstream.Fragment{{Off: 8<<40 - 10, Len: 10}}),
		tartest.Block("zeros", '0', 8<<30, 0o644, false)...)
	arc := append(gz(head), bytes.Repeat(gz(make([]byte, 1<<20)), 8<<10)...) // gzip members read as one stream
	src := filepath.Join(t.TempDir(), "evil.tar.gz")
	require.NoError(t, os.WriteFile(src, arc, 0o644))

	r := startReceivers(t, 1)[0]
	startSend(t, r.addr, src, "/unpacked")
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(r.root, "unpacked/zeros")); err == nil {
			break // past the sparse entry, busy with the zeros
		}
		select {
		case <-r.exited:
			t.Fatalf("recv ended before the signal: %s", r.stderr.String())
		default:
		}
		require.True(t, time.Now().Before(deadline), "the cooker never reached the second entry")
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	select {
	case <-r.exited:
		t.Fatalf("recv ended before the signal: %s", r.stderr.String())
	default:
	}
	require.NoError(t, r.cmd.Process.Signal(syscall.SIGTERM))
	start := time.Now()
	select {
	case <-r.exited:
		t.Logf("recv ended %s after SIGTERM: %v", time.Since(start), r.err)
	case <-time.After(2 * time.Second):
		t.Fatalf("recv still running 2 s after SIGTERM during a cooked item")
	}
}
