package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/herd-cluster/herd/blockdev"
	"github.com/herd-cluster/herd/internal/syncio"
	"github.com/herd-cluster/herd/pxe"
	"github.com/herd-cluster/herd/pxe/agent"
	"github.com/herd-cluster/herd/pxe/deploy"
	"github.com/herd-cluster/herd/pxe/httpboot"
	"github.com/herd-cluster/herd/ring/report"
)

type deployOptions struct {
	pxe           pxeFlags
	nodes         int
	image         string
	wait          time.Duration
	settle        time.Duration
	reportTimeout time.Duration
	linger        time.Duration
	powerCmd      string
	bmc           bool
	connTimeout   time.Duration
	json          bool
	stage2        string
	usedOnly      bool
	desc          string
	from          string
	keepUUIDs     bool
	identity      string
	hooks         []string
	hookTimeout   time.Duration
}

func newDeployCmd() *cobra.Command {
	var o deployOptions
	cmd := &cobra.Command{
		Use:   "deploy --boot-dir DIR (--nodes N | --macs A,B,... | --inventory FILE [--bmc]) (--image FILE | --method files --desc DESC --from DIR) --disk DEV [pxe flags]",
		Short: "Do the whole job: PXE-boot the nodes, clone the image down the chain, switch them to local boot",
		Long: `Deploy serves PXE (as herd pxe serve), waits until the agents of --nodes N
machines (or of every --macs machine) have registered, runs the chain to them
in this process (as herd send --to ip1:port,ip2:port,... --in IMAGE --out DISK
would), waits for every agent's report, switches each verified machine to local boot, reboots it
with --power-cmd and prints the ok/ko list. A machine that failed stays in PXE
mode with its reason in the state file.

Each machine is decided as soon as its agent reports: a verified one goes to
local boot at once (the agent reboots by itself right after reporting), then
--power-cmd is run by sh -c with {mac}, {ip} and {name} replaced (shell-quoted;
{name} is the MAC with dashes when the machine has no name), e.g.
  --power-cmd 'ipmitool -I lanplus -H {name}-bmc -U admin -P secret power reset'
  --power-cmd 'echo system_reset | socat - UNIX-CONNECT:/run/vm/{name}.mon'
Without it the machines are switched to local boot and reboot on their own.

--inventory FILE names the machines (all of it, or --machines NAME,...) with
their own disk rules; with --bmc herd powers them through their BMCs (IPMI or
Redfish, see docs/bmc.md and herd power): at the start each is set to PXE boot
once and power cycled (powered on if off), so a machine that would boot its
disk registers; once verified, each is set to boot its disk and power cycled.
A machine whose BMC fails is ko with the BMC's error and is not waited for.

--method selects how the system travels: raw (the default: --image block for
block; --used-only skips blocks no file system uses) or files (KA's: every
node partitions its disk from --desc laid out for its size, makes the file
systems and receives the files of the golden system mounted at --from, as
herd send/recv --files). The files method runs mkfs, mount and extlinux on
the nodes: the agent's initramfs has none, so give a --stage2 that has them
(herd initramfs stage2 --tools mkfs.ext4,blkid,e2fsck,extlinux,...).

--stage2 FILE is the seed's step 2: every agent first receives FILE (an
archive of a root file system) through the chain into RAM, switches to it,
and the stage 2's own herd agent registers again and receives the image.
The result lists both chains (stage2, then image or files) with every node's
state.

Identity and hooks: after a verified copy each agent mounts its clone's root
file system and, with --identity yes (the default when the machines have
names, from --inventory; by default a clone with no root file system, a data
disk, is left as it is, while an explicit --identity yes fails it), writes the machine's name to /etc/hostname (and the
127.0.1.1 line of /etc/hosts), empties /etc/machine-id and removes the
golden's SSH host keys (regenerated with ssh-keygen -A when the clone has
it). Each --hook FILE (at most 16 of 64 KiB) then runs by /bin/sh in a chroot
of the clone with HERD_NAME, HERD_MAC and HERD_IP set, within --hook-timeout;
the orders and hooks reach the agents only sealed in their registration
answers. A failed fix-up or hook fails the machine with the reason.

--linger keeps DHCP, TFTP and HTTP up after the reboots so that the machines
get their local-boot answer.

Keys: the session key (--key-file, or a fresh random one for this run) keys
the chain and never travels in clear. Every machine to clone (--macs, each
given a fresh agent key at start) gets on its kernel line only its own agent
key (herd.agentkey), good for one registration; its agent gets the chain key
in the sealed answer to that registration and signs its reports with a key of
its own. A second registration with a used agent key is refused, logged as an
ALARM even with -q, and that machine fails (its MAC was spoofed, or it
rebooted during its clone). Without --macs, --allow-unknown is needed: every
machine that PXE-boots on the network then gets an agent key, so anyone there
can join the chain (a warning says so). Someone on the provisioning network
who asks for a listed machine's boot file before that machine boots can still
register in its place and get the chain key; the real machine's registration
then raises the alarm. See docs/security.md.
` + exitHelp,
		Example: `  herd deploy -i eth1 --net 10.0.1 --boot-dir /srv/herd/boot --nodes 8 --image golden.img.zst --disk /dev/sda
  herd deploy -i eth0 --dhcp proxy --boot-dir /srv/herd/boot --macs 52:54:00:00:00:01,52:54:00:00:00:02 --image golden.img --disk /dev/vda --power-cmd 'virsh reset {name}'
  herd deploy -i eth1 --boot-dir /srv/herd/boot --inventory /etc/herd/inventory.yaml --bmc --image golden.img.zst`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDeploy(cmd.Context(), &o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	addPXEFlags(f, &o.pxe)
	f.IntVarP(&o.nodes, "nodes", "n", 0, "number of machines to wait for (default: the number of --macs)")
	f.StringVar(&o.image, "image", "", "raw image (or compressed image) every node writes to --disk")
	f.StringVar(&o.pxe.keyFile, "key-file", "", "session key file for the chain and the agent API; it reaches the agents only sealed in the answers to their registrations (default: a fresh random key for this run)")
	f.DurationVar(&o.wait, "wait", 10*time.Minute, "how long to wait for the machines to register")
	f.DurationVar(&o.settle, "settle", 0, "with --nodes, start as soon as N machines registered; with this, wait that much longer for late ones")
	f.DurationVar(&o.reportTimeout, "report-timeout", 2*time.Minute, "how long to wait for the agents' reports after the chain ends")
	f.DurationVar(&o.linger, "linger", time.Minute, "keep serving this long after the reboots so machines get their local-boot answer")
	f.StringVar(&o.powerCmd, "power-cmd", "", "command that reboots one machine; {mac} {ip} {name} are replaced")
	f.BoolVar(&o.bmc, "bmc", false, "with --inventory: power the machines through their BMCs (PXE once and a power cycle at the start; disk boot and a power cycle once verified)")
	f.DurationVar(&o.connTimeout, "connect-timeout", 0, "how long the chain keeps trying to reach the first node (0: herd send's default)")
	f.BoolVar(&o.json, "json", false, "print the result as one JSON line")
	f.StringVar(&o.stage2, "stage2", "", "stage 2 (a root file system as .cpio[.gz|.zst] or .tar[.gz|.zst], see herd initramfs stage2) sent through the chain into every node's RAM first; its herd agent then receives the image")
	f.StringVar(&o.desc, "desc", "", "with --method files: partition description of the golden disk (see herd desc)")
	f.StringVar(&o.from, "from", "", "with --method files: where the golden system's filesystems are mounted on this machine")
	f.BoolVar(&o.keepUUIDs, "keep-uuids", false, "with --method files: new filesystems keep the golden fstab's UUIDs")
	f.StringVar(&o.identity, "identity", "", "yes or no: each agent gives its clone its machine's name as host name, an empty machine-id and no golden SSH host keys (default: yes when the machines have names)")
	f.StringArrayVar(&o.hooks, "hook", nil, "script run by /bin/sh in a chroot of each clone after a verified copy, with HERD_NAME, HERD_MAC, HERD_IP (repeatable, at most 16 of 64 KiB)")
	f.DurationVar(&o.hookTimeout, "hook-timeout", 5*time.Minute, "time limit of each --hook")
	f.BoolVar(&o.usedOnly, "used-only", false, "send only the blocks in use by the image's file systems (herd send --used-only); the nodes' disks must read unused blocks as zeros or not care")
	return cmd
}

// runDeploy checks the flags, starts the PXE services, runs a
// deploy.Deployer with the in-process chain and prints its result.
func runDeploy(ctx context.Context, o *deployOptions, stdout, stderr io.Writer) (err error) {
	if o.json {
		// --json ends with the deploy line, also when the deploy stopped
		// before it had a result.
		printed := false
		stdout = onWrite(stdout, func() { printed = true })
		defer func() {
			if err != nil && !printed {
				no := false
				writeJSON(stdout, report.Event{Event: report.Deploy, OK: &no, Error: err.Error()})
			}
		}()
	}
	// Log lines and power command output share stderr.
	stderr = syncio.NewWriter(stderr)
	log := loggerFrom(ctx, stderr).With("session", o.pxe.session)
	logf := printfAt(log, slog.LevelInfo)
	svcLog := logf
	if o.pxe.quiet {
		svcLog = nil
	}
	plan, err := deployPlan(o, logf)
	if err != nil {
		return err
	}
	if err := o.pxe.live.check(); err != nil {
		return err
	}
	fixups, err := deployFixups(o, &plan)
	if err != nil {
		return err
	}
	if o.pxe.keyFile == "" {
		// Never an open API or an unkeyed chain: a fresh key for this run.
		kf, err := freshKeyFile()
		if err != nil {
			return err
		}
		defer os.Remove(kf)
		o.pxe.keyFile = kf
		logf("deploy: no --key-file, this run uses a fresh random session key")
	}
	key, err := readKey(o.pxe.keyFile)
	if err != nil {
		return err
	}
	popts, err := o.pxe.options(svcLog, printfAt(log, slog.LevelWarn))
	if err != nil {
		return err
	}
	popts.Fixups = fixups
	hub, endLive, err := o.pxe.live.start(ctx, "deploy", stderr)
	if err != nil {
		return err
	}
	defer endLive()
	if hub != nil {
		popts.Count = hub.Count
	}
	srv, err := pxe.New(popts)
	if err != nil {
		return usageError{err}
	}
	if o.pxe.allowUnknown {
		logf("deploy: warning: --allow-unknown: every machine that PXE-boots here gets an agent key; anyone on the provisioning network can join the chain")
	}
	l, err := srv.Listen()
	if err != nil {
		return err
	}
	sctx, stopServer := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sctx, l) }()
	defer func() {
		stopServer()
		<-served
	}()
	logf("deploy: PXE services up, agents register at %s", srv.BaseURL())
	go hub.WatchStore(sctx, srv.Store())
	d := &deploy.Deployer{
		Plan:    plan,
		Store:   srv.Store(),
		Runner:  liveRunner{&deploy.Sender{Key: key, ConnectTimeout: o.connTimeout}, hub},
		Logf:    logf,
		Stopped: served,
	}
	if o.powerCmd != "" {
		d.Power = deploy.ShellPower(o.powerCmd)
	}
	if o.bmc {
		bp, err := deploy.NewBMCPower(o.pxe.selected)
		if err != nil {
			return usageError{err}
		}
		d.Start, d.Power = bp.Start, bp.Local
	}
	res, err := d.Run(ctx)
	if err != nil {
		if errors.Is(err, deploy.ErrPlan) {
			return usageError{err}
		}
		return err
	}
	printDeploy(stdout, res, o.json)
	ok, ko := res.Counts()
	hub.Finish(ok > 0 && ko == 0)
	switch {
	case res.Registered == 0 && o.bmc && res.Started == 0:
		return exitError{ExitFailed, errors.New("no machine could be powered through its BMC")}
	case res.Registered == 0:
		return exitError{ExitFailed, fmt.Errorf("no machine registered within %v", o.wait)}
	case ko == 0:
		return nil
	case ok == 0:
		return exitError{ExitFailed, fmt.Errorf("no machine was deployed (%d failed)", ko)}
	default:
		return exitError{ExitPartial, fmt.Errorf("%d machine(s) deployed, %d failed", ok, ko)}
	}
}

// deployPlan checks herd deploy's flags and turns them into a plan.
// Its errors are usage errors: nothing has started.
func deployPlan(o *deployOptions, logf func(string, ...any)) (deploy.Plan, error) {
	p := deploy.Plan{
		Nodes: o.nodes, Wait: o.wait, Settle: o.settle, ReportTimeout: o.reportTimeout, Linger: o.linger,
		AgentPort: o.pxe.agentPort, Stage2: o.stage2,
	}
	if o.pxe.knownOnly && o.pxe.allowUnknown {
		return p, usagef("--known-only and --allow-unknown exclude each other")
	}
	switch o.pxe.method {
	case deploy.MethodRaw:
		if o.image == "" {
			return p, usagef("--image is required")
		}
		if _, err := os.Stat(o.image); err != nil {
			return p, usagef("--image: %v", err)
		}
		if o.desc != "" || o.from != "" || o.keepUUIDs {
			return p, usagef("--desc, --from and --keep-uuids go with --method files")
		}
		p.System = deploy.Payload{Method: deploy.MethodRaw, Image: o.image, Dest: agent.DiskDest, UsedOnly: o.usedOnly}
	case deploy.MethodFiles:
		if o.image != "" || o.usedOnly {
			return p, usagef("--method files sends the files of --from laid out by --desc: --image and --used-only go with --method raw")
		}
		if o.desc == "" || o.from == "" {
			return p, usagef("--method files needs --desc DESC and --from DIR (the golden system's filesystems, mounted)")
		}
		for _, f := range []string{o.desc, o.from} {
			if _, err := os.Stat(f); err != nil {
				return p, usagef("--method files: %v", err)
			}
		}
		p.System = deploy.Payload{Method: deploy.MethodFiles, Desc: o.desc, From: o.from, KeepUUIDs: o.keepUUIDs}
		if o.stage2 == "" {
			logf("deploy: warning: --method files without --stage2: the agents' initramfs has no mkfs or extlinux")
		}
	default:
		return p, usagef("--method %q: want raw or files", o.pxe.method)
	}
	if o.stage2 != "" {
		if fi, err := os.Stat(o.stage2); err != nil || !fi.Mode().IsRegular() {
			return p, usagef("--stage2 %s: not a file", o.stage2)
		}
		if _, err := blockdev.PlanCook(o.stage2); err != nil {
			return p, usagef("--stage2 %s: %v", o.stage2, err)
		}
		o.pxe.stage2 = true
	}
	var err error
	if p.MACs, err = o.pxe.macList(); err != nil {
		return p, err
	}
	for _, m := range o.pxe.selected {
		if p.Names == nil {
			p.Names = map[string]string{}
		}
		p.Names[m.MAC] = m.Name
	}
	if o.bmc {
		switch {
		case o.pxe.inventory == "":
			return p, usagef("--bmc powers the machines of an --inventory through their BMCs")
		case o.powerCmd != "":
			return p, usagef("--bmc and --power-cmd exclude each other")
		}
		var none []string
		for _, m := range o.pxe.selected {
			if !m.HasBMC() {
				none = append(none, m.Name)
			}
		}
		if len(none) > 0 {
			return p, usagef("--bmc: no bmc in the inventory for %s", strings.Join(none, ", "))
		}
	}
	if p.Nodes == 0 {
		p.Nodes = len(p.MACs)
	}
	switch {
	case p.Nodes <= 0:
		return p, usagef("give --nodes N, --macs A,B,... or --inventory FILE")
	case len(p.MACs) == 0 && !o.pxe.allowUnknown:
		return p, usagef("give --macs A,B,... (the machines to clone: only they get an agent key), or --allow-unknown to let any machine that PXE-boots here join (anyone on the provisioning network could then get the chain key)")
	case len(p.MACs) > 0 && p.Nodes > len(p.MACs):
		return p, usagef("--nodes %d but only %d --macs", p.Nodes, len(p.MACs))
	}
	return p, nil
}

// deployFixups reads --identity and the --hook files into the orders the
// PXE services seal into the answers, and notes them in plan. Its errors
// are usage errors.
func deployFixups(o *deployOptions, plan *deploy.Plan) (httpboot.Fixups, error) {
	var f httpboot.Fixups
	named := len(plan.Names) > 0
	switch o.identity {
	case "":
		// By default a clone that holds no system (a data disk) keeps
		// its content as it is; --identity yes fails it instead.
		f.Identity, f.IdentityIfRoot = named, named
	case "yes":
		f.Identity = true
	case "no":
	default:
		return f, usagef("--identity %q: want yes or no", o.identity)
	}
	if f.Identity {
		var bad []string
		for _, mac := range plan.MACs {
			if name := plan.Names[mac]; name != "" && !httpboot.ValidHostname(name) {
				bad = append(bad, name)
			}
		}
		if len(bad) > 0 {
			return f, usagef("--identity: %s: not a host name (RFC 1123: letters, digits, hyphens, dots between labels); rename, or --identity no", strings.Join(bad, ", "))
		}
	}
	if o.hookTimeout <= 0 || o.hookTimeout > httpboot.MaxHookTimeout {
		return f, usagef("--hook-timeout %v: want more than 0 and at most %v", o.hookTimeout, httpboot.MaxHookTimeout)
	}
	if len(o.hooks) > httpboot.MaxHooks {
		return f, usagef("--hook: %d hooks, at most %d", len(o.hooks), httpboot.MaxHooks)
	}
	for _, path := range o.hooks {
		fi, err := os.Stat(path)
		if err != nil || !fi.Mode().IsRegular() {
			return f, usagef("--hook %s: not a file", path)
		}
		if fi.Size() > httpboot.MaxHookSize {
			return f, usagef("--hook %s: %d bytes, at most %d", path, fi.Size(), httpboot.MaxHookSize)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return f, usagef("--hook: %v", err)
		}
		h := httpboot.Hook{Name: filepath.Base(path), Script: b}
		if err := httpboot.CheckHookName(h.Name); err != nil {
			return f, usagef("--hook %s: %v", path, err)
		}
		f.Hooks = append(f.Hooks, h)
		plan.Hooks = append(plan.Hooks, h.Name)
	}
	if len(f.Hooks) > 0 {
		f.HookTimeout = o.hookTimeout
		// The agents report after their hooks.
		plan.ReportTimeout += time.Duration(len(f.Hooks)) * o.hookTimeout
	}
	plan.Identity = f.Identity
	return f, nil
}

// printDeploy prints the ok/ko list and the chains, or with asJSON the
// one "deploy" line of docs/json.md.
func printDeploy(w io.Writer, res *deploy.Result, asJSON bool) {
	if asJSON {
		writeJSON(w, res.Event())
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MAC\tIP\tRESULT\tSTATE\tREASON")
	for _, r := range res.Machines {
		result := "ok"
		if !r.OK {
			result = "KO"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.MAC, r.IP, result, r.State, r.Reason)
	}
	tw.Flush()
	for _, c := range res.Chains {
		var parts []string
		for _, n := range c.Nodes {
			parts = append(parts, n.MAC+" "+n.State)
		}
		result := "ok"
		if !c.OK {
			result = "KO " + c.Error
		}
		fmt.Fprintf(w, "chain %s: %s: %s\n", c.Name, result, strings.Join(parts, ", "))
	}
}
