package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/herd-cluster/herd/harness"
)

// faultVictim is the node killed in the fault run (1-based): a middle node,
// so both its upstream bypasses it and its downstream takes a new upstream.
const faultVictim = 4

// detection is herd's default dead-node timeout, the "detection time" of
// issue #4's target.
const detection = 2 * time.Second

// faultResult compares a fault-free shaped clone with the same clone where
// one node is killed at 40 % of the data phase.
type faultResult struct {
	Nodes     int
	Rate      uint64
	Free      float64 // s, fault-free, every node
	Faulted   float64 // s, survivors
	KillAfter float64 // s after herd send started
	KilledAt  float64 // fraction of the image the victim had read when killed
	Survivors int     // nodes done in the faulted run's summary
	Err       string
}

// Limit is the target of issue #4: detection time plus 10 % over the
// fault-free run.
func (f faultResult) Limit() float64 { return f.Free*1.10 + detection.Seconds() }

// OK reports whether the faulted run met the target with every survivor
// verified.
func (f faultResult) OK() bool {
	return f.Err == "" && f.Faulted > 0 && f.Faulted <= f.Limit()
}

// faultRun measures the fault-free clone, then the same with node
// faultVictim killed at 40 % of the fault-free data phase, on c (shaped).
func faultRun(e *env, c *harness.Cluster) faultResult {
	f := faultResult{Nodes: len(c.Nodes()), Rate: e.o.rate}
	fail := func(format string, args ...any) faultResult {
		f.Err = fmt.Sprintf(format, args...)
		fmt.Printf("  fault    N=%-3d %-10s %s\n", f.Nodes, rateName(f.Rate), f.Err)
		return f
	}
	if f.Nodes < faultVictim+1 {
		return fail("needs at least %d nodes", faultVictim+1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.o.timeout)
	defer cancel()
	if err := wipe(c); err != nil {
		return fail("%v", err)
	}
	free, err := runHerd(ctx, c, e.o.herd, e.golden, herdOpts{})
	if err != nil {
		return fail("fault-free run: %v", err)
	}
	if err := verify(c.Nodes(), e.o.size, e.want); err != nil {
		return fail("fault-free run: %v", err)
	}
	f.Free = free.Wall
	fmt.Printf("  fault    N=%-3d %-10s fault-free %.2f s; next run: node%d killed once it has 40 %% of the image\n", f.Nodes, rateName(f.Rate), f.Free, faultVictim)
	if err := wipe(c); err != nil {
		return fail("%v", err)
	}
	h, err := runHerd(ctx, c, e.o.herd, e.golden, herdOpts{kill: faultVictim, killAt: 0.4})
	f.Faulted, f.KilledAt, f.KillAfter, f.Survivors = h.Wall, h.KilledAt, h.KillTime, h.Survived
	if f.KilledAt < 0 {
		return fail("node%d was never killed: the clone ended before it had 40 %% of the image", faultVictim)
	}
	if err != nil {
		return fail("faulted run: %v", err)
	}
	var live []*harness.Node
	for _, n := range c.Nodes() {
		if n.Index() != faultVictim {
			live = append(live, n)
		}
	}
	if err := verify(live, e.o.size, e.want); err != nil {
		return fail("faulted run: %v", err)
	}
	fmt.Printf("  fault    N=%-3d %-10s survivors %.2f s (%d done)\n", f.Nodes, rateName(f.Rate), f.Faulted, f.Survivors)
	return f
}

func (f faultResult) print(w io.Writer) {
	fmt.Fprintf(w, "\nfault run (#4): %d nodes at %s, node%d killed (SIGKILL) %.2f s in, when it had read %s of the image\n",
		f.Nodes, rateName(f.Rate), faultVictim, f.KillAfter, pct(f.KilledAt))
	if f.Err != "" {
		fmt.Fprintf(w, "  FAILED: %s\n", f.Err)
		return
	}
	fmt.Fprintf(w, "  fault-free %.2f s, survivors %.2f s (%d of %d nodes done, verified), cost %+.2f s = %+.0f %%; limit %.2f s (fault-free + 10 %% + %v detection)\n",
		f.Free, f.Faulted, f.Survivors, f.Nodes, f.Faulted-f.Free, (f.Faulted/f.Free-1)*100, f.Limit(), detection)
}

func pct(f float64) string {
	if f < 0 {
		return "none yet"
	}
	return fmt.Sprintf("%.0f %%", f*100)
}
