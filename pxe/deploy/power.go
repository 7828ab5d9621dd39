package deploy

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/herd-cluster/herd/bmc"
	"github.com/herd-cluster/herd/internal/sh"
	"github.com/herd-cluster/herd/inventory"
	"github.com/herd-cluster/herd/pxe/state"
)

// PowerTimeout bounds one power command.
const PowerTimeout = time.Minute

// ShellPower returns a Power function that runs tmpl with sh -c, {mac},
// {ip} and {name} replaced by the machine's, shell-quoted ({name} is the
// MAC with dashes when the machine has none), for at most PowerTimeout.
// Its error quotes the start of the command's output.
func ShellPower(tmpl string) func(ctx context.Context, m state.Machine) error {
	return func(ctx context.Context, m state.Machine) error {
		ctx, cancel := context.WithTimeout(ctx, PowerTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "sh", "-c", PowerCommand(tmpl, m))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			msg := strings.TrimSpace(out.String())
			if len(msg) > 200 {
				msg = msg[:200]
			}
			return fmt.Errorf("power command: %v: %s", err, msg)
		}
		return nil
	}
}

// PowerCommand fills the {mac} {ip} {name} placeholders of tmpl,
// shell-quoted.
func PowerCommand(tmpl string, m state.Machine) string {
	name := m.Name
	if name == "" {
		name = strings.ReplaceAll(m.MAC, ":", "-")
	}
	return strings.NewReplacer("{mac}", sh.Quote(m.MAC), "{ip}", sh.Quote(m.IP), "{name}", sh.Quote(name)).Replace(tmpl)
}

// StartParallel bounds how many machines Start powers at once.
const StartParallel = 32

// start runs Start for every machine of the plan, StartParallel at a
// time, and returns how many it powered. One it failed for is ko with
// the reason and is not waited for.
func (r *run) start(ctx context.Context) int {
	p := &r.Plan
	if r.Start == nil || len(p.MACs) == 0 {
		return 0
	}
	r.Logf("deploy: powering %d machine(s) to PXE boot", len(p.MACs))
	errs := make([]error, len(p.MACs))
	sem := make(chan struct{}, StartParallel)
	var wg sync.WaitGroup
	for i, mac := range p.MACs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			ctx, cancel := context.WithTimeout(ctx, PowerTimeout)
			defer cancel()
			errs[i] = r.Start(ctx, mac)
		}()
	}
	wg.Wait()
	started := 0
	for i, mac := range p.MACs {
		if errs[i] == nil {
			started++
			continue
		}
		r.skip[mac] = true
		reason := "power: " + errs[i].Error()
		r.results[mac].State, r.results[mac].Reason = string(state.Failed), reason
		if _, err := r.Store.Fail(mac, reason); err != nil {
			r.Logf("deploy: %s: record failure: %v", mac, err)
		}
		r.Logf("deploy: %s failed: %s", mac, reason)
	}
	if left := len(p.MACs) - len(r.skip); p.Nodes > left {
		p.Nodes = left
	}
	return started
}

// BMCPower powers machines through their BMCs (package bmc): Start
// sets a machine to PXE boot once and power cycles it (or powers it
// on); Local, for a machine with a verified clone, sets it to boot its
// disk from now on and power cycles it.
type BMCPower struct {
	bmcs map[string]bmcOf // by MAC
}

type bmcOf struct {
	name string
	ctl  bmc.Controller
	efi  bool
}

// NewBMCPower opens the BMC of every machine (each must have one, and
// its credentials file must be usable).
func NewBMCPower(machines []inventory.Machine) (*BMCPower, error) {
	b := &BMCPower{bmcs: map[string]bmcOf{}}
	var op bmc.Opener
	for _, m := range machines {
		if !m.HasBMC() {
			return nil, fmt.Errorf("machine %s has no bmc in the inventory", m.Name)
		}
		ctl, err := op.Open(m.BMC, m.Credentials)
		if err != nil {
			return nil, fmt.Errorf("machine %s: %w", m.Name, err)
		}
		b.bmcs[m.MAC] = bmcOf{name: m.Name, ctl: ctl, efi: m.Firmware == "uefi"}
	}
	return b, nil
}

// Start makes the machine PXE boot now.
func (b *BMCPower) Start(ctx context.Context, mac string) error {
	return b.boot(ctx, mac, bmc.Boot{Device: bmc.PXE})
}

// Local makes the machine boot its disk now and from now on.
func (b *BMCPower) Local(ctx context.Context, m state.Machine) error {
	ctx, cancel := context.WithTimeout(ctx, PowerTimeout)
	defer cancel()
	return b.boot(ctx, m.MAC, bmc.Boot{Device: bmc.Disk, Persistent: true})
}

func (b *BMCPower) boot(ctx context.Context, mac string, bt bmc.Boot) error {
	m, ok := b.bmcs[mac]
	if !ok {
		return fmt.Errorf("%s: no BMC known", mac)
	}
	bt.EFI = m.efi
	if err := m.ctl.SetBoot(ctx, bt); err != nil {
		return fmt.Errorf("boot from %s: %w", bt.Device, err)
	}
	if err := m.ctl.Power(ctx, bmc.PowerCycle); err != nil {
		return fmt.Errorf("power cycle: %w", err)
	}
	return nil
}
