package main

// The soak (issue #13): rounds of 8-node lab clones with random faults and
// slow nodes, under CPU load (one busy-loop process per core for the whole
// soak), every node's own verdict beside the sender's, checked against the
// invariants of ring/verdict.
//
//	go run ./bench soak -rounds 50            (make soak)
//	go run ./bench soak -rounds 1 -seed S     (replays round S)
//
// Round i of a soak started with -seed S has seed S+i-1 and is drawn from
// that seed alone, so -rounds 1 -seed S+i-1 replays its draw (the timing of
// a loaded machine differs from run to run).

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/zeebo/blake3"

	"github.com/herd-cluster/herd/harness"
	"github.com/herd-cluster/herd/internal/units"
	"github.com/herd-cluster/herd/ring/core"
	"github.com/herd-cluster/herd/ring/report"
	"github.com/herd-cluster/herd/ring/verdict"
	"github.com/herd-cluster/herd/ring/wire"
)

type soakOptions struct {
	rounds   int
	seed     uint64
	nodes    int
	size     int64
	rate     uint64 // bits/s per link
	slowRate uint64 // bytes/s of a slow disk
	busy     int
	herd     string
	results  string
	diskDir  string
	timeout  time.Duration
	grace    time.Duration
	dead     time.Duration // herd's dead timeout (send's default), for the I4 bound
}

func parseSoakFlags(args []string) (soakOptions, error) {
	var o soakOptions
	fs := flag.NewFlagSet("bench soak", flag.ContinueOnError)
	fs.IntVar(&o.rounds, "rounds", 50, "rounds to run")
	fs.Uint64Var(&o.seed, "seed", 0, "seed of the first round (round i has seed+i-1); 0: from the clock")
	fs.IntVar(&o.nodes, "nodes", 8, "nodes of the lab")
	size := fs.String("size", "96M", "size of the image")
	rate := fs.String("rate", "200mbit", "link rate of every node (both ways)")
	slow := fs.String("slow-disk", "8MB/s", "write rate of a slow disk")
	fs.IntVar(&o.busy, "busy", runtime.NumCPU(), "busy-loop processes beside the soak (one per core: a loaded host)")
	fs.StringVar(&o.herd, "herd", "", "herd binary (default: build ./cmd/herd)")
	fs.StringVar(&o.results, "results", "results", "folder for the report (soak-SEED.txt) and the logs of failed rounds (soak-SEED/)")
	fs.StringVar(&o.diskDir, "disk-dir", "/dev/shm", "folder (tmpfs) for the node disks; empty: the harness default")
	fs.DurationVar(&o.timeout, "timeout", 4*time.Minute, "limit of one session (herd send is killed after it)")
	fs.DurationVar(&o.grace, "grace", time.Minute, "how long every herd recv may run after herd send ended")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	var err error
	if o.size, err = units.ParseSize(*size); err != nil || o.size <= 0 {
		return o, fmt.Errorf("-size %q: want a size like 96M (%s)", *size, units.SizeForms)
	}
	if o.rate, err = units.ParseRate(*rate); err != nil || o.rate == 0 {
		return o, fmt.Errorf("-rate %q: want a rate like 200mbit (%s)", *rate, units.RateForms)
	}
	r, err := units.ParseRate(*slow)
	if err != nil || r < 8 {
		return o, fmt.Errorf("-slow-disk %q: want a rate like 8MB/s (%s)", *slow, units.RateForms)
	}
	o.slowRate = r / 8
	if o.rounds < 1 || o.nodes < 3 || o.nodes > 240 || o.busy < 0 {
		return o, fmt.Errorf("want -rounds >= 1, -nodes in 3..240, -busy >= 0")
	}
	o.dead = 2 * time.Second
	return o, nil
}

// Fault kinds a round draws from.
const (
	faultNone   = "none"
	faultKill   = "kill"   // SIGKILL every process of the node at a point of the stream
	faultFreeze = "freeze" // SIGSTOP, then SIGCONT after hold
	faultCut    = "cut"    // the link goes down; up again after hold if restore
	faultRejoin = "rejoin" // SIGKILL, then herd recv --state again after hold
)

var faultKinds = []string{faultNone, faultKill, faultFreeze, faultCut, faultRejoin}

var policies = []string{"move", "wait", "drop"}

// plan is what one round does, drawn from its seed alone.
type plan struct {
	Seed    uint64
	Policy  string
	Fault   string
	Victim  int     // 0-based node of the fault
	At      float64 // fraction of the image the victim has when hit
	Hold    time.Duration
	Restore bool // cut: the link comes back after Hold
	Slow    int  // 0-based node with a slow disk, -1 none
}

func drawPlan(seed uint64, nodes int) plan {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	p := plan{Seed: seed, Slow: -1}
	p.Policy = policies[r.IntN(len(policies))]
	p.Fault = faultKinds[r.IntN(len(faultKinds))]
	p.Victim = r.IntN(nodes)
	p.At = 0.1 + 0.7*r.Float64()
	p.Hold = time.Duration(500+r.IntN(5500)) * time.Millisecond
	p.Restore = r.IntN(3) > 0
	if r.IntN(2) == 0 {
		p.Slow = r.IntN(nodes - 1)
		if p.Fault != faultNone && p.Slow >= p.Victim {
			p.Slow++
		} else if p.Fault == faultNone {
			p.Slow = r.IntN(nodes)
		}
	}
	if p.Fault == faultNone {
		p.Victim = -1
	}
	return p
}

func (p plan) String() string {
	var parts []string
	switch p.Fault {
	case faultNone:
		parts = append(parts, "no fault")
	case faultKill:
		parts = append(parts, fmt.Sprintf("kill node%d at %.0f%%", p.Victim+1, p.At*100))
	case faultFreeze:
		parts = append(parts, fmt.Sprintf("freeze node%d at %.0f%% for %v", p.Victim+1, p.At*100, p.Hold))
	case faultCut:
		if p.Restore {
			parts = append(parts, fmt.Sprintf("cut node%d's link at %.0f%% for %v", p.Victim+1, p.At*100, p.Hold))
		} else {
			parts = append(parts, fmt.Sprintf("cut node%d's link at %.0f%% for good", p.Victim+1, p.At*100))
		}
	case faultRejoin:
		parts = append(parts, fmt.Sprintf("kill node%d at %.0f%%, restart it with --state %v later", p.Victim+1, p.At*100, p.Hold))
	}
	if p.Slow >= 0 {
		parts = append(parts, fmt.Sprintf("slow disk on node%d", p.Slow+1))
	}
	parts = append(parts, "policy "+p.Policy)
	return strings.Join(parts, ", ")
}

// soakEvent is a --json line of herd send or herd recv (package report).
type soakEvent = report.Event

// nodeStatus is a node of a --json line, as the verdict checker takes it.
func nodeStatus(n report.Node) core.NodeStatus {
	st := core.NodeStatus{Index: n.Index, Addr: n.Addr, State: core.State(n.State), Bytes: n.Bytes, Err: n.Error}
	for _, it := range n.Items {
		st.Items = append(st.Items, core.ItemStatus{Name: it.Name, Dest: it.Dest, Bytes: it.Bytes, Digest: it.Digest, Verified: it.Verified})
	}
	return st
}

// lastEvent returns the last JSON line of out whose event is ev.
func lastEvent(out []byte, ev string) (soakEvent, bool) {
	var last soakEvent
	found := false
	_ = report.Scan(bytes.NewReader(out), func(e *report.Event) error {
		if e.Event == ev {
			last, found = *e, true
		}
		return nil
	})
	return last, found
}

// soakNodeResult is one node's line of a round.
type soakNodeResult struct {
	Name   string
	Fault  string // what was done to it ("-" none)
	Sender string
	Own    string
	Disk   string
	Agree  string
}

// roundResult is the outcome of one round.
type roundResult struct {
	Plan       plan
	Seconds    float64 // herd send started → ended
	Wall       float64 // the whole round with set-up and cleanup
	Injected   string  // what the fault did, when
	Nodes      []soakNodeResult
	Violations []string
	Notes      []string
	I1, I2     int
	Other      int
	Err        string // the round could not run
	LogDir     string
}

func (r roundResult) failed() bool { return r.Err != "" || len(r.Violations) > 0 }

func (r roundResult) write(w io.Writer) {
	fmt.Fprintf(w, "round seed %d: %s\n", r.Plan.Seed, r.Plan)
	if r.Err != "" {
		fmt.Fprintf(w, "  ERROR: %s\n", r.Err)
	}
	if r.Injected != "" {
		fmt.Fprintf(w, "  injected: %s\n", r.Injected)
	}
	fmt.Fprintf(w, "  session %.1f s, round %.1f s\n", r.Seconds, r.Wall)
	for _, n := range r.Nodes {
		fmt.Fprintf(w, "  %-7s %-22s sender: %-40s own: %-40s disk: %-7s %s\n", n.Name, n.Fault, n.Sender, n.Own, n.Disk, n.Agree)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	if len(r.Violations) == 0 && r.Err == "" {
		fmt.Fprintln(w, "  violations: none")
	}
	for _, v := range r.Violations {
		fmt.Fprintf(w, "  VIOLATION %s\n", v)
	}
	if r.LogDir != "" {
		fmt.Fprintf(w, "  logs: %s\n", r.LogDir)
	}
}

func word(st core.NodeStatus) string {
	s := string(st.State)
	if st.State == core.StateDone && !verdict.Done(st) {
		s = "done (NOT verified)"
	}
	if st.Err != "" {
		s += " (" + st.Err + ")"
	}
	return s
}

func sameDigests(a, b []core.ItemStatus) bool {
	return slices.EqualFunc(a, b, func(x, y core.ItemStatus) bool { return x.Digest == y.Digest })
}

// agreement says whether the node's own word matches the sender's.
func agreement(snd core.NodeStatus, own *core.NodeStatus) string {
	if own == nil {
		return "-"
	}
	if verdict.Done(snd) != verdict.Done(*own) || verdict.Done(snd) && !sameDigests(snd.Items, own.Items) {
		return "DISAGREE"
	}
	return "agree"
}

// soakEnv is what every round shares.
type soakEnv struct {
	o        soakOptions
	work     string
	golden   string
	goldenB3 string // BLAKE3 of the image: herd's item digest of a raw image
	key      []string
	report   io.Writer
	mu       sync.Mutex
	curNodes []*harness.Node // nodes of the round whose disk is throttled, for the interrupt handler
}

// soakMain runs the soak and returns the exit status.
func soakMain(args []string) int {
	o, err := parseSoakFlags(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench soak:", err)
		return 2
	}
	if err := harness.Available(); err != nil {
		fmt.Fprintln(os.Stderr, "bench soak needs the harness (root):", err)
		return 1
	}
	if o.seed == 0 {
		o.seed = uint64(time.Now().UnixNano()) % 1_000_000_000
	}
	work, err := os.MkdirTemp("/var/tmp", "herd-soak-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench soak:", err)
		return 1
	}
	e := &soakEnv{o: o, work: work}
	// Ctrl-C or SIGTERM: stop the load, lift the disk throttles, take
	// the lab down and remove the image.
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigc
		e.mu.Lock()
		for _, n := range e.curNodes {
			_ = n.SlowDisk(0, 0)
			_ = n.LimitDirty(0)
		}
		e.mu.Unlock()
		harness.StopBusy()
		harness.CloseAll()
		os.RemoveAll(work)
		fmt.Fprintln(os.Stderr, "bench soak: interrupted, load stopped, lab removed")
		os.Exit(130)
	}()
	code, err := e.run()
	harness.StopBusy()
	os.RemoveAll(work)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench soak:", err)
		return 1
	}
	return code
}

func (e *soakEnv) run() (int, error) {
	o := e.o
	if o.herd == "" {
		o.herd = filepath.Join(e.work, "herd")
		if out, err := exec.Command("go", "build", "-o", o.herd, "./cmd/herd").CombinedOutput(); err != nil {
			return 1, fmt.Errorf("build herd: %w\n%s", err, out)
		}
		e.o.herd = o.herd
	}
	key, done, err := runKey(o.herd, false)
	if err != nil {
		return 1, err
	}
	defer done()
	e.key = key
	e.golden = filepath.Join(e.work, "golden.img")
	if err := writeRandom(e.golden, o.size); err != nil {
		return 1, err
	}
	if e.goldenB3, err = blake3Prefix(e.golden, o.size); err != nil {
		return 1, err
	}
	if err := os.MkdirAll(o.results, 0o755); err != nil {
		return 1, err
	}
	repPath := filepath.Join(o.results, fmt.Sprintf("soak-%d.txt", o.seed))
	rep, err := os.Create(repPath)
	if err != nil {
		return 1, err
	}
	defer rep.Close()
	e.report = io.MultiWriter(os.Stdout, rep)
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(e.report, "soak: %d rounds from seed %d (round i: seed %d+i-1); %d nodes, image %d MiB, links %s, slow disk %.1f MB/s; %d busy loops; %d cores, load average %s",
		o.rounds, o.seed, o.seed, o.nodes, o.size>>20, rateName(o.rate), float64(o.slowRate)/1e6, o.busy, runtime.NumCPU(), load)
	stop, err := harness.Busy(o.busy)
	if err != nil {
		return 1, err
	}
	defer stop()
	start := time.Now()
	var rounds, i1, i2, other, failed, errs int
	var failedSeeds []uint64
	var secs []float64
	for i := 0; i < o.rounds; i++ {
		p := drawPlan(o.seed+uint64(i), o.nodes)
		fmt.Fprintf(os.Stdout, "--- round %d/%d\n", i+1, o.rounds)
		r := e.round(p)
		r.write(e.report)
		rounds++
		i1 += r.I1
		i2 += r.I2
		other += r.Other
		if r.Err != "" {
			errs++
		}
		if r.failed() {
			failed++
			failedSeeds = append(failedSeeds, p.Seed)
		}
		secs = append(secs, r.Wall)
	}
	total := time.Since(start)
	var sum float64
	for _, s := range secs {
		sum += s
	}
	fmt.Fprintf(e.report, "\nsoak: %d rounds in %v (%.1f s per round); %d failed rounds; disagreements (I1) %d; healthy nodes failed (I2) %d; other violations %d; rounds that could not run %d\n",
		rounds, total.Round(time.Second), sum/float64(max(rounds, 1)), failed, i1, i2, other, errs)
	if len(failedSeeds) > 0 {
		fmt.Fprintf(e.report, "soak: failing seeds (replay: go run ./bench soak -rounds 1 -seed S): %v\n", failedSeeds)
	}
	fmt.Println("wrote", repPath)
	if failed > 0 {
		return 1, nil
	}
	return 0, nil
}

// round runs one round on a lab of its own and takes the lab down.
func (e *soakEnv) round(p plan) (r roundResult) {
	o := e.o
	r.Plan = p
	t0 := time.Now()
	defer func() { r.Wall = time.Since(t0).Seconds() }()
	cfg := harness.Config{Nodes: o.nodes, DiskSize: o.size, Rate: o.rate}
	if o.diskDir != "" {
		d, err := os.MkdirTemp(o.diskDir, "herd-soak-")
		if err != nil {
			r.Err = err.Error()
			return r
		}
		_ = os.Remove(d) // the harness creates it, and removes it on Close
		cfg.WorkDir = d
	}
	c, err := harness.New(context.Background(), cfg)
	if err != nil {
		r.Err = fmt.Sprintf("build the lab: %v", err)
		return r
	}
	var send *harness.Proc
	defer func() {
		e.mu.Lock()
		for _, n := range e.curNodes {
			// Before the lab goes: a process killed inside a throttled
			// write only exits once it is done, and the loop device keeps
			// the throttle for the next lab.
			_ = n.SlowDisk(0, 0)
			_ = n.LimitDirty(0)
		}
		e.curNodes = nil
		e.mu.Unlock()
		for _, n := range c.Nodes() {
			_ = n.Restore()
			_ = n.Thaw()
		}
		if r.failed() {
			r.LogDir = e.saveLogs(c, p.Seed, send, &r)
		}
		if err := c.Close(); err != nil {
			r.Notes = append(r.Notes, fmt.Sprintf("closing the lab: %v", err))
			r.Other++
			r.Violations = append(r.Violations, "harness: the lab did not close cleanly: "+err.Error())
		}
	}()
	nodes := c.Nodes()
	faults := make([]verdict.Fault, len(nodes))
	faultName := make([]string, len(nodes))
	for i := range faultName {
		faultName[i] = "-"
	}
	if p.Slow >= 0 {
		n := nodes[p.Slow]
		err := n.SlowDisk(0, o.slowRate)
		if err == nil {
			e.mu.Lock()
			e.curNodes = append(e.curNodes, n)
			e.mu.Unlock()
			err = n.LimitDirty(4 << 20)
		}
		if err != nil {
			r.Err = fmt.Sprintf("slow disk on %s: %v", n.Name(), err)
			return r
		}
		faults[p.Slow], faultName[p.Slow] = verdict.Slow, fmt.Sprintf("slow disk %.0fMB/s", float64(o.slowRate)/1e6)
	}
	stateDir := filepath.Join(e.work, fmt.Sprintf("state-%d", p.Seed))
	defer os.RemoveAll(stateDir)
	recvArgs := func(i int) []string {
		a := append([]string{"recv", "--json", "--listen", ":9998", "--allow", harness.NodeDisk}, e.key...)
		if p.Fault == faultRejoin && i == p.Victim {
			a = append(a, "--state", stateDir)
		}
		return a
	}
	recvs := make([]*harness.Proc, len(nodes))
	var to []string
	var ipids []int
	for i, n := range nodes {
		pr, err := n.Start(context.Background(), o.herd, recvArgs(i)...)
		if err != nil {
			r.Err = err.Error()
			return r
		}
		recvs[i] = pr
		ipids = append(ipids, pr.Pid())
		to = append(to, n.Addr().String())
	}
	if err := waitBound(ipids, "tcp", []int{9998}, "0A", 30*time.Second); err != nil {
		r.Err = err.Error()
		return r
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	args := append([]string{"send", "--to", strings.Join(to, ","), "--in", e.golden, "--out", harness.NodeDisk, "--json",
		"--slow", p.Policy, "--slow-after", "2s"}, e.key...)
	start := time.Now()
	send, err = c.Golden().Start(ctx, o.herd, args...)
	if err != nil {
		r.Err = err.Error()
		return r
	}
	// The fault, from a goroutine that watches herd send's progress.
	var (
		injMu    sync.Mutex
		injected bool
		injNote  string
		again    *harness.Proc // the rejoined herd recv
	)
	injDone := make(chan struct{})
	go func() {
		defer close(injDone)
		if p.Fault == faultNone {
			return
		}
		victim := nodes[p.Victim]
		for {
			select {
			case <-send.Done():
				injMu.Lock()
				injNote = fmt.Sprintf("not injected: the session ended before node%d had %.0f%%", p.Victim+1, p.At*100)
				injMu.Unlock()
				return
			case <-time.After(20 * time.Millisecond):
			}
			ev, ok := lastEvent(send.Stdout(), "progress")
			if !ok || ev.Total <= 0 || len(ev.Nodes) <= p.Victim || float64(ev.Nodes[p.Victim].Bytes) < p.At*float64(ev.Total) {
				continue
			}
			at := time.Since(start).Seconds()
			var err error
			switch p.Fault {
			case faultKill, faultRejoin:
				err = victim.Kill()
			case faultFreeze:
				err = victim.Freeze()
			case faultCut:
				err = victim.Cut()
			}
			injMu.Lock()
			injected = err == nil
			injNote = fmt.Sprintf("%s node%d at %.1f s (%.0f%% of the image on its progress line)", p.Fault, p.Victim+1, at, 100*float64(ev.Nodes[p.Victim].Bytes)/float64(ev.Total))
			if err != nil {
				injNote += fmt.Sprintf(": FAILED: %v", err)
			}
			injMu.Unlock()
			if err != nil {
				return
			}
			var more string
			switch p.Fault {
			case faultFreeze:
				time.Sleep(p.Hold)
				err = victim.Thaw()
				more = fmt.Sprintf("; thawed at %.1f s", time.Since(start).Seconds())
			case faultCut:
				if p.Restore {
					time.Sleep(p.Hold)
					err = victim.Restore()
					more = fmt.Sprintf("; link back at %.1f s", time.Since(start).Seconds())
				}
			case faultRejoin:
				select {
				case <-recvs[p.Victim].Done():
				case <-time.After(30 * time.Second):
					more = "; the killed herd recv did not exit in 30 s"
				}
				time.Sleep(p.Hold)
				select {
				case <-send.Done():
					more += "; not restarted: the session had ended"
				default:
					var pr *harness.Proc
					pr, err = victim.Start(context.Background(), o.herd, recvArgs(p.Victim)...)
					if err == nil {
						injMu.Lock()
						again = pr
						injMu.Unlock()
						more += fmt.Sprintf("; herd recv --state restarted at %.1f s", time.Since(start).Seconds())
					}
				}
			}
			injMu.Lock()
			injNote += more
			if err != nil {
				injNote += fmt.Sprintf(": FAILED: %v", err)
			}
			injMu.Unlock()
			return
		}
	}()
	_ = send.Wait()
	elapsed := time.Since(start)
	ended := ctx.Err() == nil
	r.Seconds = elapsed.Seconds()
	<-injDone
	injMu.Lock()
	r.Injected = injNote
	if again != nil {
		recvs[p.Victim] = again
	}
	hit := injected
	injMu.Unlock()
	if hit {
		faults[p.Victim] = verdict.Lost
		faultName[p.Victim] = p.Fault
		if p.Fault == faultCut && !p.Restore {
			faultName[p.Victim] = "cut for good"
		}
	}
	// Every herd recv's own word: its summary once it exits.
	deadline := time.Now().Add(o.grace)
	stragglers := map[int]bool{}
	for i, pr := range recvs {
		select {
		case <-pr.Done():
			// Exited: checked first, since once the deadline has
			// passed (a straggler before it used the grace up) a
			// select with both ready would pick either.
			continue
		default:
		}
		select {
		case <-pr.Done():
		case <-time.After(time.Until(deadline)):
			stragglers[i] = true
			_ = nodes[i].Thaw()
			_ = pr.Kill()
			<-pr.Done()
		}
	}
	sum, ok := lastEvent(send.Stdout(), "summary")
	if !ok || len(sum.Nodes) != len(nodes) {
		r.Err = fmt.Sprintf("herd send left no summary of %d nodes (exit %d, ended %v): %s", len(nodes), send.ExitCode(), ended, lastLine(send.Stderr()))
		if !ended {
			r.Violations = append(r.Violations, fmt.Sprintf("I4: session: herd send did not end within %v", o.timeout))
			r.Other++
		}
		return r
	}
	s := verdict.Session{Policy: policyCode(p.Policy), Ended: ended, Elapsed: elapsed}
	for _, it := range sum.Items {
		s.Source = append(s.Source, core.ItemStatus{Name: it.Name, Dest: it.Dest, Bytes: it.Bytes, Digest: it.Digest, Verified: it.Verified})
	}
	srcOK := len(s.Source) == 1 && s.Source[0].Digest == e.goldenB3
	if !srcOK {
		r.Violations = append(r.Violations, fmt.Sprintf("I3: session: the source's digests %v are not the BLAKE3 %s of the image", sum.Items, e.goldenB3))
		r.Other++
	}
	params := verdict.Params{Bytes: o.size, Rate: float64(o.rate) / 8, Nodes: len(nodes), Dead: o.dead}
	if p.Slow >= 0 {
		params.Faults++
		if p.Policy != "drop" {
			params.Rate = min(params.Rate, float64(o.slowRate))
		}
	}
	if hit {
		params.Faults++
		if p.Fault == faultFreeze || p.Fault == faultCut && p.Restore || p.Fault == faultRejoin {
			params.Stalls = p.Hold
		}
	}
	s.Bound = verdict.Bound(params)
	for i, n := range nodes {
		vn := verdict.Node{Name: n.Name(), Fault: faults[i], Sender: nodeStatus(sum.Nodes[i])}
		line := soakNodeResult{Name: n.Name(), Fault: faultName[i], Sender: word(vn.Sender)}
		if stragglers[i] {
			line.Own = fmt.Sprintf("no word (still running %v after the session; killed)", o.grace)
			msg := fmt.Sprintf("%s's herd recv still ran %v after the session ended", n.Name(), o.grace)
			if faults[i] == verdict.Lost {
				r.Notes = append(r.Notes, msg+" (it was hit)")
			} else {
				r.Violations = append(r.Violations, "I4: "+msg)
				r.Other++
			}
		} else if own, ok := lastEvent(recvs[i].Stdout(), "summary"); ok && len(own.Nodes) == 1 {
			st := nodeStatus(own.Nodes[0])
			vn.Own = &st
			line.Own = word(st)
		} else {
			line.Own = fmt.Sprintf("no word (exit %d)", recvs[i].ExitCode())
			if faults[i] != verdict.Lost {
				r.Violations = append(r.Violations, fmt.Sprintf("%s was not hit, yet its herd recv left no summary (exit %d): %s", n.Name(), recvs[i].ExitCode(), lastLine(recvs[i].Stderr())))
				r.Other++
			}
		}
		held, err := blake3Prefix(n.Disk(), o.size)
		switch {
		case err != nil:
			line.Disk = "unread"
			r.Notes = append(r.Notes, fmt.Sprintf("read %s's disk: %v", n.Name(), err))
		case held == e.goldenB3:
			line.Disk = "=golden"
		default:
			line.Disk = "differs"
		}
		if err == nil && srcOK {
			vn.Held = []string{held}
		} else if line.Disk != "=golden" && (verdict.Done(vn.Sender) || vn.Own != nil && verdict.Done(*vn.Own)) {
			r.Violations = append(r.Violations, fmt.Sprintf("I3: %s: done, but its disk is not the image (sha of the disk %s)", n.Name(), line.Disk))
			r.Other++
		}
		line.Agree = agreement(vn.Sender, vn.Own)
		r.Nodes = append(r.Nodes, line)
		s.Nodes = append(s.Nodes, vn)
	}
	for _, v := range verdict.Check(s) {
		name := "session"
		if v.Node >= 0 {
			name = nodes[v.Node].Name()
		}
		r.Violations = append(r.Violations, fmt.Sprintf("%s: %s: %s", v.Invariant, name, v.Msg))
		switch v.Invariant {
		case "I1":
			r.I1++
		case "I2":
			r.I2++
		default:
			r.Other++
		}
	}
	if r.failed() {
		// Keep what herd send said for the logs.
		r.Notes = append(r.Notes, fmt.Sprintf("herd send exit %d; stderr tail: %s", send.ExitCode(), lastLine(send.Stderr())))
	}
	return r
}

func policyCode(p string) uint8 {
	if code, ok := wire.ParseSlow(p); ok {
		return code
	}
	return wire.SlowMove
}

// saveLogs copies the logs of every node of the round (every process
// started in it: herd recv's stdout and stderr, herd send's in golden's)
// and the round's lines to results/soak-SEED/.
func (e *soakEnv) saveLogs(c *harness.Cluster, seed uint64, send *harness.Proc, r *roundResult) string {
	dir := filepath.Join(e.o.results, fmt.Sprintf("soak-%d", seed))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return ""
	}
	for _, n := range c.All() {
		if b, err := os.ReadFile(n.LogPath()); err == nil {
			_ = os.WriteFile(filepath.Join(dir, n.Name()+".log"), b, 0o644)
		}
	}
	if send != nil {
		_ = os.WriteFile(filepath.Join(dir, "send.json"), send.Stdout(), 0o644)
		_ = os.WriteFile(filepath.Join(dir, "send.stderr"), send.Stderr(), 0o644)
	}
	var b bytes.Buffer
	r.LogDir = dir
	r.write(&b)
	_ = os.WriteFile(filepath.Join(dir, "round.txt"), b.Bytes(), 0o644)
	return dir
}

// blake3Prefix is the BLAKE3 (hex) of the first n bytes of path: herd's
// item digest of a raw image without holes (ring/core hashes the data of
// every run in order).
func blake3Prefix(path string, n int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := blake3.New()
	if _, err := io.CopyN(h, f, n); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
