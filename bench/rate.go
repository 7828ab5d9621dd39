package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"runtime"
	"time"
)

// rateSteps are the shaped rates the calibration may choose, in Mbit/s,
// largest first.
var rateSteps = []uint64{1000, 800, 600, 500, 400, 300, 250, 200, 150, 120, 100, 80, 60, 50, 40, 30, 20, 10}

// calibration is what the calibration clone measured and the rate it
// chose.
type calibration struct {
	Nodes      int
	Bytes      int64
	Wall       float64 // s
	Data       float64 // s, data phase
	First      float64 // s to the slowest node's first byte
	Tail       float64 // s from the slowest node's last byte to the end
	RecvCPU    float64 // herd recv CPU s per GiB, mean per node
	SendCPU    float64 // herd send CPU s per GiB
	HerdCPU    float64 // every herd process, CPU s per GiB per node
	Busy       float64 // machine busy core-s per GiB per node, less the earlier load
	BaseLoad   float64 // cores busy before the run (others' work)
	Avail      float64 // cores the shaped runs may use: budget less BaseLoad, at least a quarter
	Cores      int
	MaxNodes   int
	SustainBps float64 // bytes/s per node that MaxNodes can sustain
	Rate       uint64  // chosen, bits per second
}

// chooseRate returns the largest step (bits/s) at or below bps bytes/s,
// or the smallest step when none is.
func chooseRate(bps float64) uint64 {
	for _, s := range rateSteps {
		if float64(s)*1e6/8 <= bps {
			return s * 1e6
		}
	}
	return rateSteps[len(rateSteps)-1] * 1e6
}

// autoSize is the image size that lasts about seconds at rate (bits/s),
// rounded up to 32 MiB, at least 64 MiB.
func autoSize(rate uint64, seconds float64) int64 {
	b := float64(rate) / 8 * seconds
	const step = 32 << 20
	n := int64(math.Ceil(b/step)) * step
	return max(n, 64<<20)
}

// payloadCeiling is the fraction of a TBF rate that TCP payload can use:
// TBF counts every frame's bytes from the Ethernet header on; a full frame
// of 1514 bytes carries 1448 bytes of payload (IPv4 20, TCP 20 + 12 of
// timestamps, Ethernet 14).
func payloadCeiling() float64 { return 1448.0 / 1514.0 }

// calibrate clones a 512 MiB image to 4 nodes on unshaped links (so CPU,
// not the link, limits it) and derives what one node costs the machine per
// byte, then the rate that the largest N can sustain within the budget.
func calibrate(e *env) (calibration, error) {
	const n, size = 4, 512 << 20
	cal := calibration{Nodes: n, Bytes: size, Cores: runtime.NumCPU(), MaxNodes: 16}
	for _, m := range e.o.nodes {
		cal.MaxNodes = max(cal.MaxNodes, m)
	}
	img := filepath.Join(e.work, "calibration.img")
	if err := writeRandom(img, size); err != nil {
		return cal, err
	}
	c, err := newCluster(e, n, size, e.o.diskDir)
	if err != nil {
		return cal, err
	}
	defer c.Close()
	// Others' load, measured just before (the machine is shared).
	b0 := machineBusy()
	t0 := time.Now()
	time.Sleep(2 * time.Second)
	cal.BaseLoad = (machineBusy() - b0) / time.Since(t0).Seconds()
	ctx, cancel := context.WithTimeout(context.Background(), e.o.timeout)
	defer cancel()
	h, err := runHerd(ctx, c, e.o.herd, img, herdOpts{})
	if err != nil {
		return cal, err
	}
	gib := float64(size) / (1 << 30)
	var rc float64
	for _, v := range h.RecvCPU {
		rc += v
	}
	cal.Wall, cal.Data, cal.First = h.Wall, h.Data, h.FirstAt
	if h.LastAt > 0 {
		cal.Tail = h.Wall - h.LastAt
	}
	cal.RecvCPU = rc / n / gib
	cal.SendCPU = h.SendCPU / gib
	cal.HerdCPU = h.HerdCPU / n / gib
	cal.Busy = max(h.Busy-cal.BaseLoad*h.Wall, h.HerdCPU) / n / gib
	cal.Avail = max(e.o.budget*float64(cal.Cores)-cal.BaseLoad, 0.25*float64(cal.Cores))
	cal.SustainBps = cal.Avail / (float64(cal.MaxNodes) * cal.Busy) * (1 << 30)
	cal.Rate = chooseRate(cal.SustainBps)
	return cal, nil
}

func (c calibration) print(w io.Writer, o options) {
	fmt.Fprintf(w, "calibration: herd, %d MiB to %d nodes, unshaped: %.2f s (slowest node's first byte at %.2f s, data phase %.2f s, %.2f s after its last byte)\n",
		c.Bytes>>20, c.Nodes, c.Wall, c.First, c.Data, c.Tail)
	fmt.Fprintf(w, "  CPU per GiB per node: herd recv %.2f s, herd send %.2f s (total), all herd processes %.2f s; whole machine %.2f core-s (kernel network, loop devices; load before the run, %.2f cores, subtracted)\n",
		c.RecvCPU, c.SendCPU, c.HerdCPU, c.Busy, c.BaseLoad)
	fmt.Fprintf(w, "  budget: %.0f %% of %d cores less that load = %.2f cores; %d nodes × %.2f core-s/GiB within it → at most %.1f MB/s per node = %.0f Mbit/s\n",
		o.budget*100, c.Cores, c.Avail, c.MaxNodes, c.Busy, c.SustainBps/1e6, c.SustainBps*8/1e6)
	fmt.Fprintf(w, "  shaped rate: %s (the largest step at or below that)\n", rateName(c.Rate))
}
