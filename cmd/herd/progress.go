package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/herd-cluster/herd/ring"
	"github.com/herd-cluster/herd/ring/report"
)

// progressFunc receives session snapshots from ring.Send. The CLI picks one
// of three renderings: bars on a terminal, plain periodic lines otherwise,
// JSON lines with --json.
type progressFunc func(ring.Snapshot)

// newProgress returns the renderer for the output mode.
func newProgress(w io.Writer, tty, asJSON, verbose bool) progressFunc {
	switch {
	case asJSON:
		// Every second, and at once when a node's state changes: a
		// failure shows when the chain declares it, not a second later.
		return throttleOrChange(time.Second, func(s ring.Snapshot) {
			ev := report.Event{Event: report.Progress, Seconds: s.Elapsed.Seconds(), Total: s.Total, Bytes: s.Sent}
			for _, n := range s.Nodes {
				ev.Nodes = append(ev.Nodes, toJSONNode(n))
			}
			writeJSON(w, ev)
		})
	case tty:
		b := &bars{w: w}
		return b.draw
	default:
		every := 5 * time.Second
		if verbose {
			every = time.Second
		}
		plain := throttle(every, func(s ring.Snapshot) { printPlain(w, s, verbose) })
		var mu sync.Mutex
		failed := map[int]bool{}
		return func(s ring.Snapshot) {
			// A failure gets its own line when it happens.
			mu.Lock()
			defer mu.Unlock()
			for i, n := range s.Nodes {
				if n.State == ring.StateFailed && !failed[i] {
					failed[i] = true
					fmt.Fprintf(w, "%7.1fs  node %d (%s) failed: %s\n", s.Elapsed.Seconds(), i+1, n.Addr, n.Err)
				}
			}
			plain(s)
		}
	}
}

// throttleOrChange is throttle that also calls f at once when the state of
// a node differs from the last snapshot f saw.
func throttleOrChange(every time.Duration, f progressFunc) progressFunc {
	var mu sync.Mutex
	last := time.Duration(-1)
	var states []ring.State
	return func(s ring.Snapshot) {
		mu.Lock()
		defer mu.Unlock()
		changed := len(states) != len(s.Nodes)
		for i := 0; !changed && i < len(s.Nodes); i++ {
			changed = s.Nodes[i].State != states[i]
		}
		if !changed && last >= 0 && s.Elapsed-last < every {
			return
		}
		last = s.Elapsed
		states = states[:0]
		for _, n := range s.Nodes {
			states = append(states, n.State)
		}
		f(s)
	}
}

// throttle calls f at most once per interval (the first call always).
func throttle(every time.Duration, f progressFunc) progressFunc {
	var mu sync.Mutex
	last := time.Duration(-1)
	return func(s ring.Snapshot) {
		mu.Lock()
		defer mu.Unlock()
		if last >= 0 && s.Elapsed-last < every {
			return
		}
		last = s.Elapsed
		f(s)
	}
}

// printPlain writes one dolly-like line: bytes sent, rate, and the slowest
// node, or with verbose one line per node.
func printPlain(w io.Writer, s ring.Snapshot, verbose bool) {
	secs := s.Elapsed.Seconds()
	rate := 0.0
	if secs > 0 {
		rate = float64(s.Sent) / secs
	}
	slow, done, failed := -1, 0, 0
	for i, n := range s.Nodes {
		switch n.State {
		case ring.StateDone:
			done++
		case ring.StateFailed:
			failed++
		}
		if slow < 0 || n.Bytes < s.Nodes[slow].Bytes {
			slow = i
		}
	}
	line := fmt.Sprintf("%7.1fs  sent %s", secs, humanBytes(s.Sent))
	if s.Total > 0 {
		line += fmt.Sprintf(" of %s (%d%%)", humanBytes(s.Total), percent(s.Sent, s.Total))
	}
	line += fmt.Sprintf("  %s  nodes: %d done, %d failed, %d running", humanRate(rate), done, failed, len(s.Nodes)-done-failed)
	if slow >= 0 && !verbose {
		n := s.Nodes[slow]
		line += fmt.Sprintf("  slowest %s at %s", n.Addr, humanBytes(n.Bytes))
	}
	fmt.Fprintln(w, line)
	if verbose {
		for _, n := range s.Nodes {
			fmt.Fprintf(w, "         node %d %s %s %s %s %s\n", n.Index+1, n.Addr, n.State, humanBytes(n.Bytes), humanRate(n.Rate), n.Err)
		}
	}
}

func percent(a, b int64) int64 {
	if b <= 0 {
		return 0
	}
	p := a * 100 / b
	if p > 100 {
		p = 100
	}
	return p
}

// bars redraws one progress bar per node in place on a terminal.
type bars struct {
	mu    sync.Mutex
	w     io.Writer
	lines int
	last  time.Duration
}

func (b *bars) draw(s ring.Snapshot) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.lines > 0 && s.Elapsed-b.last < 200*time.Millisecond {
		return
	}
	b.last = s.Elapsed
	var sb strings.Builder
	if b.lines > 0 {
		fmt.Fprintf(&sb, "\x1b[%dA", b.lines)
	}
	width := 30
	for _, n := range s.Nodes {
		frac := 0.0
		if s.Total > 0 {
			frac = float64(n.Bytes) / float64(s.Total)
		}
		if n.State == ring.StateDone {
			frac = 1
		}
		if frac > 1 {
			frac = 1
		}
		fill := int(frac * float64(width))
		bar := strings.Repeat("=", fill)
		if fill < width {
			bar += ">" + strings.Repeat(" ", width-fill-1)
		}
		eta := "-"
		if n.Rate > 0 && s.Total > 0 && n.Bytes < s.Total {
			eta = humanDuration(time.Duration(float64(s.Total-n.Bytes) / n.Rate * float64(time.Second)))
		}
		state := string(n.State)
		if n.Err != "" {
			state += ": " + n.Err
		}
		fmt.Fprintf(&sb, "\x1b[2K%3d %s [%s] %3.0f%% %10s %11s ETA %6s  %s\n",
			n.Index+1, pad(n.Addr, 21), bar, frac*100, humanBytes(n.Bytes), humanRate(n.Rate), eta, state)
	}
	b.lines = len(s.Nodes)
	io.WriteString(b.w, sb.String())
}
