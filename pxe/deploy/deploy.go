// Package deploy is herd's whole flow for a set of machines, from PXE to
// local boot: wait until their agents registered with the PXE server,
// send an optional stage 2 through the chain and wait for every machine
// to come back from it, send the system (an image, or the files of a
// golden system laid out by a desc), decide each machine as soon as
// what it needs is known (verified: local boot, then a power cycle; else
// failed with the reason, left in PXE mode) and return the ok/ko list
// with every chain.
//
// A Deployer takes a Plan and returns a Result. The PXE services and the
// agents meet it only through the machine state (package pxe/state): the
// services record registrations and reports there, the Deployer reads
// them and records its decisions. The chain runs through a ChainRunner;
// Sender, the default, runs ring.Send in this process.
//
// The package is public on purpose: herd deploy is a thin command over
// it, and a site's own tooling may drive a Deployer with its own
// ChainRunner or Power function. It prints nothing; Logf gets its log.
package deploy

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/herd-cluster/herd/pxe/state"
	"github.com/herd-cluster/herd/ring/report"
)

// Method names, as in herd.method= on the agents' kernel line.
const (
	MethodRaw   = "raw"   // an image (or a disk, or a compressed image) block for block
	MethodFiles = "files" // KA's: partitions from a desc, fresh filesystems, the files
)

// Plan is what a deploy does.
type Plan struct {
	// MACs are the machines to clone: each is set back to new at the
	// start, whatever an earlier run left. Empty: any machine that
	// registers is taken (the PXE services decide who may).
	MACs []string
	// Nodes is how many machines to wait for (default: len(MACs)).
	Nodes int
	// Wait bounds the wait for registrations; Settle, without MACs,
	// waits that much longer for late machines once Nodes registered.
	Wait, Settle time.Duration
	// ReportTimeout bounds the wait for the agents' reports once a
	// chain ended.
	ReportTimeout time.Duration
	// Linger keeps the deploy (and the caller's PXE services) running
	// this long after the last machine went local, so that machines
	// rebooting get their local-boot answer.
	Linger time.Duration
	// AgentPort is the chain port of an agent that registered none.
	AgentPort int
	// Names are the machines' names by MAC, for the result (an
	// inventory's; else the name a machine registered with).
	Names map[string]string
	// Stage2, if set, is a root file system archive sent (cooked) into
	// every machine's RAM first; its own agent then registers again.
	Stage2 string
	// System is what the second chain sends.
	System Payload
	// Identity and Hooks say which fix-ups the agents were ordered to
	// do on their clones after a verified copy (the PXE services seal
	// the orders into the registration answers, see httpboot.Fixups):
	// the deploy logs them and, per machine, what its agent reported
	// doing. Hooks are the hooks' names. With Identity, the names of
	// Names are recorded in the machine state, where the answers take
	// them from.
	Identity bool
	Hooks    []string
}

// Payload is what a chain sends: one item (Image written at Dest,
// Cooked or not, only the UsedOnly blocks or all), or with Method files
// the golden system mounted at From laid out by Desc.
type Payload struct {
	Method    string // MethodRaw (default) or MethodFiles
	Image     string
	Dest      string
	Cook      bool
	UsedOnly  bool
	Desc      string
	From      string
	KeepUUIDs bool
}

// Deployer runs a Plan, once. Store, Runner and Plan are required.
type Deployer struct {
	Plan   Plan
	Store  *state.Store
	Runner ChainRunner
	// Start, if set, makes each machine of Plan.MACs PXE boot now, at
	// the start of the deploy (see BMCPower); one it fails for is ko
	// with the reason and not waited for. Nil: the machines are powered
	// by someone else.
	Start func(ctx context.Context, mac string) error
	// Power reboots one machine once it went local (nil: the machines
	// reboot by themselves). See ShellPower and BMCPower.
	Power func(ctx context.Context, m state.Machine) error
	// Logf gets the deploy's log lines (nil: none).
	Logf func(format string, args ...any)
	// Stopped, if set, says that the PXE services stopped: waiting for
	// registrations then ends with its error.
	Stopped <-chan error
}

// Result is the outcome of a deploy.
type Result struct {
	// Machines are every machine of the plan and every machine that
	// registered, sorted by MAC.
	Machines []report.Machine
	// Chains are the chains that ran, in order: stage2, then image or
	// files.
	Chains []report.Chain
	// Started counts the machines Start powered; Registered those
	// taken into the first chain; Rebooted those power cycled by Power.
	Started, Registered, Rebooted int
	Elapsed                       time.Duration
}

// Counts returns how many machines were deployed and how many not.
func (r *Result) Counts() (ok, ko int) {
	for _, m := range r.Machines {
		if m.OK {
			ok++
		} else {
			ko++
		}
	}
	return ok, ko
}

// Event is the result as the one JSON line of herd deploy --json.
func (r *Result) Event() report.Event {
	ok, ko := r.Counts()
	all := ok > 0 && ko == 0
	return report.Event{Event: report.Deploy, OK: &all, Seconds: r.Elapsed.Seconds(), Machines: r.Machines, Chains: r.Chains}
}

// ErrPlan is wrapped by the error Run returns for a plan it cannot run.
var ErrPlan = errors.New("deploy: bad plan")

// check normalizes the plan's MACs and fills its defaults.
func (p *Plan) check() error {
	macs := make([]string, 0, len(p.MACs))
	for _, m := range p.MACs {
		mac, err := state.NormalizeMAC(m)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrPlan, err)
		}
		macs = append(macs, mac)
	}
	p.MACs = macs
	if p.Nodes == 0 {
		p.Nodes = len(macs)
	}
	switch {
	case p.Nodes <= 0:
		return fmt.Errorf("%w: no machine to wait for", ErrPlan)
	case len(macs) > 0 && p.Nodes > len(macs):
		return fmt.Errorf("%w: %d machines to wait for but only %d MACs", ErrPlan, p.Nodes, len(macs))
	case p.System.Method != "" && p.System.Method != MethodRaw && p.System.Method != MethodFiles:
		return fmt.Errorf("%w: method %q", ErrPlan, p.System.Method)
	}
	if p.AgentPort == 0 {
		p.AgentPort = 9998
	}
	return nil
}

// run is the state of one Run.
type run struct {
	*Deployer
	ctx      context.Context
	mu       sync.Mutex // guards results and rebooted (power commands run beside the loop)
	results  map[string]*report.Machine
	rebooted int
	power    sync.WaitGroup
	// skip are machines not waited for: Start failed for them.
	skip map[string]bool
}

// Run does the deploy. Its error says why it could not run at all (a
// bad plan, the PXE services stopped, ctx ended before any machine
// registered); every machine's own outcome is in the Result.
func (d *Deployer) Run(ctx context.Context) (*Result, error) {
	if d.Store == nil || d.Runner == nil {
		return nil, fmt.Errorf("%w: a Deployer needs a Store and a Runner", ErrPlan)
	}
	if err := d.Plan.check(); err != nil {
		return nil, err
	}
	if d.Logf == nil {
		d.Logf = func(string, ...any) {}
	}
	r := &run{Deployer: d, ctx: ctx, results: map[string]*report.Machine{}, skip: map[string]bool{}}
	p := &d.Plan
	start := time.Now()
	// Machines named are to be cloned now, whatever an earlier run left:
	// back to new, with a fresh agent key (one that a boot file handed
	// out before this run no longer works).
	for _, mac := range p.MACs {
		cur, _ := d.Store.Get(mac)
		if _, err := d.Store.Set(mac, state.New, ""); err != nil {
			return nil, err
		}
		if cur.State != state.New {
			d.Logf("deploy: %s was %s, set to new to be cloned again", mac, cur.State)
		}
		if name := p.Names[mac]; name != "" && name != cur.Name {
			if _, err := d.Store.Add(mac, name); err != nil {
				return nil, err
			}
		}
		r.results[mac] = &report.Machine{MAC: mac, Name: p.Names[mac], State: string(state.New), Reason: "did not register"}
	}
	switch {
	case p.Identity && len(p.Hooks) > 0:
		d.Logf("deploy: after a verified copy each agent fixes its clone's identity (host name from the machine's name, machine-id, ssh host keys) and runs the hooks %s", strings.Join(p.Hooks, ", "))
	case p.Identity:
		d.Logf("deploy: after a verified copy each agent fixes its clone's identity (host name from the machine's name, machine-id, ssh host keys)")
	case len(p.Hooks) > 0:
		d.Logf("deploy: after a verified copy each agent runs the hooks %s in its clone", strings.Join(p.Hooks, ", "))
	}
	started := r.start(ctx)

	step := ""
	if p.Stage2 != "" {
		step = state.StepStage2
	}
	var nodes []state.Machine
	if p.Nodes > 0 {
		var err error
		if nodes, err = r.waitRegistered(ctx, start, step); err != nil {
			return nil, err
		}
	}
	res := &Result{Started: started, Registered: len(nodes)}
	for _, m := range nodes {
		r.results[m.MAC] = &report.Machine{MAC: m.MAC, Name: firstNonEmpty(p.Names[m.MAC], m.Name), IP: m.IP, State: string(state.Cloning)}
	}
	if len(nodes) > 0 {
		d.Logf("deploy: %d machine(s) registered: %s", len(nodes), addrList(nodes, p.AgentPort))
	}
	if p.Stage2 != "" && len(nodes) > 0 {
		var c report.Chain
		nodes, c = r.runPhase(ctx, stage2Phase(r, p), nodes)
		res.Chains = append(res.Chains, c)
		if len(nodes) > 0 {
			d.Logf("deploy: %d machine(s) run their stage 2 and wait for the system: %s", len(nodes), addrList(nodes, p.AgentPort))
		}
	}
	if len(nodes) > 0 {
		_, c := r.runPhase(ctx, systemPhase(r, p), nodes)
		res.Chains = append(res.Chains, c)
	}
	r.power.Wait()

	wentLocal := 0
	for _, m := range r.results {
		if m.OK {
			wentLocal++
		}
	}
	if wentLocal > 0 && p.Linger > 0 {
		d.Logf("deploy: serving %v more so the %d rebooting machine(s) (%d power cycled) boot locally", p.Linger, wentLocal, r.rebooted)
		t := time.NewTimer(p.Linger)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	r.noteAlarms()
	for _, m := range r.results {
		res.Machines = append(res.Machines, *m)
	}
	sort.Slice(res.Machines, func(i, j int) bool { return res.Machines[i].MAC < res.Machines[j].MAC })
	res.Rebooted = r.rebooted
	res.Elapsed = time.Since(start)
	return res, nil
}

// noteAlarms gives a machine that never made it into a chain the alarm
// it has, if any, as its reason: its registration was refused because
// its agent key had been used (by someone else, or by itself before a
// reboot).
func (r *run) noteAlarms() {
	for mac, res := range r.results {
		if m, ok := r.Store.Get(mac); ok && m.Alarm != "" && !res.OK && res.State == string(state.New) {
			res.IP, res.State, res.Reason = m.IP, string(m.State), "ALARM: "+m.Alarm
		}
	}
}
