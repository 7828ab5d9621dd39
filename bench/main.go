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
// once on unshaped links and once on links shaped to one rate (TBF, in both
// directions on every node's link). Every run is verified (sha256 of every
// node's disk against the image).
//
// The shaped rate is chosen by measurement unless -rate gives one: a
// calibration clone on 4 unshaped nodes measures the machine's busy
// core-seconds per byte per node (herd, kernel network and loop-device
// work, less the load that was there before), and the rate is the largest
// step that 16 nodes can sustain within -cpu-budget of the cores. The
// image is sized so the shaped transfer lasts about -seconds.
//
// Then, unless switched off: a fault run (issue #4: an 8-node shaped clone,
// one node killed at 40 %, survivors' time against the fault-free run) and
// a used-only run (issue #5: a 2 GiB ext4 golden disk with ~300 MB of files
// sent with --used-only against a full raw copy of the same disk).
//
// It prints a table and PASS/MISS against each target of the issues, and
// writes results/bench.csv and results/bench.png (completion time against
// N, per tool and link; gnuplot needed for the PNG). Ratios are completion
// time of the tool / completion time of herd in the same conditions. herd's
// efficiency is image bits / seconds / link rate, over the whole run
// (herd send started, every node already listening → every herd recv
// exited) and over the data phase alone (the slowest node's first to last
// byte, from its rchar in /proc/<pid>/io). Peak memory is each herd recv's
// VmHWM (rusage maxrss). A last section says where herd's shaped time
// goes: first byte against the pipeline fill of a store-and-forward chain
// (N × chunk / rate), data phase against the ideal, tail, and CPU demand.
//
// Usage (root, from the repository root):
//
//	go run ./bench -results results
//	go run ./bench -results results -nodes 2,4 -rate 200mbit -tools herd,naive -fault=false -used-only=false
//	go run ./bench soak -rounds 50   (make soak; see soak.go)
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/herd-cluster/herd/harness"
	"github.com/herd-cluster/herd/internal/units"
	"github.com/herd-cluster/herd/ring"
)

type options struct {
	results   string
	nodes     []int
	size      int64  // 0: auto (rate × seconds)
	rate      uint64 // 0: auto (calibration)
	extraRate uint64 // herd-only extra shaped row; 0: none
	seconds   float64
	budget    float64 // fraction of the cores the chosen rate may use
	naiveMax  int     // largest N for naive on shaped links
	tools     []string
	herd      string
	timeout   time.Duration
	fault     bool
	crypto    bool // add the encryption-cost runs (keyed against --insecure, N=2 and N=8, unshaped)
	usedOnly  bool
	usedNodes int
	diskDir   string // where the node disks of the main runs live
}

// row is one measured run.
type row struct {
	Tool      string
	Nodes     int
	Rate      uint64 // bits per second, 0 = unshaped
	Seconds   float64
	Data      float64 // herd: data phase seconds, 0 unknown
	First     float64 // herd: s to the slowest node's first byte
	Tail      float64 // herd: s from the slowest node's last byte to the end
	OK        bool
	Err       string
	PeakRSS   int64   // bytes, herd only: the largest herd recv
	CPUPerGiB float64 // herd only: mean herd recv CPU seconds per GiB
	Ratio     float64
	Eff       float64 // whole run
	EffData   float64 // data phase
	MBpsNode  float64
}

func main() {
	if len(os.Args) > 1 && strings.HasPrefix(os.Args[1], "copier-") {
		if err := copier(os.Args[1], os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "soak" {
		os.Exit(soakMain(os.Args[2:])) // the soak of issue #13: see soak.go
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
	size := fs.String("size", "auto", "size of the golden image (auto: the shaped rate × -seconds)")
	rate := fs.String("rate", "auto", "link rate of the shaped runs (auto: what a calibration run says 16 nodes can sustain)")
	extra := fs.String("extra-rate", "500mbit", "one more shaped rate, herd only (0: none)")
	tools := fs.String("tools", "herd,udpcast,naive", "tools to run")
	fs.Float64Var(&o.seconds, "seconds", 15, "shaped transfer time the auto image size aims at")
	fs.Float64Var(&o.budget, "cpu-budget", 0.75, "fraction of the cores 16 nodes may use at the auto rate")
	fs.IntVar(&o.naiveMax, "naive-max", 4, "largest N for naive on shaped links (it takes N × the one-node time)")
	fs.StringVar(&o.results, "results", "results", "folder for bench.csv and bench.png")
	fs.StringVar(&o.herd, "herd", "", "herd binary (default: build ./cmd/herd)")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "limit for one run")
	fs.BoolVar(&o.fault, "fault", true, "add the fault run (8 nodes, one killed at 40 %)")
	fs.BoolVar(&o.crypto, "crypto", true, "add the encryption-cost runs: keyed against --insecure, unshaped, on the 2- and 8-node clusters")
	fs.BoolVar(&o.usedOnly, "used-only", true, "add the used-only run (2 GiB ext4 disk, ~300 MB of files)")
	fs.IntVar(&o.usedNodes, "used-nodes", 4, "nodes of the used-only run")
	fs.StringVar(&o.diskDir, "disk-dir", "/dev/shm", "folder (tmpfs) for the node disks of the main runs, so one host disk shared by 16 nodes is not measured; empty: the harness default")
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
	if *size != "auto" {
		if o.size, err = units.ParseSize(*size); err != nil || o.size <= 0 {
			return o, fmt.Errorf("-size %q: want auto or a size like 256M (%s)", *size, units.SizeForms)
		}
	}
	if *rate != "auto" {
		if o.rate, err = units.ParseRate(*rate); err != nil || o.rate == 0 {
			return o, fmt.Errorf("-rate %q: want auto or a rate like 500mbit (%s)", *rate, units.RateForms)
		}
	}
	if o.extraRate, err = units.ParseRate(*extra); err != nil {
		return o, fmt.Errorf("-extra-rate %q: want 0 or a rate like 500mbit (%s)", *extra, units.RateForms)
	}
	if o.seconds <= 0 || o.budget <= 0 || o.budget > 1 {
		return o, fmt.Errorf("-seconds must be > 0 and -cpu-budget in (0, 1]")
	}
	if o.usedNodes < 1 || o.usedNodes > 240 {
		return o, fmt.Errorf("-used-nodes: %d is not a node count", o.usedNodes)
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

// env is what every part of a bench run shares.
type env struct {
	o      options
	work   string // temporary folder on disk (images, herd binary)
	self   string // this executable (the naive copier)
	golden string // the image file
	want   string // its sha256
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
	e := &env{o: o, work: work}
	// Ctrl-C or SIGTERM: take the clusters down and remove the images.
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigc
		harness.CloseAll()
		detachLoops()
		os.RemoveAll(work)
		fmt.Fprintln(os.Stderr, "bench: interrupted, clusters removed")
		os.Exit(130)
	}()
	defer detachLoops()
	if e.o.herd == "" {
		e.o.herd = filepath.Join(work, "herd")
		if out, err := exec.Command("go", "build", "-o", e.o.herd, "./cmd/herd").CombinedOutput(); err != nil {
			return fmt.Errorf("build herd: %w\n%s", err, out)
		}
	}
	if e.self, err = os.Executable(); err != nil {
		return err
	}
	if err := os.MkdirAll(o.results, 0o755); err != nil {
		return err
	}
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("bench: %d cores, load average %s", runtime.NumCPU(), load)

	// 1. The shaped rate: measured unless given.
	if e.o.rate == 0 {
		cal, err := calibrate(e)
		if err != nil {
			return fmt.Errorf("calibration: %w", err)
		}
		cal.print(os.Stdout, e.o)
		e.o.rate = cal.Rate
	} else {
		fmt.Printf("shaped rate %s (given with -rate)\n", rateName(e.o.rate))
	}
	if e.o.size == 0 {
		e.o.size = autoSize(e.o.rate, e.o.seconds)
	}
	ceiling := payloadCeiling()
	fmt.Printf("image %d MiB (%.1f s at %s); TCP payload ceiling on a TBF link: %.1f %% of the rate (1448 of 1514 bytes per frame)\n",
		e.o.size>>20, float64(e.o.size)*8/float64(e.o.rate), rateName(e.o.rate), ceiling*100)
	_, burst, limit := tbfParams(e.o.rate)
	fmt.Printf("links: TBF on both ends of every node's link, burst %d KiB and queue limit %d KiB at %s (%v of the rate each)\n", burst>>10, limit>>10, rateName(e.o.rate), tbfWindow)
	fmt.Printf("node disks: %s\n", diskDirName(e.o.diskDir))
	e.golden = filepath.Join(work, "golden.img")
	if err := writeRandom(e.golden, e.o.size); err != nil {
		return err
	}
	if e.want, err = sha256Prefix(e.golden, e.o.size); err != nil {
		return err
	}

	// 2. The matrix, and the fault run on the 8-node cluster.
	rates := []uint64{0, e.o.rate}
	if e.o.extraRate > 0 && e.o.extraRate != e.o.rate && has(e.o.tools, "herd") {
		rates = append(rates, e.o.extraRate)
	}
	var rows []row
	var fr *faultResult
	var crs []cryptoResult
	faultDone := false
	for _, n := range e.o.nodes {
		c, err := newCluster(e, n, e.o.size, e.o.diskDir)
		if err != nil {
			return fmt.Errorf("cluster of %d: %w", n, err)
		}
		for _, rate := range rates {
			if err := setRate(c, rate); err != nil {
				c.Close()
				return err
			}
			for _, tool := range e.o.tools {
				if rate == e.o.extraRate && rate != e.o.rate && tool != "herd" {
					continue
				}
				if tool == "naive" && rate != 0 && n > e.o.naiveMax {
					rows = append(rows, row{Tool: tool, Nodes: n, Rate: rate, Err: fmt.Sprintf("not run (N > -naive-max %d): a sequential copy takes N × the one-node time", e.o.naiveMax)})
					continue
				}
				r := measure(e, c, tool, rate)
				fmt.Printf("  %-8s N=%-3d %-10s %7.2f s  ok=%v %s\n", r.Tool, r.Nodes, rateName(rate), r.Seconds, r.OK, r.Err)
				rows = append(rows, r)
			}
		}
		if e.o.crypto && (n == 2 || n == 8) && has(e.o.tools, "herd") {
			crs = append(crs, cryptoRun(e, c))
		}
		if e.o.fault && n == 8 && has(e.o.tools, "herd") {
			faultDone = true
			if err := setRate(c, e.o.rate); err == nil {
				res := faultRun(e, c)
				fr = &res
			}
		}
		if err := c.Close(); err != nil {
			return err
		}
	}
	if e.o.fault && !faultDone && has(e.o.tools, "herd") {
		c, err := newCluster(e, 8, e.o.size, e.o.diskDir)
		if err != nil {
			return fmt.Errorf("cluster of 8 for the fault run: %w", err)
		}
		if err := setRate(c, e.o.rate); err == nil {
			res := faultRun(e, c)
			fr = &res
		}
		if err := c.Close(); err != nil {
			return err
		}
	}
	var ur *usedResult
	if e.o.usedOnly {
		res := usedOnlyRun(e)
		ur = &res
	}

	// 3. Report.
	derive(rows, e.o.size)
	printTable(os.Stdout, rows)
	printWhy(os.Stdout, rows, e.o.rate, e.o.size, ring.DefaultChunkSize, runtime.NumCPU())
	if fr != nil {
		fr.print(os.Stdout)
	}
	if ur != nil {
		ur.print(os.Stdout)
	}
	for _, cr := range crs {
		cr.print(os.Stdout)
	}
	printTargets(os.Stdout, rows, e.o, fr, ur)
	csvPath := filepath.Join(o.results, "bench.csv")
	if err := writeCSV(csvPath, append(rows, extraRows(fr, ur, e.o.size)...)); err != nil {
		return err
	}
	fmt.Println("wrote", csvPath)
	png := filepath.Join(o.results, "bench.png")
	if err := plot(rows, png, e.o); err != nil {
		fmt.Fprintln(os.Stderr, "bench: no plot:", err)
	} else {
		fmt.Println("wrote", png)
	}
	return nil
}

func has(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func diskDirName(d string) string {
	if d == "" {
		return "loop devices on files under " + harness.DefaultWorkRoot
	}
	return "loop devices on files under " + d
}

// newCluster builds a cluster whose disks live under dir ("" = default).
func newCluster(e *env, n int, disk int64, dir string) (*harness.Cluster, error) {
	cfg := harness.Config{Nodes: n, DiskSize: disk}
	if dir != "" {
		d, err := os.MkdirTemp(dir, "herd-bench-")
		if err != nil {
			return nil, err
		}
		_ = os.Remove(d) // the harness creates it, and removes it on Close
		cfg.WorkDir = d
	}
	return harness.New(context.Background(), cfg)
}

func setRate(c *harness.Cluster, rate uint64) error { return shape(c, rate) }

func rateName(r uint64) string {
	if r == 0 {
		return "unshaped"
	}
	return fmt.Sprintf("%gMbit", float64(r)/1e6)
}

// wipe discards every node's disk (the loop device punches holes in its
// file), so each run writes to an empty disk.
func wipe(c *harness.Cluster) error {
	for _, n := range c.Nodes() {
		if out, err := exec.Command("blkdiscard", n.Disk()).CombinedOutput(); err != nil {
			return fmt.Errorf("wipe %s: %v %s", n.Name(), err, out)
		}
	}
	return nil
}

// measure wipes every node's disk, runs one tool and verifies the result.
func measure(e *env, c *harness.Cluster, tool string, rate uint64) row {
	r := row{Tool: tool, Nodes: len(c.Nodes()), Rate: rate}
	if err := wipe(c); err != nil {
		r.Err = err.Error()
		return r
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.o.timeout)
	defer cancel()
	var err error
	switch tool {
	case "herd":
		var h herdRun
		h, err = runHerd(ctx, c, e.o.herd, e.golden, herdOpts{})
		r.Seconds, r.Data = h.Wall, h.Data
		if h.Data > 0 {
			r.First, r.Tail = h.FirstAt, h.Wall-h.LastAt
		}
		var cpu float64
		for i, v := range h.PeakRSS {
			r.PeakRSS = max(r.PeakRSS, v)
			cpu += h.RecvCPU[i]
		}
		if len(h.RecvCPU) > 0 {
			r.CPUPerGiB = cpu / float64(len(h.RecvCPU)) / (float64(e.o.size) / (1 << 30))
		}
	case "udpcast":
		r.Seconds, err = runUDPCast(ctx, c, e.golden)
	case "naive":
		r.Seconds, err = runNaive(ctx, c, e.self, e.golden)
	}
	if err != nil {
		r.Err = err.Error()
		return r
	}
	if err := verify(c.Nodes(), e.o.size, e.want); err != nil {
		r.Err = err.Error()
		return r
	}
	r.OK = true
	return r
}

// verify compares the sha256 of the first size bytes of every node's disk
// with want.
func verify(nodes []*harness.Node, size int64, want string) error {
	for _, n := range nodes {
		got, err := sha256Prefix(n.Disk(), size)
		if err != nil {
			return fmt.Errorf("%s: %w", n.Name(), err)
		}
		if got != want {
			return fmt.Errorf("%s: disk differs from the image", n.Name())
		}
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
