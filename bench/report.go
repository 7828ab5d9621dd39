package main

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"text/tabwriter"
)

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
			if r.Data > 0 {
				r.EffData = float64(size) * 8 / r.Data / float64(r.Rate)
			}
		}
	}
}

func printTable(w io.Writer, rows []row) {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "tool\tnodes\tlink\tseconds\tfirst s\tdata s\ttail s\tMB/s per node\ttime / herd\trate / link\tdata / link\tpeak RSS MiB\tCPU s/GiB\tverified\t")
	dash := func(ok bool, format string, v float64) string {
		if !ok {
			return "-"
		}
		return fmt.Sprintf(format, v)
	}
	for _, r := range rows {
		ok := "yes"
		switch {
		case strings.HasPrefix(r.Err, "not run"):
			ok = "not run"
		case !r.OK:
			ok = "FAILED"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.Tool, r.Nodes, rateName(r.Rate),
			dash(r.Seconds > 0, "%.2f", r.Seconds), dash(r.Data > 0, "%.2f", r.First), dash(r.Data > 0, "%.2f", r.Data), dash(r.Data > 0, "%.2f", r.Tail), dash(r.MBpsNode > 0, "%.1f", r.MBpsNode),
			dash(r.Ratio > 0, "%.2f", r.Ratio), dash(r.Eff > 0, "%.0f%%", r.Eff*100), dash(r.EffData > 0, "%.0f%%", r.EffData*100),
			dash(r.PeakRSS > 0, "%.1f", float64(r.PeakRSS)/(1<<20)), dash(r.CPUPerGiB > 0, "%.2f", r.CPUPerGiB), ok)
	}
	tw.Flush()
	fmt.Fprintln(w, "seconds: herd send started (every node listening) → every receiver exited; first s: to the slowest node's first byte;")
	fmt.Fprintln(w, "data s: its first to last byte (its rchar in /proc/<pid>/io, read every 50 ms); tail s: its last byte → the end (sync, digests, exit);")
	fmt.Fprintln(w, "rate / link: whole run, data / link: data phase; peak RSS: the largest herd recv (VmHWM); CPU: herd recv user+sys per GiB, mean per node")
	for _, r := range rows {
		if r.Err != "" {
			fmt.Fprintf(w, "%s N=%d %s: %s\n", r.Tool, r.Nodes, rateName(r.Rate), r.Err)
		}
	}
}

// target is one PASS/MISS line.
type target struct {
	name string
	pass bool
	skip bool // not measured in this run (a tool or part switched off)
	what string
}

// targets evaluates the shaped-run targets of issue #3 at rate, the memory
// bound of the design, and the fault and used-only targets when they ran.
func targets(rows []row, rate uint64, fr *faultResult, ur *usedResult) []target {
	var ts []target
	herd := map[int]row{}
	udp := map[int]row{}
	var ns []int
	for _, r := range rows {
		if r.Rate != rate || !r.OK {
			continue
		}
		switch r.Tool {
		case "herd":
			herd[r.Nodes] = r
			ns = append(ns, r.Nodes)
		case "udpcast":
			udp[r.Nodes] = r
		}
	}
	if len(ns) > 0 {
		lo, hi := herd[ns[0]].Seconds, herd[ns[0]].Seconds
		var effs, datas []string
		allEff, allData := true, true
		var peak int64
		for _, n := range ns {
			r := herd[n]
			lo, hi = min(lo, r.Seconds), max(hi, r.Seconds)
			effs = append(effs, fmt.Sprintf("N=%d %.0f%%", n, r.Eff*100))
			datas = append(datas, fmt.Sprintf("N=%d %.0f%%", n, r.EffData*100))
			allEff = allEff && r.Eff >= 0.90
			allData = allData && r.EffData >= 0.90
			peak = max(peak, r.PeakRSS)
		}
		ts = append(ts,
			target{name: "herd ≥ 90 % of the link, whole run", pass: allEff, what: strings.Join(effs, ", ")},
			target{name: "herd ≥ 90 % of the link, data phase", pass: allData, what: strings.Join(datas, ", ")},
			target{name: fmt.Sprintf("herd time flat within 10 %% from N=%d to N=%d", ns[0], ns[len(ns)-1]), pass: hi <= lo*1.10, skip: len(ns) < 2,
				what: fmt.Sprintf("%.2f–%.2f s, spread %.1f %%", lo, hi, (hi/lo-1)*100)},
			target{name: "herd peak RSS per node ≤ 128 MiB", pass: peak > 0 && peak <= 128<<20, what: fmt.Sprintf("largest %.1f MiB", float64(peak)/(1<<20))})
	}
	for _, n := range []int{8, 16} {
		h, okh := herd[n]
		u, oku := udp[n]
		failed := hasFailed(rows, "udpcast", n, rate)
		t := target{name: fmt.Sprintf("herd ahead of udpcast at N=%d", n)}
		switch {
		case okh && oku:
			t.what = fmt.Sprintf("herd %.2f s, udpcast %.2f s (%.2f×)", h.Seconds, u.Seconds, u.Seconds/h.Seconds)
			t.pass = u.Seconds > h.Seconds
		case okh && failed:
			t.what, t.pass = "udpcast did not complete", true
		case !oku && !failed:
			t.what, t.skip = "udpcast not run", true
		default:
			t.what = "herd did not complete"
		}
		ts = append(ts, t)
	}
	if fr != nil {
		what := fr.Err
		if what == "" {
			what = fmt.Sprintf("survivors %.2f s vs fault-free %.2f s, limit %.2f s", fr.Faulted, fr.Free, fr.Limit())
		}
		ts = append(ts, target{name: "fault: survivors ≤ fault-free + 10 % + 2 s detection", pass: fr.OK(), what: what})
	}
	if ur != nil {
		what := ur.Err
		if what == "" && ur.UsedBytes > 0 {
			what = fmt.Sprintf("%.1f MiB on the wire for %.1f MiB used (%.3f×)", float64(ur.WireUsed)/(1<<20), float64(ur.UsedBytes)/(1<<20), float64(ur.WireUsed)/float64(ur.UsedBytes))
		}
		ts = append(ts, target{name: "used-only: wire ≤ 1.1 × used, nodes pass fsck", pass: ur.OK(), what: what})
	}
	return ts
}

// hasFailed reports whether tool ran at n and rate and failed (a tool that
// fails is behind herd; one that was not run is not).
func hasFailed(rows []row, tool string, n int, rate uint64) bool {
	for _, r := range rows {
		if r.Tool == tool && r.Nodes == n && r.Rate == rate && !r.OK && !strings.HasPrefix(r.Err, "not run") && r.Err != "" {
			return true
		}
	}
	return false
}

func printTargets(w io.Writer, rows []row, o options, fr *faultResult, ur *usedResult) {
	fmt.Fprintf(w, "\ntargets (shaped runs at %s):\n", rateName(o.rate))
	for _, t := range targets(rows, o.rate, fr, ur) {
		v := "MISS"
		switch {
		case t.skip:
			v = "SKIP"
		case t.pass:
			v = "PASS"
		}
		fmt.Fprintf(w, "  %s  %-55s %s\n", v, t.name, t.what)
	}
}

func writeCSV(path string, rows []row) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	_ = w.Write([]string{"tool", "nodes", "rate_bits", "seconds", "data_seconds", "mb_per_s_per_node", "time_vs_herd", "efficiency", "data_efficiency", "peak_rss_bytes", "recv_cpu_s_per_gib", "ok", "error"})
	for _, r := range rows {
		_ = w.Write([]string{r.Tool, strconv.Itoa(r.Nodes), strconv.FormatUint(r.Rate, 10),
			fmt.Sprintf("%.3f", r.Seconds), fmt.Sprintf("%.3f", r.Data), fmt.Sprintf("%.2f", r.MBpsNode), fmt.Sprintf("%.3f", r.Ratio),
			fmt.Sprintf("%.3f", r.Eff), fmt.Sprintf("%.3f", r.EffData), strconv.FormatInt(r.PeakRSS, 10), fmt.Sprintf("%.3f", r.CPUPerGiB),
			strconv.FormatBool(r.OK), r.Err})
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
	seen := map[uint64]bool{}
	for _, rate := range []uint64{0, o.rate, o.extraRate} {
		if seen[rate] {
			continue
		}
		seen[rate] = true
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

// printWhy explains herd's shaped times: the pipeline fill of a
// store-and-forward chain (each node forwards a chunk once it has all of
// it, so the last of N nodes starts N chunk-times late), the tail after the
// last byte, and the CPU the runs needed against the cores.
func printWhy(w io.Writer, rows []row, rate uint64, size int64, chunk int, cores int) {
	var lines []string
	for _, r := range rows {
		if r.Tool != "herd" || r.Rate != rate || !r.OK || r.Data <= 0 {
			continue
		}
		fill := float64(r.Nodes) * float64(chunk) * 8 / float64(rate) / payloadCeiling()
		ideal := float64(size) * 8 / float64(rate) / payloadCeiling()
		// CPU demand: every node's herd recv at the link rate.
		demand := float64(r.Nodes) * r.CPUPerGiB * float64(rate) / 8 / (1 << 30)
		lines = append(lines, fmt.Sprintf("  N=%-3d first byte %.2f s (N × chunk / rate = %.2f s), data %.2f s (ideal %.2f s), tail %.2f s; herd recv CPU at this rate %.2f of %d cores",
			r.Nodes, r.First, fill, r.Data, ideal, r.Tail, demand, cores))
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintf(w, "\nwhere herd's shaped time goes (%s, chunk %d KiB, image %d MiB):\n", rateName(rate), chunk>>10, size>>20)
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
	fmt.Fprintln(w, "  a chain that forwards whole chunks adds one chunk-time per node before the last node starts: completion ≈ image/rate + N × chunk/rate")
}

// extraRows turns the fault and used-only runs into CSV rows (tools
// "herd fault-free", "herd node killed", "herd full disk", "herd used-only").
func extraRows(fr *faultResult, ur *usedResult, size int64) []row {
	var rows []row
	mbps := func(b int64, s float64) float64 {
		if s <= 0 {
			return 0
		}
		return float64(b) / s / 1e6
	}
	if fr != nil {
		rows = append(rows,
			row{Tool: "herd fault-free", Nodes: fr.Nodes, Rate: fr.Rate, Seconds: fr.Free, OK: fr.Free > 0, MBpsNode: mbps(size, fr.Free), Err: fr.Err},
			row{Tool: "herd node killed", Nodes: fr.Nodes, Rate: fr.Rate, Seconds: fr.Faulted, OK: fr.OK(), MBpsNode: mbps(size, fr.Faulted), Ratio: fr.Faulted / max(fr.Free, 1e-9), Err: fr.Err})
	}
	if ur != nil {
		rows = append(rows,
			row{Tool: "herd full disk", Nodes: ur.Nodes, Seconds: ur.SecFull, OK: ur.SecFull > 0, MBpsNode: mbps(ur.DeviceBytes, ur.SecFull), Err: ur.Err},
			row{Tool: "herd used-only", Nodes: ur.Nodes, Seconds: ur.SecUsed, OK: ur.OK(), MBpsNode: mbps(ur.DeviceBytes, ur.SecUsed), Ratio: ur.SecUsed / max(ur.SecFull, 1e-9), Err: ur.Err})
	}
	return rows
}
