package core

import (
	"fmt"

	"github.com/herd-cluster/herd/ring/wire"
)

// TraceLines describes, one line each, the event a Node or Sender stepped
// and the actions it returned, leaving out the bulk of a session (data
// frames, acks, writes, reads, ticks) so the decisions stand out. The
// simulator's trace and the TCP driver's (HERD_RING_TRACE) both print
// them, so a schedule can be compared line by line with a real run.
func TraceLines(ev Event, acts []Action) []string { return traceLines(ev, acts, false) }

// TraceLinesWithAcks is TraceLines with acks too (received and sent): what
// to read when a decision came from what a node was told of the others.
func TraceLinesWithAcks(ev Event, acts []Action) []string { return traceLines(ev, acts, true) }

func traceLines(ev Event, acts []Action, acks bool) []string {
	var lines []string
	quiet := ev.Kind == EvRead || ev.Kind == EvWritten || ev.Kind == EvSent || ev.Kind == EvReadBack || ev.Kind == EvTick
	if !quiet && !bulk(ev.Msg, acks) {
		lines = append(lines, fmt.Sprintf("%v idx=%d%s %s", ev.Kind, ev.Index, traceMsg(ev.Msg), ev.Err))
	}
	for _, a := range acts {
		if bulk(a.Msg, acks) || a.Kind == ActWrite || a.Kind == ActRelease || a.Kind == ActReadBack {
			continue
		}
		lines = append(lines, fmt.Sprintf("  -> %v idx=%d%s %s (on %v)", a.Kind, a.Index, traceMsg(a.Msg), a.Err, ev.Kind))
	}
	return lines
}

// bulk reports whether m is a data frame, or an ack when acks are not
// traced.
func bulk(m wire.Msg, acks bool) bool {
	switch m.(type) {
	case *wire.Data:
		return true
	case *wire.Ack:
		return !acks
	}
	return false
}

func traceMsg(m wire.Msg) string {
	switch m := m.(type) {
	case nil:
		return ""
	case *wire.Data:
		return fmt.Sprintf(" data#%d", m.Seq)
	case *wire.Hello:
		return fmt.Sprintf(" hello(index %d tail %v takeover %v)", m.Index, m.Tail, m.Takeover)
	case *wire.Manifest:
		return " manifest"
	case *wire.ItemEnd:
		return fmt.Sprintf(" item-end %d", m.Item)
	case *wire.End:
		return " end"
	case *wire.Ack:
		// node:frames/downstream's frames, then flags and state when set
		var b []byte
		b = append(b, " ack"...)
		for _, n := range m.Nodes {
			b = fmt.Appendf(b, " %d:%d/%d", n.Index, n.Frames, n.DownFrames)
			if n.Flags != 0 {
				b = fmt.Appendf(b, "f%d", n.Flags)
			}
			if n.State != wire.StReceiving {
				b = fmt.Appendf(b, "s%d", n.State)
			}
		}
		return string(b)
	}
	return fmt.Sprintf(" %T%+v", m, m)
}
