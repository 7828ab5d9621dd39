package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/herd-cluster/herd/live"
	"github.com/herd-cluster/herd/pxe/deploy"
	"github.com/herd-cluster/herd/ring"
)

// liveOptions are the live view's flags (herd send, deploy, pxe serve).
type liveOptions struct {
	addr   string
	linger time.Duration
}

func addLiveFlags(f *pflag.FlagSet, o *liveOptions) {
	f.StringVar(&o.addr, "http", "", "serve a live view on HOST:PORT while this runs: a web page, the JSON API (/api/v1/view) and Prometheus metrics (/metrics); read-only, no key: bind it to an address only operators reach")
	f.DurationVar(&o.linger, "http-linger", 0, "with --http, keep serving the final view this long after the end (Ctrl-C stops it sooner)")
}

// check refuses a bad address before anything starts.
func (o liveOptions) check() error {
	if o.addr == "" {
		if o.linger != 0 {
			return usagef("--http-linger needs --http")
		}
		return nil
	}
	if o.linger < 0 {
		return usagef("--http-linger %v: want a duration of 0 or more", o.linger)
	}
	if err := live.CheckAddr(o.addr); err != nil {
		return usageError{fmt.Errorf("--http: %w", err)}
	}
	return nil
}

// start serves a hub of kind when --http was given and returns it (nil
// otherwise) with the func that ends the view: it lingers as asked,
// then stops serving.
func (o liveOptions) start(ctx context.Context, kind string, stderr io.Writer) (*live.Hub, func(), error) {
	if o.addr == "" {
		return nil, func() {}, nil
	}
	hub := live.NewHub(kind)
	srv, err := live.Listen(o.addr, hub)
	if err != nil {
		return nil, nil, err
	}
	log := loggerFrom(ctx, stderr)
	log.Info("live view at "+srv.URL(), "metrics", srv.URL()+"metrics")
	return hub, func() {
		if o.linger > 0 {
			log.Info(fmt.Sprintf("live view stays up %v (Ctrl-C ends it)", o.linger))
			select {
			case <-time.After(o.linger):
			case <-ctx.Done():
			}
		}
		srv.Close()
	}, nil
}

// verdicts are the report's nodes as the live view shows them at the
// end: a node is done only if the report verified it.
func verdicts(rep *ring.Report) []ring.NodeStatus {
	out := make([]ring.NodeStatus, len(rep.Nodes))
	for i, n := range rep.Nodes {
		if !rep.Verified(n) && n.State != ring.StateFailed {
			n.State = ring.StateFailed
			n.Err = strings.TrimPrefix(nodeResult(rep, n), "FAILED: ")
		}
		out[i] = n
	}
	return out
}

// liveRunner runs a deploy's chains with inner and shows them in hub.
type liveRunner struct {
	inner deploy.ChainRunner
	hub   *live.Hub
}

// RunChain runs job, feeding the hub its progress and its outcome.
func (r liveRunner) RunChain(ctx context.Context, job deploy.Job, progress func(deploy.Progress)) (*deploy.ChainOutcome, error) {
	if r.hub == nil {
		return r.inner.RunChain(ctx, job, progress)
	}
	r.hub.StartChain(job.Name, job.Addrs)
	out, err := r.inner.RunChain(ctx, job, func(p deploy.Progress) {
		if progress != nil {
			progress(p)
		}
		r.hub.Progress(ring.Snapshot{Elapsed: p.Elapsed, Total: p.Total, Sent: p.Sent, Nodes: p.Nodes, Route: p.Route})
	})
	if out != nil {
		nodes := make([]ring.NodeStatus, len(out.Nodes))
		for i, n := range out.Nodes {
			nodes[i] = ring.NodeStatus{Index: i, Addr: n.Addr, State: ring.State(n.State), Err: n.Error}
			if !n.Verified && n.State == string(ring.StateDone) {
				nodes[i].State, nodes[i].Err = ring.StateFailed, "done but not verified"
			}
		}
		r.hub.Outcome(nodes)
	}
	return out, err
}
