package main

import (
	"context"
	"fmt"
	"io"

	"github.com/herd-cluster/herd/harness"
)

// cryptoResult is the encryption cost on the lab (issue #12): the same
// clone, unshaped links, keyed (every hop sealed, chunks sealed by the
// source) and --insecure (in clear), alternated so a change of load hits
// both alike.
type cryptoResult struct {
	Nodes int
	Size  int64
	// per mode (0: keyed, 1: insecure), best of the runs
	Wall    [2]float64 // s
	RecvCPU [2]float64 // core-seconds per GiB per node (herd recv, rusage)
	SendCPU [2]float64 // core-seconds per GiB at the source
	Err     string
}

// cryptoRuns is how many clones of each mode a crypto run makes.
const cryptoRuns = 2

func cryptoRun(e *env, c *harness.Cluster) cryptoResult {
	r := cryptoResult{Nodes: len(c.Nodes()), Size: e.o.size}
	gib := float64(e.o.size) / (1 << 30)
	if err := setRate(c, 0); err != nil {
		r.Err = err.Error()
		return r
	}
	for i := 0; i < cryptoRuns; i++ {
		for mode, insecure := range []bool{false, true} {
			if err := wipe(c); err != nil {
				r.Err = err.Error()
				return r
			}
			ctx, cancel := context.WithTimeout(context.Background(), e.o.timeout)
			h, err := runHerd(ctx, c, e.o.herd, e.golden, herdOpts{insecure: insecure})
			cancel()
			if err == nil {
				err = verify(c.Nodes(), e.o.size, e.want)
			}
			if err != nil {
				r.Err = fmt.Sprintf("%s run: %v", modeName(mode), err)
				return r
			}
			var recv float64
			for _, v := range h.RecvCPU {
				recv += v
			}
			recv /= float64(len(h.RecvCPU)) * gib
			fmt.Printf("  crypto   N=%-3d unshaped   %-9s %6.2f s, herd recv %.2f core-s/GiB/node, herd send %.2f core-s/GiB\n",
				r.Nodes, modeName(mode), h.Wall, recv, h.SendCPU/gib)
			if r.Wall[mode] == 0 || h.Wall < r.Wall[mode] {
				r.Wall[mode], r.RecvCPU[mode], r.SendCPU[mode] = h.Wall, recv, h.SendCPU/gib
			}
		}
	}
	return r
}

func modeName(mode int) string {
	if mode == 0 {
		return "keyed"
	}
	return "insecure"
}

func (r cryptoResult) print(w io.Writer) {
	fmt.Fprintf(w, "\nencryption cost (lab, %d nodes, unshaped, %d MiB, best of %d each):\n", r.Nodes, r.Size>>20, cryptoRuns)
	if r.Err != "" {
		fmt.Fprintf(w, "  FAILED: %s\n", r.Err)
		return
	}
	mb := float64(r.Size) / 1e6
	for mode := 0; mode < 2; mode++ {
		fmt.Fprintf(w, "  %-9s %6.2f s  %7.1f MB/s per node  herd recv %.2f core-s/GiB/node  herd send %.2f core-s/GiB\n",
			modeName(mode), r.Wall[mode], mb/r.Wall[mode], r.RecvCPU[mode], r.SendCPU[mode])
	}
	fmt.Fprintf(w, "  keyed throughput = %.0f %% of insecure (cost %.0f %%); CPU per GiB per node x%.2f\n",
		100*r.Wall[1]/r.Wall[0], 100*(1-r.Wall[1]/r.Wall[0]), r.RecvCPU[0]/r.RecvCPU[1])
}
