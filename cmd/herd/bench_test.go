package main

import (
	"bytes"
	"fmt"
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

// BenchmarkEncryptionCost clones the same file over loopback to 2 and to 8
// herd recv processes, keyed (every hop sealed, chunks sealed once by the
// source) and --insecure (in clear), alternating, and reports for both the
// rate per node and the CPU (user+sys, from the processes' rusage) per GiB
// per node, and keyed/insecure ratios. Receivers write to tmpfs
// (/dev/shm) so the host disk is not what is measured. On one box every
// process shares the same 2 cores: the rates measure CPU, which is what
// sealing costs.
//
//	go test -run '^$' -bench EncryptionCost -benchtime 1x ./cmd/herd
func BenchmarkEncryptionCost(b *testing.B) {
	const size = 512 << 20
	shm, err := os.MkdirTemp("/dev/shm", "herd-bench-crypto-")
	if err != nil {
		b.Skipf("no /dev/shm: %v", err)
	}
	b.Cleanup(func() { os.RemoveAll(shm) })
	src := filepath.Join(shm, "golden.img")
	writeRandom(b, src, size, 7)
	gib := float64(size) / (1 << 30)
	for i := 0; i < b.N; i++ {
		for _, n := range []int{2, 8} {
			var rate, cpu [2]float64 // keyed, insecure: best of 3
			for round := 0; round < 3; round++ {
				for mode, flag := range []string{"--key-file", "--insecure"} {
					var extra []string
					if flag == "--key-file" {
						extra = []string{"--key-file", chainKey}
					} else {
						extra = []string{"--insecure"}
					}
					rs := startReceiversIn(b, n, shm, extra...)
					start := time.Now()
					cmd := exec.Command(herdBin, append([]string{"send", "--to", addrs(rs), "--in", src, "--out", "/golden.img", "--json"}, extra...)...)
					var out bytes.Buffer
					cmd.Stdout, cmd.Stderr = &out, &out
					if err := cmd.Run(); err != nil {
						b.Fatalf("herd send: %v\n%s", err, out.String())
					}
					secs := time.Since(start).Seconds()
					var recvCPU float64
					for _, r := range rs {
						<-r.exited
						if r.err != nil {
							b.Fatalf("recv %s: %v\n%s", r.addr, r.err, r.stderr.String())
						}
						st := r.cmd.ProcessState
						recvCPU += (st.UserTime() + st.SystemTime()).Seconds()
						os.RemoveAll(r.root)
					}
					mbps := size / secs / 1e6
					perNode := recvCPU / float64(n) / gib
					b.Logf("N=%d %-9s %6.1f MB/s per node, herd recv %.2f core-s/GiB/node, herd send %.2f core-s/GiB",
						n, map[int]string{0: "keyed", 1: "insecure"}[mode], mbps, perNode,
						(cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime()).Seconds()/gib)
					if mbps > rate[mode] {
						rate[mode], cpu[mode] = mbps, perNode
					}
				}
			}
			b.ReportMetric(rate[0], fmt.Sprintf("keyed-MB/s/node-N%d", n))
			b.ReportMetric(rate[1], fmt.Sprintf("insecure-MB/s/node-N%d", n))
			b.ReportMetric(rate[0]/rate[1], fmt.Sprintf("keyed/insecure-rate-N%d", n))
			b.ReportMetric(cpu[0], fmt.Sprintf("keyed-cpu-s/GiB/node-N%d", n))
			b.ReportMetric(cpu[1], fmt.Sprintf("insecure-cpu-s/GiB/node-N%d", n))
			b.Logf("N=%d: keyed runs at %.0f %% of insecure (cost %.0f %%; target at N=2: at most 15 %%), CPU per GiB per node x%.2f",
				n, 100*rate[0]/rate[1], 100*(1-rate[0]/rate[1]), cpu[0]/cpu[1])
		}
	}
}
