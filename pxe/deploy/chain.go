package deploy

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/herd-cluster/herd/blockdev"
	"github.com/herd-cluster/herd/filelevel"
	"github.com/herd-cluster/herd/ring"
)

// Job is one chain: what to send, to which nodes.
type Job struct {
	// Name is the chain's name in the Result: stage2, image or files.
	Name string
	// Addrs are the nodes (host:port), in chain order.
	Addrs   []string
	Payload Payload
}

// Progress is how far a chain got.
type Progress struct {
	Sent, Total int64 // bytes; Total -1 when unknown
	Elapsed     time.Duration
	// Nodes and Route are every node's progress and the chain as its
	// source knows it, when the runner knows them (for a live view).
	Nodes []ring.NodeStatus
	Route []ring.Slot
}

// String renders p for a log line.
func (p Progress) String() string {
	const mib = 1 << 20
	rate := 0.0
	if s := p.Elapsed.Seconds(); s > 0 {
		rate = float64(p.Sent) / mib / s
	}
	switch {
	case p.Total > 0 && p.Sent >= p.Total:
		return fmt.Sprintf("all %d MiB sent in %.0f s, nodes finishing", p.Total/mib, p.Elapsed.Seconds())
	case p.Total > 0:
		return fmt.Sprintf("%d%% (%d of %d MiB, %.0f MiB/s)", p.Sent*100/p.Total, p.Sent/mib, p.Total/mib, rate)
	}
	return fmt.Sprintf("%d MiB (%.0f MiB/s)", p.Sent/mib, rate)
}

// NodeOutcome is how a chain ended for one node, as its sender saw it.
type NodeOutcome struct {
	Addr  string
	State string // the sender's node state: done, failed, ...
	Error string // why it failed
	// Verified: the node holds every item, its digest confirmed.
	Verified bool
}

// reason says why the chain did not verify the node.
func (o NodeOutcome) reason() string {
	switch {
	case o.Error != "":
		return o.Error
	case o.State == string(ring.StateDone):
		return "done but not verified"
	}
	return "node state " + o.State
}

// ChainOutcome is how a chain ended for every node, in chain order.
type ChainOutcome struct {
	Nodes []NodeOutcome
}

// A ChainRunner runs one chain to its end and says how it ended for
// every node. It returns a nil outcome when the chain did not run (its
// error says why); with an outcome, an error says what went wrong for
// the chain as a whole. It calls progress (if not nil) now and then,
// never after it returned, and stops when ctx ends.
type ChainRunner interface {
	RunChain(ctx context.Context, job Job, progress func(Progress)) (*ChainOutcome, error)
}

// Sender is the ChainRunner herd deploy uses: ring.Send in this process,
// keyed with Key, its other settings ring's defaults.
type Sender struct {
	Key []byte
	// ConnectTimeout bounds the wait for the first node (0: ring's
	// default).
	ConnectTimeout time.Duration
	// Logf gets the chain's log and the file-level sender's warnings
	// (nil: none).
	Logf func(format string, args ...any)
}

// RunChain runs job with ring.Send.
func (s *Sender) RunChain(ctx context.Context, job Job, progress func(Progress)) (*ChainOutcome, error) {
	items, err := s.items(ctx, job.Payload)
	if err != nil {
		return nil, err
	}
	cfg := ring.SenderConfig{
		Nodes:          job.Addrs,
		Items:          items,
		Key:            s.Key,
		ConnectTimeout: s.ConnectTimeout,
		Logf:           s.Logf,
	}
	if progress != nil {
		cfg.Progress = func(sn ring.Snapshot) {
			progress(Progress{Sent: sn.Sent, Total: sn.Total, Elapsed: sn.Elapsed, Nodes: sn.Nodes, Route: sn.Route})
		}
	}
	rep, err := ring.Send(ctx, cfg)
	if err != nil {
		return nil, err
	}
	out := &ChainOutcome{}
	for _, n := range rep.Nodes {
		out.Nodes = append(out.Nodes, NodeOutcome{Addr: n.Addr, State: string(n.State), Error: n.Err, Verified: rep.Verified(n)})
	}
	return out, nil
}

// items opens the payload's sources once, to check them and learn their
// sizes, and returns the session's items.
func (s *Sender) items(ctx context.Context, p Payload) ([]ring.SendItem, error) {
	if p.Method == MethodFiles {
		text, err := os.ReadFile(p.Desc)
		if err != nil {
			return nil, fmt.Errorf("read desc: %w", err)
		}
		fs, err := filelevel.NewSender(ctx, string(text), filelevel.SendOptions{From: p.From, KeepUUIDs: p.KeepUUIDs, Logf: s.Logf})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.Desc, err)
		}
		return fs.Items(), nil
	}
	opts := blockdev.SourceOptions{Raw: true, UsedOnly: p.UsedOnly && !p.Cook}
	probe, err := blockdev.OpenSource(p.Image, opts)
	if err != nil {
		return nil, err
	}
	size := probe.Size()
	probe.Close()
	return []ring.SendItem{{
		Item: ring.Item{Name: p.Image, Dest: p.Dest, Cook: p.Cook, Size: size},
		Open: func() (ring.Source, error) { return blockdev.OpenSource(p.Image, opts) },
	}}, nil
}
