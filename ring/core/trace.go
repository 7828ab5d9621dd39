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
func TraceLines(ev Event, acts []Action) []string {
	var lines []string
	quiet := ev.Kind == EvRead || ev.Kind == EvWritten || ev.Kind == EvSent || ev.Kind == EvReadBack || ev.Kind == EvTick
	if !quiet && !bulk(ev.Msg) {
		lines = append(lines, fmt.Sprintf("%v idx=%d%s %s", ev.Kind, ev.Index, traceMsg(ev.Msg), ev.Err))
	}
	for _, a := range acts {
		if bulk(a.Msg) || a.Kind == ActWrite || a.Kind == ActRelease || a.Kind == ActReadBack {
			continue
		}
		lines = append(lines, fmt.Sprintf("  -> %v idx=%d%s %s (on %v)", a.Kind, a.Index, traceMsg(a.Msg), a.Err, ev.Kind))
	}
	return lines
}

// bulk reports whether m is a data frame or an ack.
func bulk(m wire.Msg) bool {
	switch m.(type) {
	case *wire.Data, *wire.Ack:
		return true
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
	}
	return fmt.Sprintf(" %T%+v", m, m)
}
