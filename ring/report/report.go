// Package report is herd's JSON lines format: what `herd send --json` and
// `herd recv --json` print, one event per line, and what the agent, herd
// deploy, the benches and the tests read back. It is an interface admins
// script against (docs/json.md): fields are added, never renamed, and
// every line says its Version, so that a reader refuses what it does not
// understand instead of misreading it.
//
// Public: the JSON lines are an interface (docs/json.md).
package report

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Version is the version of the format this package writes and the
// newest it reads. Lines without one come from herd before versions were
// written; their layout is version 1's.
const Version = 1

// Event kinds.
const (
	Progress = "progress" // while a session runs (herd send, every second)
	Summary  = "summary"  // once, at the end (herd send, herd recv)
	Deploy   = "deploy"   // once, at the end of herd deploy --json
)

// Machine is one machine of a deploy's ok/ko list: OK when it verified
// its copy and was switched to local boot; else Reason says why not.
// State is its boot state (new, cloning, done, local, failed, ...).
type Machine struct {
	MAC    string `json:"mac"`
	Name   string `json:"name,omitempty"`
	IP     string `json:"ip,omitempty"`
	OK     bool   `json:"ok"`
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
}

// Chain is one chain a deploy ran (stage2, then image or files): its
// machines in chain order and how each ended, as the sender saw it.
type Chain struct {
	Name  string      `json:"name"`
	OK    bool        `json:"ok"`
	Error string      `json:"error,omitempty"`
	Nodes []ChainNode `json:"nodes"`
}

// ChainNode is one node of a deploy's chain.
type ChainNode struct {
	MAC   string `json:"mac"`
	Addr  string `json:"addr"`
	State string `json:"state"`
	Error string `json:"error,omitempty"`
}

// Item is an item's outcome: on a node, or at the source in a summary.
type Item struct {
	Name     string `json:"name"`
	Dest     string `json:"dest"`
	Bytes    int64  `json:"bytes"`
	Digest   string `json:"digest,omitempty"`
	Verified bool   `json:"verified"`
}

// Node is a node's status, as the sender (or the node itself) knows it.
// State is one of waiting, connected, receiving, syncing, done, failed.
type Node struct {
	Index int     `json:"index"`
	Addr  string  `json:"addr"`
	State string  `json:"state"`
	Bytes int64   `json:"bytes"`
	Rate  float64 `json:"rate"`
	Error string  `json:"error"`
	Items []Item  `json:"items,omitempty"`
}

// Stats is what the source read and sent for one item.
type Stats struct {
	Item        string `json:"item"`
	DeviceBytes int64  `json:"device_bytes"`
	UsedBytes   int64  `json:"used_bytes"`
	WireBytes   int64  `json:"wire_bytes"`
	Method      string `json:"method"`
}

// Event is one line.
type Event struct {
	Version int     `json:"version"`
	Event   string  `json:"event"`        // Progress, Summary or Deploy
	OK      *bool   `json:"ok,omitempty"` // summaries: every node verified every item; deploy: every machine deployed
	Seconds float64 `json:"seconds"`
	Total   int64   `json:"total,omitempty"` // progress: bytes to send
	Bytes   int64   `json:"bytes"`
	Items   []Item  `json:"items,omitempty"`
	Nodes   []Node  `json:"nodes,omitempty"`
	Stats   []Stats `json:"stats,omitempty"`
	// Compress is the wire compression used (none, zstd); WireBytes the
	// chunk payload the source put on the wire, after compression.
	Compress  string `json:"compress,omitempty"`
	WireBytes int64  `json:"wire_bytes,omitempty"`
	// Insecure is set in the summary of a session run without a key.
	Insecure bool `json:"insecure,omitempty"`
	// Machines and Chains are a deploy's result, sorted by MAC and in
	// the order the chains ran.
	Machines []Machine `json:"machines,omitempty"`
	Chains   []Chain   `json:"chains,omitempty"`
	// Error is why a summary or deploy line says ok=false when the job
	// stopped before any node could be judged (nothing sent, nothing
	// listened, the services did not start); "" otherwise.
	Error string `json:"error,omitempty"`
}

// IsSummary reports whether ev is a summary (of herd send or herd recv)
// with its verdict.
func (ev *Event) IsSummary() bool { return ev.Event == Summary && ev.OK != nil }

// Failed returns the first node error of the event ("" if none).
func (ev *Event) Failed() string {
	for _, n := range ev.Nodes {
		if n.Error != "" {
			return n.Error
		}
	}
	return ""
}

// Write writes ev as one line, with this Version.
func Write(w io.Writer, ev Event) error {
	ev.Version = Version
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// ErrNotEvent is returned by Parse for a line that is no event (a log
// line mixed into the output, or an empty one).
var ErrNotEvent = errors.New("report: not an event line")

// ErrVersion is wrapped by the error Parse returns for a line of a newer
// version than this package reads.
var ErrVersion = errors.New("report: unknown version")

// MaxLine is the longest line Parse and Scan accept (a summary of a chain
// of thousands of nodes fits).
const MaxLine = 16 << 20

// Parse reads one line.
func Parse(line []byte) (*Event, error) {
	if len(line) > MaxLine {
		return nil, fmt.Errorf("%w: a line of %d bytes", ErrNotEvent, len(line))
	}
	var ev Event
	if err := json.Unmarshal(line, &ev); err != nil || ev.Event == "" {
		return nil, ErrNotEvent
	}
	if ev.Version > Version || ev.Version < 0 {
		return nil, fmt.Errorf("%w: the line says version %d, this herd reads up to %d (run the same herd everywhere)", ErrVersion, ev.Version, Version)
	}
	if ev.Version == 0 {
		ev.Version = 1
	}
	return &ev, nil
}

// Scan reads r line by line and calls fn with every event; lines that are
// no event are skipped. It stops at the first error of fn, of Parse's
// version check, or of r.
func Scan(r io.Reader, fn func(*Event) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), MaxLine)
	for sc.Scan() {
		ev, err := Parse(sc.Bytes())
		if errors.Is(err, ErrNotEvent) {
			continue
		}
		if err != nil {
			return err
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
	return sc.Err()
}

// LastSummary returns the last summary in r (nil if there is none).
func LastSummary(r io.Reader) (*Event, error) {
	var last *Event
	err := Scan(r, func(ev *Event) error {
		if ev.IsSummary() {
			last = ev
		}
		return nil
	})
	return last, err
}
