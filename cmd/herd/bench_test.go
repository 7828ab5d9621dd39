package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkLoopbackClone8 clones a 1 GiB file to 8 herd recv processes on
// loopback and, in the same run, copies the same file once with a plain
// read/write/fsync loop. It reports both rates and their ratio: on one box
// the 8 receivers share the CPU and the disk, so a ratio near 1 means the
// chain adds almost nothing over a single local copy (per node).
//
//	go test -run '^$' -bench LoopbackClone8 -benchtime 1x ./cmd/herd
func BenchmarkLoopbackClone8(b *testing.B) {
	const size = 1 << 30
	dir := b.TempDir()
	src := filepath.Join(dir, "golden.img")
	writeRandom(b, src, size, 99)
	for i := 0; i < b.N; i++ {
		copyDst := filepath.Join(dir, "copy.img")
		start := time.Now()
		plainCopy(b, src, copyDst)
		copySecs := time.Since(start).Seconds()
		os.Remove(copyDst)

		rs := startReceivers(b, 8)
		start = time.Now()
		cmd := exec.Command(herdBin, keyed("send", "--to", addrs(rs), "--in", src, "--out", "/golden.img", "--json")...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			b.Fatalf("herd send: %v\n%s", err, out.String())
		}
		herdSecs := time.Since(start).Seconds()
		for _, r := range rs {
			<-r.exited
			if r.err != nil {
				b.Fatalf("recv %s: %v\n%s", r.addr, r.err, r.stderr.String())
			}
			os.RemoveAll(r.root)
		}
		b.ReportMetric(size/herdSecs/1e6, "herd-MB/s/node")
		b.ReportMetric(size/copySecs/1e6, "copy-MB/s")
		b.ReportMetric(copySecs/herdSecs, "herd/copy-rate")
		b.Logf("herd to 8 receivers: %.1f MB/s per node (%.1f MB/s written in total); plain single copy: %.1f MB/s; ratio herd/copy %.2f",
			size/herdSecs/1e6, 8*size/herdSecs/1e6, size/copySecs/1e6, copySecs/herdSecs)
	}
}

func plainCopy(b *testing.B, src, dst string) {
	in, err := os.Open(src)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	if _, err := io.CopyBuffer(out, in, make([]byte, 4<<20)); err != nil {
		b.Fatal(err)
	}
	if err := out.Sync(); err != nil {
		b.Fatal(err)
	}
}
