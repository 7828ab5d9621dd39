package deploy

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/herd-cluster/herd/pxe/agent"
	"github.com/herd-cluster/herd/pxe/state"
	"github.com/herd-cluster/herd/ring/report"
)

// verdict is a machine's own word on a phase, read from the store.
type verdict int

const (
	pending  verdict = iota
	finished         // it did its part of the phase
	failed
)

// phase is one chain of a deploy and how its machines are decided. The
// stage 2 and the system go through the same loop (runPhase); they
// differ only in what a machine's record says and what is done with a
// machine that finished.
type phase struct {
	job Job
	// prefix starts the reasons the deploy gives for this phase (those
	// of the chain and of a late agent): "stage 2: ".
	prefix string
	// judge reads a machine's record: finished, failed (with the reason
	// shown in the result and the one to store), or pending.
	judge func(m state.Machine) (v verdict, shown, stored string)
	// finish is run once for a machine that finished, m its record:
	// the stage 2 records it as waiting for the system, the system
	// switches it to local boot.
	finish func(m state.Machine)
	// late is the reason of a machine still pending ReportTimeout after
	// the chain ended.
	late string
}

// stage2Phase sends the stage 2 into every machine's RAM (cooked, to the
// folder its agent unpacks it in); a machine finished it when its stage
// 2's agent registered again.
func stage2Phase(r *run, p *Plan) phase {
	return phase{
		job:    Job{Name: "stage2", Payload: Payload{Method: MethodRaw, Image: p.Stage2, Dest: agent.Stage2Out, Cook: true}},
		prefix: "stage 2: ",
		judge: func(m state.Machine) (verdict, string, string) {
			switch {
			case m.Alarm != "":
				return failed, "ALARM: " + m.Alarm, "ALARM: " + m.Alarm
			case m.State == state.Failed:
				return failed, "agent: " + m.Reason, m.Reason
			case m.State == state.Cloning && m.Step == "":
				return finished, "", ""
			case m.State != state.Cloning:
				r := fmt.Sprintf("stage 2: machine left the deploy (state %s)", m.State)
				return failed, r, r
			}
			return pending, "", ""
		},
		finish: func(m state.Machine) {
			r.setResult(m.MAC, false, string(m.State), "")
			r.Logf("deploy: %s runs its stage 2 and waits for the system", m.MAC)
		},
		late: fmt.Sprintf("agent did not come back from its stage 2 within %v", p.ReportTimeout),
	}
}

// systemPhase sends the system; a machine finished when its agent
// reported a verified copy, and is then switched to local boot at once
// (its agent reboots right after reporting, so the local answer must be
// ready before its next PXE boot) and power cycled.
func systemPhase(r *run, p *Plan) phase {
	name := "image"
	if p.System.Method == MethodFiles {
		name = "files"
	}
	return phase{
		job: Job{Name: name, Payload: p.System},
		judge: func(m state.Machine) (verdict, string, string) {
			switch {
			case m.Alarm != "":
				// Someone else registered with its key, or it rebooted
				// during the clone: never local by itself.
				return failed, "ALARM: " + m.Alarm, "ALARM: " + m.Alarm
			case m.State == state.Done || m.State == state.Local:
				return finished, "", ""
			case m.State == state.Failed:
				return failed, "agent: " + m.Reason, m.Reason
			}
			return pending, "", ""
		},
		finish: func(m state.Machine) {
			switch {
			case m.Fixups != "":
				r.Logf("deploy: %s %s: %s", m.MAC, firstNonEmpty(m.Name, "(no name)"), m.Fixups)
			case p.Identity || len(p.Hooks) > 0:
				r.Logf("deploy: %s: its agent reported no fix-ups (an agent older than this server?)", m.MAC)
			}
			r.goLocal(m)
		},
		late: fmt.Sprintf("agent did not report within %v", p.ReportTimeout),
	}
}

// chainEnd is how a chain ended: out nil when it did not run.
type chainEnd struct {
	out *ChainOutcome
	err error
}

// runPhase runs p's chain through nodes and decides every machine as
// soon as what it needs is known: its own record says it finished or
// failed, or the chain ended without verifying it. A machine that
// finished before the chain ended and that the chain then did not verify
// is failed after all. It returns once the chain ended and every machine
// is decided (those not decided ReportTimeout after the chain are late),
// with the machines that finished, in chain order, as their records
// then were, and the chain's record.
func (r *run) runPhase(ctx context.Context, p phase, nodes []state.Machine) ([]state.Machine, report.Chain) {
	addrs, byAddr := chainAddrs(nodes, r.Plan.AgentPort)
	p.job.Addrs = addrs
	r.Logf("deploy: %s chain through %d machine(s)", p.job.Name, len(nodes))
	endC := make(chan chainEnd, 1)
	go func() {
		var last time.Time
		out, err := r.Runner.RunChain(ctx, p.job, func(pr Progress) {
			if time.Since(last) >= 5*time.Second {
				last = time.Now()
				r.Logf("deploy: %s chain %s", p.job.Name, pr)
			}
		})
		endC <- chainEnd{out, err}
	}()
	var (
		end      *chainEnd
		limit    <-chan time.Time
		decided  = map[string]bool{}
		done     = map[string]state.Machine{}
		verified = map[string]bool{}   // by the chain, once it ended
		why      = map[string]string{} // the chain's reason for a node it did not verify
	)
	fail := func(mac, shown, stored string) {
		decided[mac] = true
		r.setResult(mac, false, string(state.Failed), shown)
		if cur, _ := r.Store.Get(mac); cur.State != state.Failed || cur.Reason != stored {
			if _, err := r.Store.Fail(mac, stored); err != nil {
				r.Logf("deploy: %s: record failure: %v", mac, err)
			}
		}
		r.Logf("deploy: %s failed: %s", mac, shown)
	}
	for {
		changed := r.Store.Changed()
		for _, n := range nodes {
			if decided[n.MAC] {
				continue
			}
			if end != nil {
				if end.out == nil && ctx.Err() != nil {
					// The chain stopped because the deploy was
					// interrupted, whichever of the two came first.
					fail(n.MAC, "interrupted", "deploy interrupted")
					continue
				}
				if end.out == nil {
					reason := fmt.Sprintf("%schain did not run: %v", p.prefix, end.err)
					fail(n.MAC, reason, reason)
					continue
				}
				if !verified[n.MAC] {
					reason := p.prefix + "chain: " + firstNonEmpty(why[n.MAC], "missing from the chain's result")
					fail(n.MAC, reason, reason)
					continue
				}
			}
			m, _ := r.Store.Get(n.MAC)
			switch v, shown, stored := p.judge(m); v {
			case finished:
				decided[n.MAC] = true
				done[n.MAC] = m
				r.mu.Lock()
				r.results[n.MAC].IP = firstNonEmpty(m.IP, r.results[n.MAC].IP)
				r.mu.Unlock()
				p.finish(m)
			case failed:
				fail(n.MAC, shown, stored)
			}
		}
		if end != nil && len(decided) == len(nodes) {
			break
		}
		select {
		case <-changed:
		case e := <-endC:
			end = &e
			if e.err != nil {
				r.Logf("deploy: %s chain: %v", p.job.Name, e.err)
			}
			if e.out != nil {
				for _, o := range e.out.Nodes {
					if mac := byAddr[o.Addr]; mac != "" {
						verified[mac], why[mac] = o.Verified, o.reason()
					}
				}
			}
			// The chain's word on a node comes last: one that finished
			// but that the chain did not verify fails after all.
			for mac := range done {
				if !verified[mac] {
					delete(done, mac)
					delete(decided, mac)
				}
			}
			limit = time.After(r.Plan.ReportTimeout)
		case <-limit:
			for _, n := range nodes {
				if !decided[n.MAC] {
					fail(n.MAC, p.prefix+p.late, p.prefix+p.late)
				}
			}
		case <-ctx.Done():
			for _, n := range nodes {
				if !decided[n.MAC] {
					fail(n.MAC, "interrupted", "deploy interrupted")
				}
			}
			if end == nil {
				e := <-endC // the runner stops with ctx
				end = &e
			}
		}
	}
	var out []state.Machine
	for _, n := range nodes {
		if m, ok := done[n.MAC]; ok {
			out = append(out, m)
		}
	}
	return out, chainRecord(p.job.Name, end, byAddr)
}

// goLocal switches a machine that reported a verified copy to local boot
// and, with Power, power cycles it (beside the loop).
func (r *run) goLocal(m state.Machine) {
	if _, err := r.Store.MarkLocal(m.MAC); err != nil {
		cur, _ := r.Store.Get(m.MAC)
		r.setResult(m.MAC, false, string(cur.State), fmt.Sprintf("switch to local boot: %v", err))
		return
	}
	r.setResult(m.MAC, true, string(state.Local), "")
	r.Logf("deploy: %s verified, switched to local boot", m.MAC)
	if r.Power == nil {
		return
	}
	r.mu.Lock()
	r.rebooted++
	r.mu.Unlock()
	r.power.Add(1)
	go func() {
		defer r.power.Done()
		if err := r.Power(r.ctx, m); err != nil {
			reason := "local boot set, reboot failed: " + err.Error()
			r.mu.Lock()
			r.results[m.MAC].Reason = reason
			r.rebooted--
			r.mu.Unlock()
			r.Logf("deploy: %s: %s", m.MAC, reason)
		}
	}()
}

// setResult records a machine's outcome.
func (r *run) setResult(mac string, ok bool, st, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := r.results[mac]
	res.OK, res.State, res.Reason = ok, st, reason
}

// chainRecord summarizes a finished chain for the result.
func chainRecord(name string, end *chainEnd, byAddr map[string]string) report.Chain {
	c := report.Chain{Name: name}
	if end.err != nil {
		c.Error = end.err.Error()
	}
	if end.out == nil {
		return c
	}
	c.OK = end.err == nil && len(end.out.Nodes) > 0
	for _, n := range end.out.Nodes {
		c.OK = c.OK && n.Verified
		c.Nodes = append(c.Nodes, report.ChainNode{MAC: byAddr[n.Addr], Addr: n.Addr, State: n.State, Error: n.Error})
	}
	return c
}

// chainAddrs returns the chain's addresses for nodes, in order, and the
// MAC at each address; a node that registered without a port is reached
// on defaultPort.
func chainAddrs(nodes []state.Machine, defaultPort int) ([]string, map[string]string) {
	addrs := make([]string, len(nodes))
	byAddr := map[string]string{}
	for i, m := range nodes {
		port := m.Port
		if port == 0 {
			port = defaultPort
		}
		addrs[i] = net.JoinHostPort(m.IP, strconv.Itoa(port))
		byAddr[addrs[i]] = m.MAC
	}
	return addrs, byAddr
}

// addrList is the chain of nodes as a log shows it.
func addrList(nodes []state.Machine, defaultPort int) string {
	addrs, _ := chainAddrs(nodes, defaultPort)
	return strings.Join(addrs, ",")
}

func firstNonEmpty(a ...string) string {
	for _, s := range a {
		if s != "" {
			return s
		}
	}
	return ""
}
