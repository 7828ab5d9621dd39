package deploy

import (
	"context"
	"errors"
	"sort"
	"time"

	"github.com/herd-cluster/herd/pxe/state"
)

// waitRegistered waits until Plan.Nodes machines (every one of MACs when
// given) registered at step since start, or until Plan.Wait; it returns
// those that did, in registration order (the chain's order). A machine
// with an alarm is never taken.
func (r *run) waitRegistered(ctx context.Context, start time.Time, step string) ([]state.Machine, error) {
	p := &r.Plan
	r.Logf("deploy: waiting up to %v for %d machine(s) to register", p.Wait, p.Nodes)
	allowed := map[string]bool{}
	for _, mac := range p.MACs {
		allowed[mac] = !r.skip[mac]
	}
	deadline := time.NewTimer(p.Wait)
	defer deadline.Stop()
	since := start.UTC().Truncate(time.Second)
	collect := func() []state.Machine {
		var out []state.Machine
		for _, m := range r.Store.List() {
			if m.State == state.Cloning && m.Step == step && m.Alarm == "" && !m.Updated.Before(since) && (len(allowed) == 0 || allowed[m.MAC]) {
				out = append(out, m)
			}
		}
		sort.SliceStable(out, func(i, j int) bool { return out[i].Updated.Before(out[j].Updated) })
		return out
	}
	var settle <-chan time.Time
	for {
		changed := r.Store.Changed()
		got := collect()
		if len(got) >= p.Nodes {
			if len(allowed) > 0 || p.Settle <= 0 {
				return got, nil
			}
			if settle == nil {
				settle = time.After(p.Settle)
			}
		}
		select {
		case <-changed:
		case <-settle:
			return collect(), nil
		case <-deadline.C:
			return collect(), nil
		case err := <-r.Stopped:
			if err == nil {
				err = errors.New("PXE services stopped")
			}
			return nil, err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
