package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/herd-cluster/herd/bmc"
	"github.com/herd-cluster/herd/inventory"
)

type powerOptions struct {
	inventory, bmcAddr, credentials, firmware string
	all                                       bool
}

func newPowerCmd() *cobra.Command {
	var o powerOptions
	cmd := &cobra.Command{
		Use:   "power (on|off|cycle|status|pxe-once|disk) (HOSTLIST... | --all) --inventory FILE",
		Short: "Power machines on, off or through a cycle, or set what they boot, through their BMCs",
		Long: `Power drives the BMCs of the machines named (by name or MAC) in --inventory,
or of one BMC given by --bmc ADDR --credentials FILE, all at once. Names may
be hostlists: node[01-16], node[1-3,7],gpu[1-2], rack[1-2]-n[01-04].

  on, off, cycle  power (cycle powers on a machine that is off)
  status          print each machine's power state
  pxe-once        boot from the network at the next boot only
  disk            boot from the disk from now on

A BMC address is ipmi://HOST[:PORT] (IPMI over LAN, through ipmitool) or
redfish://HOST[:PORT][/redfish/v1/Systems/ID] (Redfish over HTTPS). The
credentials file holds user=, password= and, for Redfish, ca= (see
docs/bmc.md); it must not be readable by group or others. Machines whose
inventory entry says firmware: uefi get UEFI boot overrides.

Exit codes: 0 every machine done, 1 some failed, 2 usage, 3 all failed.`,
		Example: `  herd power status --all --inventory /etc/herd/inventory.yaml
  herd power cycle node01 node02 --inventory /etc/herd/inventory.yaml
  herd power on 'node[01-16]' --inventory /etc/herd/inventory.yaml
  herd power pxe-once --bmc ipmi://10.0.1.101 --credentials /etc/herd/bmc.cred`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPower(cmd.Context(), &o, args[0], args[1:], cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.inventory, "inventory", "", "inventory file with the machines' BMCs")
	f.BoolVar(&o.all, "all", false, "every machine of the inventory")
	f.StringVar(&o.bmcAddr, "bmc", "", "one BMC's address, without an inventory")
	f.StringVar(&o.credentials, "credentials", "", "with --bmc: its credentials file")
	f.StringVar(&o.firmware, "firmware", "bios", "with --bmc: bios or uefi (the boot override's mode)")
	return cmd
}

// powerTarget is one machine whose BMC is driven.
type powerTarget struct {
	name string
	ctl  bmc.Controller
	efi  bool
}

// runPower checks everything (the action, the machines, every
// credentials file) before it sends anything to a BMC.
func runPower(ctx context.Context, o *powerOptions, action string, names []string, stdout io.Writer) error {
	var do func(context.Context, powerTarget) (string, error)
	switch action {
	case "on", "off", "cycle":
		a, _ := bmc.ParseAction(action)
		do = func(ctx context.Context, t powerTarget) (string, error) { return "done", t.ctl.Power(ctx, a) }
	case "status":
		do = func(ctx context.Context, t powerTarget) (string, error) {
			st, err := t.ctl.State(ctx)
			return string(st), err
		}
	case "pxe-once", "disk":
		b := bmc.Boot{Device: bmc.PXE}
		if action == "disk" {
			b = bmc.Boot{Device: bmc.Disk, Persistent: true}
		}
		do = func(ctx context.Context, t powerTarget) (string, error) {
			b := b
			b.EFI = t.efi
			return "set", t.ctl.SetBoot(ctx, b)
		}
	default:
		return usagef("power: action %q: want on, off, cycle, status, pxe-once or disk", action)
	}
	targets, err := powerTargets(o, names)
	if err != nil {
		return err
	}
	results := make([]string, len(targets))
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i, t := range targets {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			results[i], errs[i] = do(ctx, t)
		}()
	}
	wg.Wait()
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	failed := 0
	for i, t := range targets {
		if errs[i] != nil {
			failed++
			fmt.Fprintf(tw, "%s\tKO\t%v\n", t.name, errs[i])
		} else {
			fmt.Fprintf(tw, "%s\t%s\n", t.name, results[i])
		}
	}
	tw.Flush()
	switch {
	case failed == 0:
		return nil
	case failed == len(targets):
		return exitError{ExitFailed, fmt.Errorf("power %s failed for every machine", action)}
	}
	return exitError{ExitPartial, fmt.Errorf("power %s failed for %d of %d machines", action, failed, len(targets))}
}

// powerTargets opens the BMCs of the machines named (or of --bmc).
func powerTargets(o *powerOptions, names []string) ([]powerTarget, error) {
	if o.firmware != "bios" && o.firmware != "uefi" {
		return nil, usagef("--firmware %q: want bios or uefi", o.firmware)
	}
	if o.bmcAddr != "" {
		switch {
		case o.inventory != "" || o.all || len(names) > 0:
			return nil, usagef("--bmc drives one BMC: no --inventory, --all or machine names with it")
		case o.credentials == "":
			return nil, usagef("--bmc needs --credentials FILE")
		}
		a, err := bmc.ParseAddr(o.bmcAddr)
		if err != nil {
			return nil, usageError{err}
		}
		t, err := openTarget(&bmc.Opener{}, o.bmcAddr, a, o.credentials, o.firmware == "uefi")
		if err != nil {
			return nil, err
		}
		return []powerTarget{t}, nil
	}
	if o.inventory == "" {
		return nil, usagef("give --inventory FILE (or --bmc ADDR --credentials FILE)")
	}
	if o.all == (len(names) > 0) {
		return nil, usagef("name the machines, or give --all")
	}
	inv, err := inventory.Load(o.inventory)
	if err != nil {
		return nil, usageError{err}
	}
	var expanded []string
	for _, n := range names {
		e, err := inventory.ExpandHostlist(n)
		if err != nil {
			return nil, usageError{err}
		}
		expanded = append(expanded, e...)
	}
	ms, err := inv.Select(expanded)
	if err != nil {
		return nil, usageError{err}
	}
	var op bmc.Opener
	var targets []powerTarget
	var none []string
	for _, m := range ms {
		if !m.HasBMC() {
			none = append(none, m.Name)
			continue
		}
		t, err := openTarget(&op, m.Name, m.BMC, m.Credentials, m.Firmware == "uefi")
		if err != nil {
			return nil, err
		}
		targets = append(targets, t)
	}
	if len(none) > 0 {
		return nil, usagef("no bmc in %s for %s", o.inventory, strings.Join(none, ", "))
	}
	return targets, nil
}

// openTarget opens the BMC at a with the credentials at credPath (read
// once per file through op).
func openTarget(op *bmc.Opener, name string, a bmc.Addr, credPath string, efi bool) (powerTarget, error) {
	ctl, err := op.Open(a, credPath)
	if err != nil {
		if errors.Is(err, bmc.ErrCredentials) {
			return powerTarget{}, usageError{fmt.Errorf("%s: %w", name, err)}
		}
		return powerTarget{}, fmt.Errorf("%s: %w", name, err)
	}
	return powerTarget{name: name, ctl: ctl, efi: efi}, nil
}
