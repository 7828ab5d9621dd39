// Command bench runs herd against its peers, side by side in one run, on a
// harness cluster: for N = 2, 4, 8, 16 nodes it clones the same golden image
// to every node's disk with
//
//   - herd: herd recv in every node, herd send --to … from golden (chain);
//   - udpcast: udp-receiver in every node, udp-sender in golden (multicast
//     on the bridge);
//   - naive: a plain TCP copy from golden to one node after the other (a
//     tiny Go copier built into this command, fsync at the end);
//
// once on unshaped links and once on links shaped to -rate (TBF, 500 Mbit/s
// by default, in both directions on every node's link). Every run is
// verified (sha256 of every node's disk against the image).
//
// It prints a table, and writes results/bench.csv and results/bench.png
// (completion time against N, per tool and link; gnuplot needed for the
// PNG). Ratios are completion time of the tool / completion time of herd in
// the same conditions; herd's efficiency is its achieved rate per node
// divided by the link rate. Peak memory is the largest VmHWM (rusage
// maxrss) of any herd recv.
//
// Usage (root, from the repository root):
//
//	go run ./bench -results results
//	go run ./bench -results results -nodes 2,4 -size 64M -tools herd,naive
package main

import (
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/herd-cluster/herd/harness"
)

type options struct {
	results string
	nodes   []int
	size    int64
	rate    uint64
	tools   []string
	herd    string
	timeout time.Duration
}

// row is one measured run.
type row struct {
	Tool     string
	Nodes    int
	Rate     uint64 // bits per second, 0 = unshaped
	Seconds  float64
	OK       bool
	Err      string
	PeakRSS  int64 // bytes, herd only
	Ratio    float64
	Eff      float64
	MBpsNode float64
}

func main() {
	if len(os.Args) > 1 && strings.HasPrefix(os.Args[1], "copier-") {
		if err := copier(os.Args[1], os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	nodes := fs.String("nodes", "2,4,8,16", "node counts to measure")
	size := fs.String("size", "128M", "size of the golden image")
	rate := fs.String("rate", "500mbit", "link rate of the shaped runs")
	tools := fs.String("tools", "herd,udpcast,naive", "tools to run")
	fs.StringVar(&o.results, "results", "results", "folder for bench.csv and bench.png")
	fs.StringVar(&o.herd, "herd", "", "herd binary (default: build ./cmd/herd)")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "limit for one run")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	for _, s := range strings.Split(*nodes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 240 {
			return o, fmt.Errorf("-nodes: %q is not a node count", s)
		}
		o.nodes = append(o.nodes, n)
	}
	var err error
	if o.size, err = harness.ParseSize(*size); err != nil {
		return o, fmt.Errorf("-size: %w", err)
	}
	if o.rate, err = harness.ParseRate(*rate); err != nil || o.rate == 0 {
		return o, fmt.Errorf("-rate %q: want a rate like 500mbit", *rate)
	}
	for _, t := range strings.Split(*tools, ",") {
		switch t = strings.TrimSpace(t); t {
		case "herd", "udpcast", "naive":
			o.tools = append(o.tools, t)
		default:
			return o, fmt.Errorf("-tools: unknown tool %q (herd, udpcast, naive)", t)
		}
	}
	return o, nil
}

func run(o options) error {
	if err := harness.Available(); err != nil {
		return fmt.Errorf("bench needs the harness (root): %w", err)
	}
	work, err := os.MkdirTemp("/var/tmp", "herd-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	// Ctrl-C or SIGTERM: take the cluster down and remove the image.
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigc
		harness.CloseAll()
		os.RemoveAll(work)
		fmt.Fprintln(os.Stderr, "bench: interrupted, cluster removed")
		os.Exit(130)
	}()
	if o.herd == "" {
		o.herd = filepath.Join(work, "herd")
		if out, err := exec.Command("go", "build", "-o", o.herd, "./cmd/herd").CombinedOutput(); err != nil {
			return fmt.Errorf("build herd: %w\n%s", err, out)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	golden := filepath.Join(work, "golden.img")
	if err := writeRandom(golden, o.size); err != nil {
		return err
	}
	want, err := sha256Prefix(golden, o.size)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.results, 0o755); err != nil {
		return err
	}
	fmt.Printf("bench: %d MiB image, nodes %v, links unshaped and %g Mbit/s, tools %v\n", o.size>>20, o.nodes, float64(o.rate)/1e6, o.tools)

	var rows []row
	for _, n := range o.nodes {
		c, err := harness.New(context.Background(), harness.Config{Nodes: n, DiskSize: o.size})
		if err != nil {
			return fmt.Errorf("cluster of %d: %w", n, err)
		}
		for _, rate := range []uint64{0, o.rate} {
			for _, nd := range c.Nodes() {
				if err := nd.SetRate(rate); err != nil {
					c.Close()
					return err
				}
			}
			for _, tool := range o.tools {
				r := measure(c, o, tool, rate, golden, want, self)
				fmt.Printf("  %-8s N=%-3d %-10s %7.2f s  ok=%v %s\n", r.Tool, r.Nodes, rateName(rate), r.Seconds, r.OK, r.Err)
				rows = append(rows, r)
			}
		}
		if err := c.Close(); err != nil {
			return err
		}
	}
	derive(rows, o.size)
	printTable(os.Stdout, rows)
	csvPath := filepath.Join(o.results, "bench.csv")
	if err := writeCSV(csvPath, rows); err != nil {
		return err
	}
	fmt.Println("wrote", csvPath)
	png := filepath.Join(o.results, "bench.png")
	if err := plot(rows, png, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench: no plot:", err)
	} else {
		fmt.Println("wrote", png)
	}
	return nil
}

func rateName(r uint64) string {
	if r == 0 {
		return "unshaped"
	}
	return fmt.Sprintf("%gMbit", float64(r)/1e6)
}

// measure wipes every node's disk, runs one tool and verifies the result.
func measure(c *harness.Cluster, o options, tool string, rate uint64, golden, want, self string) row {
	r := row{Tool: tool, Nodes: len(c.Nodes()), Rate: rate}
	for _, n := range c.Nodes() {
		if out, err := exec.Command("blkdiscard", n.Disk()).CombinedOutput(); err != nil {
			r.Err = fmt.Sprintf("wipe %s: %v %s", n.Name(), err, out)
			return r
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	var err error
	switch tool {
	case "herd":
		r.Seconds, r.PeakRSS, err = runHerd(ctx, c, o.herd, golden)
	case "udpcast":
		r.Seconds, err = runUDPCast(ctx, c, golden)
	case "naive":
		r.Seconds, err = runNaive(ctx, c, self, golden)
	}
	if err != nil {
		r.Err = err.Error()
		return r
	}
	for _, n := range c.Nodes() {
		got, err := sha256Prefix(n.Disk(), o.size)
		if err != nil || got != want {
			r.Err = fmt.Sprintf("%s: disk differs from the image", n.Name())
			return r
		}
	}
	r.OK = true
	return r
}

// waitAll waits for every process and returns the failures.
func waitAll(ps []*harness.Proc) error {
	return waitGrace(ps, 0)
}

// waitGrace is waitAll, but with grace > 0 a process still running grace
// after the call is killed and reported (a receiver left waiting when its
// sender has given up).
func waitGrace(ps []*harness.Proc, grace time.Duration) error {
	var errs []error
	var deadline <-chan time.Time
	if grace > 0 {
		deadline = time.After(grace)
	}
	for _, p := range ps {
		select {
		case <-p.Done():
		case <-deadline:
			for _, q := range ps {
				_ = q.Kill()
			}
			errs = append(errs, fmt.Errorf("pid %d still ran %v after the sender ended", p.Pid(), grace))
			deadline = nil
		}
		if err := p.Wait(); err != nil {
			errs = append(errs, fmt.Errorf("pid %d: %w: %s", p.Pid(), err, lastLine(p.Stderr())))
		}
	}
	return errors.Join(errs...)
}

// nodeErrors lists the per-node errors of herd's JSON summary.
func nodeErrors(stdout []byte) string {
	var s struct {
		Nodes []struct {
			Addr  string `json:"addr"`
			State string `json:"state"`
			Error string `json:"error"`
		} `json:"nodes"`
	}
	if json.Unmarshal([]byte(lastLine(stdout)), &s) != nil {
		return ""
	}
	var b strings.Builder
	for _, n := range s.Nodes {
		if n.Error != "" {
			fmt.Fprintf(&b, "; %s %s: %s", n.Addr, n.State, n.Error)
		}
	}
	return b.String()
}

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

func runHerd(ctx context.Context, c *harness.Cluster, herd, golden string) (float64, int64, error) {
	var recvs []*harness.Proc
	var to []string
	for _, n := range c.Nodes() {
		p, err := n.Start(ctx, herd, "recv", "--listen", ":9998")
		if err != nil {
			return 0, 0, err
		}
		recvs = append(recvs, p)
		to = append(to, n.Addr().String())
	}
	start := time.Now()
	send, err := c.Golden().Start(ctx, herd, "send", "--to", strings.Join(to, ","), "--in", golden, "--out", harness.NodeDisk, "--json")
	if err != nil {
		return 0, 0, err
	}
	serr := send.Wait()
	rerr := waitGrace(recvs, 20*time.Second)
	secs := time.Since(start).Seconds()
	if serr != nil {
		return 0, 0, fmt.Errorf("herd send: %w: %s%s", serr, lastLine(send.Stderr()), nodeErrors(send.Stdout()))
	}
	if rerr != nil {
		return 0, 0, fmt.Errorf("herd recv: %w", rerr)
	}
	var peak int64
	for _, p := range recvs {
		peak = max(peak, p.MaxRSS())
	}
	return secs, peak, nil
}

func runUDPCast(ctx context.Context, c *harness.Cluster, golden string) (float64, error) {
	var recvs []*harness.Proc
	for _, n := range c.Nodes() {
		p, err := n.Start(ctx, "udp-receiver", "--file", harness.NodeDisk, "--interface", "eth0", "--nokbd", "--sync", "--no-progress")
		if err != nil {
			return 0, err
		}
		recvs = append(recvs, p)
	}
	start := time.Now()
	send, err := c.Golden().Start(ctx, "udp-sender", "--file", golden, "--interface", "br0",
		"--min-receivers", strconv.Itoa(len(recvs)), "--max-wait", "30", "--nokbd", "--no-progress")
	if err != nil {
		return 0, err
	}
	serr := send.Wait()
	rerr := waitGrace(recvs, 20*time.Second)
	secs := time.Since(start).Seconds()
	if serr != nil {
		return 0, fmt.Errorf("udp-sender: %w: %s", serr, lastLine(send.Stderr()))
	}
	if rerr != nil {
		return 0, fmt.Errorf("udp-receiver: %w", rerr)
	}
	return secs, nil
}

// runNaive copies to one node after the other with the built-in copier.
func runNaive(ctx context.Context, c *harness.Cluster, self, golden string) (float64, error) {
	start := time.Now()
	for _, n := range c.Nodes() {
		recv, err := n.Start(ctx, self, "copier-recv", ":9100", harness.NodeDisk)
		if err != nil {
			return 0, err
		}
		send, err := c.Golden().Start(ctx, self, "copier-send", net.JoinHostPort(n.Addr().String(), "9100"), golden)
		if err != nil {
			return 0, err
		}
		if err := waitAll([]*harness.Proc{send, recv}); err != nil {
			return 0, fmt.Errorf("copy to %s: %w", n.Name(), err)
		}
	}
	return time.Since(start).Seconds(), nil
}

// copier is the naive peer: copier-recv LISTEN FILE takes one connection
// and writes it to FILE (then fsync); copier-send ADDR FILE sends FILE.
func copier(mode string, args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("%s: want 2 arguments", mode)
	}
	switch mode {
	case "copier-recv":
		l, err := net.Listen("tcp", args[0])
		if err != nil {
			return err
		}
		conn, err := l.Accept()
		if err != nil {
			return err
		}
		f, err := os.OpenFile(args[1], os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, conn); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		_, err = conn.Write([]byte{1}) // done: the sender may stop its clock
		return err
	case "copier-send":
		var conn net.Conn
		var err error
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if conn, err = net.Dial("tcp", args[0]); err == nil {
				break
			}
		}
		if err != nil {
			return err
		}
		f, err := os.Open(args[1])
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.Copy(conn, f); err != nil {
			return err
		}
		if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
			return err
		}
		ack := make([]byte, 1)
		if _, err := io.ReadFull(conn, ack); err != nil {
			return fmt.Errorf("no completion from %s: %w", args[0], err)
		}
		return nil
	}
	return fmt.Errorf("unknown mode %q", mode)
}

// derive fills ratios against herd, efficiency and per-node rate.
func derive(rows []row, size int64) {
	herd := map[[2]uint64]float64{}
	for _, r := range rows {
		if r.Tool == "herd" && r.OK {
			herd[[2]uint64{uint64(r.Nodes), r.Rate}] = r.Seconds
		}
	}
	for i := range rows {
		r := &rows[i]
		if !r.OK || r.Seconds <= 0 {
			continue
		}
		r.MBpsNode = float64(size) / r.Seconds / 1e6
		if h := herd[[2]uint64{uint64(r.Nodes), r.Rate}]; h > 0 {
			r.Ratio = r.Seconds / h
		}
		if r.Rate > 0 {
			r.Eff = float64(size) * 8 / r.Seconds / float64(r.Rate)
		}
	}
}

func printTable(w io.Writer, rows []row) {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "tool\tnodes\tlink\tseconds\tMB/s per node\ttime / herd\trate / link\therd peak RSS MiB\tverified\t")
	for _, r := range rows {
		ratio, eff, rss := "-", "-", "-"
		if r.Ratio > 0 {
			ratio = fmt.Sprintf("%.2f", r.Ratio)
		}
		if r.Eff > 0 {
			eff = fmt.Sprintf("%.0f%%", r.Eff*100)
		}
		if r.PeakRSS > 0 {
			rss = fmt.Sprintf("%.1f", float64(r.PeakRSS)/(1<<20))
		}
		ok := "yes"
		if !r.OK {
			ok = "FAILED"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%.2f\t%.1f\t%s\t%s\t%s\t%s\t\n", r.Tool, r.Nodes, rateName(r.Rate), r.Seconds, r.MBpsNode, ratio, eff, rss, ok)
	}
	tw.Flush()
	for _, r := range rows {
		if r.Err != "" {
			fmt.Fprintf(w, "%s N=%d %s: %s\n", r.Tool, r.Nodes, rateName(r.Rate), r.Err)
		}
	}
}

func writeCSV(path string, rows []row) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	_ = w.Write([]string{"tool", "nodes", "rate_bits", "seconds", "mb_per_s_per_node", "time_vs_herd", "efficiency", "peak_rss_bytes", "ok", "error"})
	for _, r := range rows {
		_ = w.Write([]string{r.Tool, strconv.Itoa(r.Nodes), strconv.FormatUint(r.Rate, 10),
			fmt.Sprintf("%.3f", r.Seconds), fmt.Sprintf("%.2f", r.MBpsNode), fmt.Sprintf("%.3f", r.Ratio),
			fmt.Sprintf("%.3f", r.Eff), strconv.FormatInt(r.PeakRSS, 10), strconv.FormatBool(r.OK), r.Err})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// plot draws completion time against N, one line per tool and link.
func plot(rows []row, png string, o options) error {
	gp, err := exec.LookPath("gnuplot")
	if err != nil {
		return fmt.Errorf("gnuplot not installed: %w", err)
	}
	var plots []string
	var data strings.Builder
	for _, rate := range []uint64{0, o.rate} {
		for _, tool := range o.tools {
			var pts []string
			for _, r := range rows {
				if r.Tool == tool && r.Rate == rate && r.OK {
					pts = append(pts, fmt.Sprintf("%d %.3f", r.Nodes, r.Seconds))
				}
			}
			if len(pts) == 0 {
				continue
			}
			plots = append(plots, fmt.Sprintf("'-' using 1:2 with linespoints linewidth 2 title '%s %s'", tool, rateName(rate)))
			data.WriteString(strings.Join(pts, "\n") + "\ne\n")
		}
	}
	if len(plots) == 0 {
		return errors.New("no successful run to plot")
	}
	script := fmt.Sprintf(`set terminal png size 900,600
set output '%s'
set key top left
set title 'Completion time to clone %d MiB to N nodes (lower is better)'
set xlabel 'nodes (N)'
set ylabel 'seconds'
set logscale x 2
set xrange [1.5:*]
set yrange [0:*]
set grid
plot %s
%s`, png, o.size>>20, strings.Join(plots, ", "), data.String())
	cmd := exec.Command(gp)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("gnuplot: %w: %s", err, out)
	}
	return nil
}

func writeRandom(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	r := rand.NewChaCha8([32]byte{'h', 'e', 'r', 'd'})
	if _, err := io.CopyN(f, r, size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func sha256Prefix(path string, n int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(h, f, n); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
