package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/herd-cluster/herd/ring"
	"github.com/herd-cluster/herd/ring/report"
)

func toJSONItems(its []ring.ItemStatus) []report.Item {
	out := make([]report.Item, 0, len(its))
	for _, it := range its {
		out = append(out, report.Item{Name: it.Name, Dest: it.Dest, Bytes: it.Bytes, Digest: it.Digest, Verified: it.Verified})
	}
	return out
}

func toJSONNode(n ring.NodeStatus) report.Node {
	return report.Node{Index: n.Index, Addr: n.Addr, State: string(n.State), Bytes: n.Bytes, Rate: n.Rate, Error: n.Err, Items: toJSONItems(n.Items)}
}

// writeJSON writes one --json line (see package report and docs/json.md).
func writeJSON(w io.Writer, ev report.Event) {
	_ = report.Write(w, ev)
}

// outcome counts the nodes that completed and verified every item.
func outcome(rep *ring.Report) (ok, failed int) {
	for _, n := range rep.Nodes {
		if rep.Verified(n) {
			ok++
		} else {
			failed++
		}
	}
	return ok, failed
}

// nodeResult is the one-word-or-reason result column of the summary.
func nodeResult(rep *ring.Report, n ring.NodeStatus) string {
	if rep.Verified(n) {
		return "ok"
	}
	if n.Err != "" {
		return "FAILED: " + n.Err
	}
	for _, it := range n.Items {
		if !it.Verified {
			return fmt.Sprintf("FAILED: %s not verified", it.Dest)
		}
	}
	return "FAILED: " + string(n.State)
}

// printSummary writes the human summary of a finished session.
func printSummary(w io.Writer, rep *ring.Report, stats []sourceStats) {
	secs := rep.Elapsed.Seconds()
	ok, failed := outcome(rep)
	fmt.Fprintf(w, "\nherd: %d item(s), %s to %d node(s) in %s", len(rep.Items), humanBytes(rep.Bytes), len(rep.Nodes), rep.Elapsed.Round(10*time.Millisecond))
	if secs > 0 {
		fmt.Fprintf(w, ", %s per node, %s aggregate", humanRate(float64(rep.Bytes)/secs), humanRate(float64(rep.Bytes)*float64(ok)/secs))
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  #\tnode\tstate\tbytes\trate\tresult")
	for _, n := range rep.Nodes {
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\n", n.Index+1, n.Addr, n.State, humanBytes(n.Bytes), humanRate(n.Rate), nodeResult(rep, n))
	}
	tw.Flush()
	fmt.Fprintln(w, "items:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for i, it := range rep.Items {
		line := fmt.Sprintf("  %s\t> %s\t%s\tblake3 %s", it.Name, it.Dest, humanBytes(it.Bytes), it.Digest)
		if i < len(stats) && stats[i].DeviceBytes > 0 {
			s := stats[i]
			line += fmt.Sprintf("\t(on device %s, used %s, on the wire %s)", humanBytes(s.DeviceBytes), humanBytes(s.UsedBytes), humanBytes(s.WireBytes))
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d ok, %d failed\n", ok, failed)
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.2f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

func humanRate(bps float64) string {
	if bps <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f MB/s", bps/1e6)
}

func humanDuration(d time.Duration) string {
	d = d.Round(time.Second)
	h, m, s := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	if h > 0 {
		return fmt.Sprintf("%d:%02d:%02d", h, m, s)
	}
	return fmt.Sprintf("%d:%02d", m, s)
}

// pad cuts or pads s to n columns.
func pad(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s + strings.Repeat(" ", n-len(s))
}

// compressName is the wire compression as the summary names it.
func compressName(c string) string {
	if c == "" {
		return string(ring.CompressNone)
	}
	return c
}

// onWrite returns w, calling fn before every write: a command with --json
// knows from it whether its final line was written.
func onWrite(w io.Writer, fn func()) io.Writer { return &notifyWriter{w, fn} }

type notifyWriter struct {
	w  io.Writer
	fn func()
}

func (n *notifyWriter) Write(p []byte) (int, error) {
	n.fn()
	return n.w.Write(p)
}
