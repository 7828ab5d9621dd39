package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/herd-cluster/herd/harness"
	"github.com/herd-cluster/herd/ring/report"
)

// herdEvent is a `herd send --json` line (package report).
type herdEvent = report.Event

// herdRun is what one herd clone measured.
type herdRun struct {
	Wall     float64 // s: herd send started → every herd recv exited
	Session  float64 // s: herd send's own elapsed time (summary "seconds")
	Data     float64 // s: the slowest node's data phase, 0 if unknown
	FirstAt  float64 // s after the start when the slowest node had read 1 MiB
	LastAt   float64 // s after the start when it had read every byte (/proc/<pid>/io rchar)
	RecvCPU  []float64
	SendCPU  float64
	HerdCPU  float64 // exact user+sys of send and every recv (rusage)
	Busy     float64 // core-seconds the whole machine was busy during the run
	PeakRSS  []int64
	Summary  herdEvent
	Survived int     // nodes done in the summary
	KilledAt float64 // fraction of the item the victim had read when killed (-1: never killed)
	KillTime float64 // s after the start when it was killed
}

// parseHerdEvents reads the JSON lines of herd send's stdout; lines that
// are not JSON events are skipped.
func parseHerdEvents(out []byte) []herdEvent {
	var evs []herdEvent
	_ = report.Scan(bytes.NewReader(out), func(ev *report.Event) error {
		evs = append(evs, *ev)
		return nil
	})
	return evs
}

// herdOpts are the extras of one herd run.
type herdOpts struct {
	in       string   // what herd send reads (default: the golden image)
	sendArgs []string // more flags for herd send
	// kill > 0 kills every process of node kill (1-based, harness Kill:
	// SIGKILL) once its herd recv has read killAt of the item (its rchar
	// in /proc/<pid>/io, checked every 20 ms); that node's failure is
	// expected and the run counts the survivors.
	kill   int
	killAt float64
	// insecure runs send and every recv with --insecure instead of a
	// key: only for a deliberate unkeyed baseline (herd's default and
	// every other run is keyed, as on a real cluster).
	insecure bool
}

// runKey returns the key flags of one run: --key-file of a new key made
// with herd key new (removed by done), or --insecure.
func runKey(herd string, insecure bool) (flags []string, done func(), err error) {
	if insecure {
		return []string{"--insecure"}, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "herd-bench-key-")
	if err != nil {
		return nil, nil, err
	}
	done = func() { os.RemoveAll(dir) }
	k := dir + "/key"
	if out, err := exec.Command(herd, "key", "new", k).CombinedOutput(); err != nil {
		done()
		return nil, nil, fmt.Errorf("herd key new: %v: %s", err, out)
	}
	return []string{"--key-file", k}, done, nil
}

func runHerd(ctx context.Context, c *harness.Cluster, herd, golden string, o herdOpts) (herdRun, error) {
	var r herdRun
	var recvs []*harness.Proc
	var to []string
	key, done, err := runKey(herd, o.insecure)
	if err != nil {
		return r, err
	}
	defer done()
	cpu0 := childrenCPU()
	for _, n := range c.Nodes() {
		p, err := n.Start(ctx, herd, append([]string{"recv", "--listen", ":9998", "--allow", harness.NodeDisk}, key...)...)
		if err != nil {
			return r, err
		}
		recvs = append(recvs, p)
		to = append(to, n.Addr().String())
	}
	var pids []int
	for _, p := range recvs {
		pids = append(pids, p.Pid())
	}
	// The clock starts once every node waits for the session, as booted
	// nodes do in a real deployment: process start-up is not measured.
	if err := waitBound(pids, "tcp", []int{9998}, "0A", 30*time.Second); err != nil {
		return r, err
	}
	busy0 := machineBusy()
	start := time.Now()
	in := golden
	if o.in != "" {
		in = o.in
	}
	args := append(append([]string{"send", "--to", strings.Join(to, ","), "--in", in, "--out", harness.NodeDisk, "--json"}, key...), o.sendArgs...)
	send, err := c.Golden().Start(ctx, herd, args...)
	if err != nil {
		return r, err
	}
	// A receiver's data phase: from reading more than 1 MiB (the
	// handshake is far less) to having read the whole item.
	size := int64(0)
	if st, err := os.Stat(in); err == nil {
		size = st.Size()
	}
	if size <= 0 {
		if f, err := os.Open(in); err == nil {
			size, _ = f.Seek(0, io.SeekEnd)
			f.Close()
		}
	}
	samp := sampleProcs(append(pids, send.Pid()), start, 50*time.Millisecond, 1<<20, size)
	type killed struct{ frac, at float64 }
	killc := make(chan killed, 1)
	if o.kill > 0 {
		victim, vp := c.Nodes()[o.kill-1], recvs[o.kill-1]
		go func() {
			t := time.NewTicker(20 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-send.Done():
					killc <- killed{-1, 0}
					return
				case <-t.C:
				}
				b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", vp.Pid()))
				if err != nil {
					continue
				}
				n, err := parseProcIO(b)
				if err != nil || size <= 0 || float64(n) < o.killAt*float64(size) {
					continue
				}
				at := time.Since(start).Seconds()
				_ = victim.Kill()
				killc <- killed{float64(n) / float64(size), at}
				return
			}
		}()
	}
	serr := send.Wait()
	if o.kill > 0 {
		k := <-killc
		r.KilledAt, r.KillTime = k.frac, k.at
	}
	live := recvs
	if o.kill > 0 {
		live = append(append([]*harness.Proc(nil), recvs[:o.kill-1]...), recvs[o.kill:]...)
	}
	rerr := waitGrace(live, 20*time.Second)
	if o.kill > 0 {
		_ = recvs[o.kill-1].Wait()
	}
	r.Wall = time.Since(start).Seconds()
	seen := samp.Stop()
	r.HerdCPU, r.Busy = childrenCPU()-cpu0, machineBusy()-busy0
	for _, pid := range pids {
		p := seen[pid]
		r.RecvCPU = append(r.RecvCPU, p.CPU)
		// The data phase is the slowest node's: the one that had every
		// byte last (a killed node never has).
		if p.lastSeen && p.Last.Seconds() > r.LastAt {
			r.FirstAt, r.LastAt = p.First.Seconds(), p.Last.Seconds()
		}
	}
	r.SendCPU = seen[send.Pid()].CPU
	for _, p := range recvs {
		r.PeakRSS = append(r.PeakRSS, p.MaxRSS())
	}
	evs := parseHerdEvents(send.Stdout())
	if len(evs) > 0 && evs[len(evs)-1].Event == "summary" {
		r.Summary = evs[len(evs)-1]
		r.Session = r.Summary.Seconds
		for _, n := range r.Summary.Nodes {
			if n.State == "done" {
				r.Survived++
			}
		}
	}
	if r.LastAt > r.FirstAt {
		r.Data = r.LastAt - r.FirstAt
	}
	if o.kill > 0 && serr != nil && r.Survived == len(recvs)-1 {
		serr = nil // the partial exit code the fault should cause
	}
	if serr != nil {
		return r, fmt.Errorf("herd send: %w: %s%s", serr, lastLine(send.Stderr()), nodeErrors(send.Stdout()))
	}
	if rerr != nil {
		return r, fmt.Errorf("herd recv: %w", rerr)
	}
	return r, nil
}
