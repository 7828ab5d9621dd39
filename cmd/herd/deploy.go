package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/herd-cluster/herd/blockdev"
	"github.com/herd-cluster/herd/pxe"
	"github.com/herd-cluster/herd/pxe/agent"
	"github.com/herd-cluster/herd/pxe/state"
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
	herdBin       string
	connTimeout   time.Duration
	json          bool
	stage2        string
	usedOnly      bool
	desc          string
	from          string
	keepUUIDs     bool
}

func newDeployCmd() *cobra.Command {
	var o deployOptions
	cmd := &cobra.Command{
		Use:   "deploy --boot-dir DIR (--nodes N | --macs A,B,...) (--image FILE | --method files --desc DESC --from DIR) --disk DEV [pxe flags]",
		Short: "Do the whole job: PXE-boot the nodes, clone the image down the chain, switch them to local boot",
		Long: `Deploy serves PXE (as herd pxe serve), waits until the agents of --nodes N
machines (or of every --macs machine) have registered, runs the chain with
"herd send --to ip1:port,ip2:port,... --in IMAGE --out DISK --json", waits for
every agent's report, switches each verified machine to local boot, reboots it
with --power-cmd and prints the ok/ko list. A machine that failed stays in PXE
mode with its reason in the state file.

Each machine is decided as soon as its agent reports: a verified one goes to
local boot at once (the agent reboots by itself right after reporting), then
--power-cmd is run by sh -c with {mac}, {ip} and {name} replaced (shell-quoted;
{name} is the MAC with dashes when the machine has no name), e.g.
  --power-cmd 'ipmitool -I lanplus -H {name}-bmc -U admin -P secret power reset'
  --power-cmd 'echo system_reset | socat - UNIX-CONNECT:/run/vm/{name}.mon'
Without it the machines are switched to local boot and reboot on their own.

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
		Example: `  herd deploy -i eth1 -n 10.0.1 --boot-dir /srv/herd/boot --nodes 8 --image golden.img.zst --disk /dev/sda
  herd deploy -i eth0 --dhcp proxy --boot-dir /srv/herd/boot --macs 52:54:00:00:00:01,52:54:00:00:00:02 --image golden.img --disk /dev/vda --power-cmd 'virsh reset {name}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDeploy(cmd.Context(), &o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	addPXEFlags(f, &o.pxe)
	f.IntVar(&o.nodes, "nodes", 0, "number of machines to wait for (default: the number of --macs)")
	f.StringVar(&o.image, "image", "", "raw image (or compressed image) every node writes to --disk")
	f.StringVar(&o.pxe.keyFile, "key-file", "", "session key file for the chain and the agent API; it reaches the agents only sealed in the answers to their registrations (default: a fresh random key for this run)")
	f.DurationVar(&o.wait, "wait", 10*time.Minute, "how long to wait for the machines to register")
	f.DurationVar(&o.settle, "settle", 0, "with --nodes, start as soon as N machines registered; with this, wait that much longer for late ones")
	f.DurationVar(&o.reportTimeout, "report-timeout", 2*time.Minute, "how long to wait for the agents' reports after the chain ends")
	f.DurationVar(&o.linger, "linger", time.Minute, "keep serving this long after the reboots so machines get their local-boot answer")
	f.StringVar(&o.powerCmd, "power-cmd", "", "command that reboots one machine; {mac} {ip} {name} are replaced")
	f.StringVar(&o.herdBin, "herd-bin", "", "herd binary that runs the chain (default: this one)")
	f.DurationVar(&o.connTimeout, "connect-timeout", 0, "passed to herd send: how long to keep trying to reach the first node (0: its default)")
	f.BoolVar(&o.json, "json", false, "print the result as one JSON line")
	f.StringVar(&o.stage2, "stage2", "", "stage 2 (a root file system as .cpio[.gz|.zst] or .tar[.gz|.zst], see herd initramfs stage2) sent through the chain into every node's RAM first; its herd agent then receives the image")
	f.StringVar(&o.desc, "desc", "", "with --method files: partition description of the golden disk (see herd desc)")
	f.StringVar(&o.from, "from", "", "with --method files: where the golden system's filesystems are mounted on this machine")
	f.BoolVar(&o.keepUUIDs, "keep-uuids", false, "with --method files: new filesystems keep the golden fstab's UUIDs")
	f.BoolVar(&o.usedOnly, "used-only", false, "send only the blocks in use by the image's file systems (herd send --used-only); the nodes' disks must read unused blocks as zeros or not care")
	return cmd
}

// sendSummary is the last summary line of herd send --json, with its
// verdict.
type sendSummary struct {
	*report.Event
	OK bool
}

// deployResult is one machine's line of the ok/ko list.
type deployResult struct {
	MAC    string `json:"mac"`
	Name   string `json:"name,omitempty"`
	IP     string `json:"ip,omitempty"`
	OK     bool   `json:"ok"`
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
}

func runDeploy(ctx context.Context, o *deployOptions, stdout, stderr io.Writer) error {
	// Log lines, herd send's stderr and power command output share stderr.
	stderr = &syncWriter{w: stderr}
	logf := lineLogger(stderr)
	svcLog := logf
	if o.pxe.quiet {
		svcLog = nil
	}
	if o.pxe.knownOnly && o.pxe.allowUnknown {
		return usagef("--known-only and --allow-unknown exclude each other")
	}
	switch o.pxe.method {
	case "raw":
		if o.image == "" {
			return usagef("--image is required")
		}
		if _, err := os.Stat(o.image); err != nil {
			return usagef("--image: %v", err)
		}
		if o.desc != "" || o.from != "" || o.keepUUIDs {
			return usagef("--desc, --from and --keep-uuids go with --method files")
		}
	case "files":
		if o.image != "" || o.usedOnly {
			return usagef("--method files sends the files of --from laid out by --desc: --image and --used-only go with --method raw")
		}
		if o.desc == "" || o.from == "" {
			return usagef("--method files needs --desc DESC and --from DIR (the golden system's filesystems, mounted)")
		}
		for _, p := range []string{o.desc, o.from} {
			if _, err := os.Stat(p); err != nil {
				return usagef("--method files: %v", err)
			}
		}
	default:
		return usagef("--method %q: want raw or files", o.pxe.method)
	}
	if o.stage2 != "" {
		if fi, err := os.Stat(o.stage2); err != nil || !fi.Mode().IsRegular() {
			return usagef("--stage2 %s: not a file", o.stage2)
		}
		if _, err := blockdev.PlanCook(o.stage2); err != nil {
			return usagef("--stage2 %s: %v", o.stage2, err)
		}
		o.pxe.stage2 = true
	}
	if o.pxe.method == "files" && o.stage2 == "" {
		logf("deploy: warning: --method files without --stage2: the agents' initramfs has no mkfs or extlinux")
	}
	macs := splitList(o.pxe.macs)
	if o.nodes == 0 {
		o.nodes = len(macs)
	}
	if o.nodes <= 0 {
		return usagef("give --nodes N or --macs A,B,...")
	}
	if len(macs) == 0 && !o.pxe.allowUnknown {
		return usagef("give --macs A,B,... (the machines to clone: only they get an agent key), or --allow-unknown to let any machine that PXE-boots here join (anyone on the provisioning network could then get the chain key)")
	}
	if len(macs) > 0 && o.nodes > len(macs) {
		return usagef("--nodes %d but only %d --macs", o.nodes, len(macs))
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
	if o.herdBin == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find herd binary: %w", err)
		}
		o.herdBin = exe
	}
	popts, err := o.pxe.options(svcLog, logf)
	if err != nil {
		return err
	}
	srv, err := pxe.New(popts)
	if err != nil {
		return usageError{err}
	}
	st := srv.Store()
	// Machines named with --macs are to be cloned now, whatever an
	// earlier run left: back to new, with a fresh agent key (one that a
	// boot file handed out before this run no longer works).
	for _, m := range macs {
		cur, _ := st.Get(m)
		if _, err := st.Set(m, state.New, ""); err != nil {
			return err
		}
		if cur.State != state.New {
			logf("deploy: %s was %s, set to new to be cloned again", cur.MAC, cur.State)
		}
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
	start := time.Now()

	// 1. Wait for the machines' agents to register.
	logf("deploy: waiting up to %v for %d machine(s) to register on %s", o.wait, o.nodes, srv.BaseURL())
	step := ""
	if o.stage2 != "" {
		step = state.StepStage2
	}
	nodes, err := waitRegistered(ctx, st, start, macs, step, o.nodes, o.wait, o.settle, served)
	if err != nil {
		return err
	}
	results := map[string]*deployResult{}
	for _, m := range macs {
		mac, _ := state.NormalizeMAC(m)
		results[mac] = &deployResult{MAC: mac, State: string(state.New), Reason: "did not register"}
	}
	var chains []chainRecord
	if len(nodes) == 0 {
		noteAlarms(st, results)
		printDeploy(stdout, results, chains, o.json)
		return exitError{ExitFailed, fmt.Errorf("no machine registered within %v", o.wait)}
	}
	for _, m := range nodes {
		results[m.MAC] = &deployResult{MAC: m.MAC, Name: m.Name, IP: m.IP, State: string(state.Cloning)}
	}
	addrs, byAddr := chainAddrs(nodes, o.pxe.agentPort)
	logf("deploy: %d machine(s) registered: %s", len(nodes), strings.Join(addrs, ","))

	// 2. With a stage 2: send it down the chain, wait for each machine's
	// agent to come back from inside it.
	if o.stage2 != "" {
		var rec chainRecord
		nodes, rec = runStage2(ctx, o, st, nodes, results, stderr, logf)
		chains = append(chains, rec)
		addrs, byAddr = chainAddrs(nodes, o.pxe.agentPort)
		if len(nodes) > 0 {
			logf("deploy: %d machine(s) run their stage 2 and wait for the image: %s", len(nodes), strings.Join(addrs, ","))
		}
	}

	// 3. Run the chain; decide each machine as soon as what it needs is known.
	rebooted := 0
	if len(nodes) > 0 {
		var chain *chainDone
		rebooted, chain = superviseChain(ctx, o, st, nodes, addrs, byAddr, results, stderr, logf)
		name := "image"
		if o.pxe.method == "files" {
			name = "files"
		}
		chains = append(chains, newChainRecord(name, chain, byAddr))
	}
	wentLocal := 0
	for _, r := range results {
		if r.OK {
			wentLocal++
		}
	}
	if wentLocal > 0 && o.linger > 0 {
		logf("deploy: serving %v more so the %d rebooting machine(s) (%d power cycled) boot locally", o.linger, wentLocal, rebooted)
		select {
		case <-time.After(o.linger):
		case <-ctx.Done():
		}
	}
	noteAlarms(st, results)
	printDeploy(stdout, results, chains, o.json)
	ok, ko := 0, 0
	for _, r := range results {
		if r.OK {
			ok++
		} else {
			ko++
		}
	}
	switch {
	case ko == 0:
		return nil
	case ok == 0:
		return exitError{ExitFailed, fmt.Errorf("no machine was deployed (%d failed)", ko)}
	default:
		return exitError{ExitPartial, fmt.Errorf("%d machine(s) deployed, %d failed", ok, ko)}
	}
}

// noteAlarms gives a machine that never made it into a chain the alarm
// it has, if any, as its reason: its registration was refused because
// its agent key had been used (by someone else, or by itself before a
// reboot).
func noteAlarms(st *state.Store, results map[string]*deployResult) {
	for mac, r := range results {
		if m, ok := st.Get(mac); ok && m.Alarm != "" && !r.OK && r.State == string(state.New) {
			r.IP, r.State, r.Reason = m.IP, string(m.State), "ALARM: "+m.Alarm
		}
	}
}

// freshKeyFile writes a new random session key (64 hex characters) to a
// private temporary file and returns its path.
func freshKeyFile() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("session key: %w", err)
	}
	f, err := os.CreateTemp("", "herd-deploy-key-")
	if err != nil {
		return "", fmt.Errorf("session key file: %w", err)
	}
	_, werr := f.WriteString(hex.EncodeToString(b[:]))
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("session key file: %w", werr)
	}
	return f.Name(), nil
}

func firstNonEmpty(a ...string) string {
	for _, s := range a {
		if s != "" {
			return s
		}
	}
	return ""
}

// chainDone is the outcome of herd send.
type chainDone struct {
	sum *sendSummary
	err error
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

// imageArgs are herd send's arguments for the system, by method.
func imageArgs(o *deployOptions, addrs []string) []string {
	var args []string
	switch o.pxe.method {
	case "files":
		args = []string{"send", "--to", strings.Join(addrs, ","), "--files", "--desc", o.desc, "--from", o.from, "--json"}
		if o.keepUUIDs {
			args = append(args, "--keep-uuids")
		}
	default:
		args = []string{"send", "--to", strings.Join(addrs, ","), "--in", o.image, "--out", o.pxe.disk, "--json"}
		if o.usedOnly {
			args = append(args, "--used-only")
		}
	}
	return sendCommonArgs(o, args)
}

// stage2Args are herd send's arguments for the stage 2: cooked, into
// the folder each agent unpacks it in.
func stage2Args(o *deployOptions, addrs []string) []string {
	args := []string{"send", "--to", strings.Join(addrs, ","), "--in", o.stage2, "--out", agent.Stage2Out, "--cook", "--json"}
	return sendCommonArgs(o, args)
}

func sendCommonArgs(o *deployOptions, args []string) []string {
	if o.pxe.keyFile != "" {
		args = append(args, "--key-file", o.pxe.keyFile)
	}
	if o.connTimeout > 0 {
		args = append(args, "--connect-timeout", o.connTimeout.String())
	}
	return args
}

// chainRecord is one chain of the deploy result: which machines it ran
// through, in order, and how each ended.
type chainRecord struct {
	Name  string          `json:"name"`
	OK    bool            `json:"ok"`
	Error string          `json:"error,omitempty"`
	Nodes []chainNodeInfo `json:"nodes"`
}

type chainNodeInfo struct {
	MAC   string `json:"mac"`
	Addr  string `json:"addr"`
	State string `json:"state"`
	Error string `json:"error,omitempty"`
}

// newChainRecord summarizes a finished herd send.
func newChainRecord(name string, c *chainDone, byAddr map[string]string) chainRecord {
	r := chainRecord{Name: name}
	if c == nil {
		r.Error = "did not run"
		return r
	}
	if c.err != nil {
		r.Error = c.err.Error()
	}
	if c.sum == nil {
		return r
	}
	r.OK = c.sum.OK && c.err == nil
	for _, n := range c.sum.Nodes {
		r.Nodes = append(r.Nodes, chainNodeInfo{MAC: byAddr[n.Addr], Addr: n.Addr, State: n.State, Error: n.Error})
	}
	return r
}

// runStage2 sends the stage 2 down the chain of nodes and waits until
// every node either registered again from inside its stage 2 (it waits
// for the image) or failed: its agent reported a failure, the chain
// failed it, or it did not come back within --report-timeout after the
// chain ended. It returns the nodes that are ready, in chain order, with
// their new registration.
func runStage2(ctx context.Context, o *deployOptions, st *state.Store, nodes []state.Machine,
	results map[string]*deployResult, stderr io.Writer, logf func(string, ...any)) ([]state.Machine, chainRecord) {
	addrs, byAddr := chainAddrs(nodes, o.pxe.agentPort)
	logf("deploy: sending the stage 2 %s to %d machine(s)", o.stage2, len(nodes))
	chainC := make(chan chainDone, 1)
	go func() {
		sum, err := runChain(ctx, o.herdBin, stage2Args(o, addrs), stderr, logf)
		chainC <- chainDone{sum, err}
	}()
	var (
		chain      *chainDone
		limit      <-chan time.Time
		ready      = map[string]state.Machine{}
		failed     = map[string]bool{}
		sendState  = map[string]string{}
		sendReason = map[string]string{}
	)
	fail := func(mac, reason string) {
		failed[mac] = true
		r := results[mac]
		r.OK, r.State, r.Reason = false, string(state.Failed), reason
		if cur, _ := st.Get(mac); cur.State != state.Failed {
			if _, err := st.Fail(mac, reason); err != nil {
				logf("deploy: %s: record failure: %v", mac, err)
			}
		}
		logf("deploy: %s failed: %s", mac, reason)
	}
	for {
		changed := st.Changed()
		for _, n := range nodes {
			if _, ok := ready[n.MAC]; ok || failed[n.MAC] {
				continue
			}
			m, _ := st.Get(n.MAC)
			switch {
			case m.Alarm != "":
				fail(n.MAC, "ALARM: "+m.Alarm)
			case m.State == state.Failed:
				fail(n.MAC, "agent: "+m.Reason)
			case m.State == state.Cloning && m.Step == "":
				ready[n.MAC] = m
				results[n.MAC].IP = m.IP
				logf("deploy: %s runs its stage 2 and waits for the image", n.MAC)
			case m.State != state.Cloning:
				fail(n.MAC, fmt.Sprintf("stage 2: machine left the deploy (state %s)", m.State))
			case chain != nil && chain.sum == nil:
				fail(n.MAC, fmt.Sprintf("stage 2: chain did not run: %v", chain.err))
			case chain != nil && sendState[n.MAC] != "done":
				fail(n.MAC, "stage 2: chain: "+firstNonEmpty(sendReason[n.MAC], "node state "+firstNonEmpty(sendState[n.MAC], "missing from summary")))
			}
		}
		if chain != nil && len(ready)+len(failed) == len(nodes) {
			break
		}
		select {
		case <-changed:
		case c := <-chainC:
			chain = &c
			if c.err != nil {
				logf("deploy: stage 2: %v", c.err)
			}
			if c.sum != nil {
				for _, n := range c.sum.Nodes {
					if mac := byAddr[n.Addr]; mac != "" {
						sendState[mac], sendReason[mac] = n.State, n.Error
					}
				}
			}
			limit = time.After(o.reportTimeout)
		case <-limit:
			for _, n := range nodes {
				if _, ok := ready[n.MAC]; !ok && !failed[n.MAC] {
					fail(n.MAC, fmt.Sprintf("stage 2: agent did not come back from its stage 2 within %v", o.reportTimeout))
				}
			}
		case <-ctx.Done():
			for _, n := range nodes {
				if _, ok := ready[n.MAC]; !ok && !failed[n.MAC] {
					fail(n.MAC, "interrupted")
				}
			}
			if chain == nil {
				c := <-chainC
				chain = &c
			}
		}
	}
	var out []state.Machine
	for _, n := range nodes {
		if m, ok := ready[n.MAC]; ok {
			out = append(out, m)
		}
	}
	return out, newChainRecord("stage2", chain, byAddr)
}

// superviseChain runs the chain and decides every machine of nodes: a
// machine whose agent reported a verified copy goes local at once (its
// agent reboots right after reporting, so the local answer must be ready
// before its next PXE boot) and is power cycled; one the chain or its
// agent failed is marked failed with the reason. It returns once the
// chain ended and every machine is decided (or the report timeout after
// the chain passed), and reports how many machines were power cycled and
// how the chain ended.
func superviseChain(ctx context.Context, o *deployOptions, st *state.Store, nodes []state.Machine, addrs []string,
	byAddr map[string]string, results map[string]*deployResult, stderr io.Writer, logf func(string, ...any)) (int, *chainDone) {
	chainC := make(chan chainDone, 1)
	go func() {
		sum, err := runChain(ctx, o.herdBin, imageArgs(o, addrs), stderr, logf)
		chainC <- chainDone{sum, err}
	}()
	var (
		chain       *chainDone
		reportLimit <-chan time.Time
		mu          sync.Mutex // guards results during power commands
		power       sync.WaitGroup
		rebooted    int
		decided     = map[string]bool{}
		sendState   = map[string]string{}
		sendReason  = map[string]string{}
	)
	fail := func(mac, reason, stored string) {
		mu.Lock()
		r := results[mac]
		r.OK, r.Reason, r.State = false, reason, string(state.Failed)
		mu.Unlock()
		if cur, _ := st.Get(mac); cur.State != state.Failed || cur.Reason != stored {
			if _, err := st.Fail(mac, stored); err != nil {
				logf("deploy: %s: record failure: %v", mac, err)
			}
		}
		decided[mac] = true
		logf("deploy: %s failed: %s", mac, reason)
	}
	succeed := func(n state.Machine) {
		decided[n.MAC] = true
		m, err := st.MarkLocal(n.MAC)
		mu.Lock()
		defer mu.Unlock()
		r := results[n.MAC]
		if err != nil {
			r.OK, r.Reason, r.State = false, fmt.Sprintf("switch to local boot: %v", err), string(m.State)
			return
		}
		r.OK, r.Reason, r.State = true, "", string(state.Local)
		logf("deploy: %s verified, switched to local boot", n.MAC)
		if o.powerCmd == "" {
			return
		}
		rebooted++
		power.Add(1)
		go func() {
			defer power.Done()
			if err := powerCycle(ctx, o.powerCmd, n, stderr); err != nil {
				mu.Lock()
				r.Reason = "local boot set, reboot failed: " + err.Error()
				rebooted--
				mu.Unlock()
				logf("deploy: %s: %s", n.MAC, r.Reason)
			}
		}()
	}
	for {
		changed := st.Changed()
		for _, n := range nodes {
			if chain != nil && !decided[n.MAC] {
				if chain.sum == nil {
					reason := fmt.Sprintf("chain did not run: %v", chain.err)
					fail(n.MAC, reason, reason)
					continue
				}
				if sendState[n.MAC] != "done" {
					reason := "chain: " + firstNonEmpty(sendReason[n.MAC], "node state "+firstNonEmpty(sendState[n.MAC], "missing from summary"))
					fail(n.MAC, reason, reason)
					continue
				}
			}
			if decided[n.MAC] {
				continue
			}
			switch m, _ := st.Get(n.MAC); {
			case m.Alarm != "":
				// Someone else registered with its key, or it rebooted
				// during the clone: never local by itself.
				fail(n.MAC, "ALARM: "+m.Alarm, "ALARM: "+m.Alarm)
			case m.State == state.Done || m.State == state.Local:
				succeed(n)
			case m.State == state.Failed:
				fail(n.MAC, "agent: "+m.Reason, m.Reason)
			}
		}
		if chain != nil && len(decided) == len(nodes) {
			break
		}
		select {
		case <-changed:
		case c := <-chainC:
			chain = &c
			if c.err != nil {
				logf("deploy: %v", c.err)
			}
			if c.sum != nil {
				for _, n := range c.sum.Nodes {
					if mac := byAddr[n.Addr]; mac != "" {
						sendState[mac], sendReason[mac] = n.State, n.Error
					}
				}
			}
			// A machine that went local before the chain said it failed
			// goes back to PXE.
			for _, n := range nodes {
				mu.Lock()
				wasOK := results[n.MAC].OK
				mu.Unlock()
				if wasOK && (c.sum == nil || sendState[n.MAC] != "done") {
					delete(decided, n.MAC)
				}
			}
			reportLimit = time.After(o.reportTimeout)
		case <-reportLimit:
			for _, n := range nodes {
				if !decided[n.MAC] {
					reason := fmt.Sprintf("agent did not report within %v", o.reportTimeout)
					fail(n.MAC, reason, reason)
				}
			}
		case <-ctx.Done():
			for _, n := range nodes {
				if !decided[n.MAC] {
					fail(n.MAC, "interrupted", "deploy interrupted")
				}
			}
			if chain == nil {
				chain = &chainDone{err: ctx.Err()}
				<-chainC
			}
		}
	}
	power.Wait()
	return rebooted, chain
}

// waitRegistered waits until want machines (all of macs when given)
// registered after start, or until timeout; it returns those that did,
// in registration order.
func waitRegistered(ctx context.Context, st *state.Store, start time.Time, macs []string, step string, want int, timeout, settle time.Duration, served <-chan error) ([]state.Machine, error) {
	allowed := map[string]bool{}
	for _, m := range macs {
		if mac, err := state.NormalizeMAC(m); err == nil {
			allowed[mac] = true
		}
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var settleC <-chan time.Time
	collect := func() []state.Machine {
		var out []state.Machine
		for _, m := range st.List() {
			if m.State == state.Cloning && m.Step == step && m.Alarm == "" && !m.Updated.Before(start.UTC().Truncate(time.Second)) && (len(allowed) == 0 || allowed[m.MAC]) {
				out = append(out, m)
			}
		}
		sort.SliceStable(out, func(i, j int) bool { return out[i].Updated.Before(out[j].Updated) })
		return out
	}
	for {
		changed := st.Changed()
		got := collect()
		if len(got) >= want {
			if len(allowed) > 0 || settle <= 0 {
				return got, nil
			}
			if settleC == nil {
				settleC = time.After(settle)
			}
		}
		select {
		case <-changed:
		case <-settleC:
			return collect(), nil
		case <-deadline.C:
			return collect(), nil
		case err := <-served:
			if err == nil {
				err = errors.New("PXE services stopped")
			}
			return nil, err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// runChain runs herd (herd send's args) as a subprocess and returns its
// summary line.
func runChain(ctx context.Context, herdBin string, args []string, stderr io.Writer, logf func(string, ...any)) (*sendSummary, error) {
	cmd := exec.CommandContext(ctx, herdBin, args...)
	var errOut tailBuffer
	cmd.Stderr = io.MultiWriter(stderr, &errOut)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("herd send: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("herd send: %w", err)
	}
	var sum *sendSummary
	var lastLog time.Time
	scanErr := report.Scan(stdout, func(ev *report.Event) error {
		switch {
		case ev.IsSummary():
			sum = &sendSummary{Event: ev, OK: *ev.OK}
		case ev.Event == report.Progress:
			if time.Since(lastLog) >= 5*time.Second {
				lastLog = time.Now()
				logf("deploy: chain %s", progressText(ev.Bytes, ev.Total, ev.Seconds))
			}
		}
		return nil
	})
	io.Copy(io.Discard, stdout)
	runErr := cmd.Wait()
	if sum == nil {
		if runErr == nil {
			runErr = errors.New("no summary line")
			if scanErr != nil {
				runErr = scanErr
			}
		}
		if last := lastLine(errOut.String()); last != "" {
			return nil, fmt.Errorf("herd send: %w: %s", runErr, last)
		}
		return nil, fmt.Errorf("herd send: %w", runErr)
	}
	return sum, runErr
}

// progressText renders bytes sent of total after seconds.
func progressText(bytes, total int64, seconds float64) string {
	const mib = 1 << 20
	rate := 0.0
	if seconds > 0 {
		rate = float64(bytes) / mib / seconds
	}
	if total > 0 && bytes >= total {
		return fmt.Sprintf("all %d MiB sent in %.0f s, nodes finishing", total/mib, seconds)
	}
	if total > 0 {
		return fmt.Sprintf("%d%% (%d of %d MiB, %.0f MiB/s)", bytes*100/total, bytes/mib, total/mib, rate)
	}
	return fmt.Sprintf("%d MiB (%.0f MiB/s)", bytes/mib, rate)
}

// syncWriter serializes writes to w.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// tailBuffer keeps the last 4 KiB written to it.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 4096 {
		t.b = append(t.b[:0], t.b[len(t.b)-4096:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.b) }

// lastLine returns the last non-empty line of s, trimmed.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// powerCommand fills the {mac} {ip} {name} placeholders of tmpl.
func powerCommand(tmpl string, m state.Machine) string {
	name := m.Name
	if name == "" {
		name = strings.ReplaceAll(m.MAC, ":", "-")
	}
	return strings.NewReplacer("{mac}", shellQuote(m.MAC), "{ip}", shellQuote(m.IP), "{name}", shellQuote(name)).Replace(tmpl)
}

// powerCycle runs the power command for one machine, at most a minute.
func powerCycle(ctx context.Context, tmpl string, m state.Machine, stderr io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", powerCommand(tmpl, m))
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

func printDeploy(w io.Writer, results map[string]*deployResult, chains []chainRecord, asJSON bool) {
	list := make([]*deployResult, 0, len(results))
	for _, r := range results {
		list = append(list, r)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].MAC < list[j].MAC })
	if asJSON {
		ok := true
		for _, r := range list {
			ok = ok && r.OK
		}
		b, _ := json.Marshal(struct {
			Event    string          `json:"event"`
			OK       bool            `json:"ok"`
			Machines []*deployResult `json:"machines"`
			Chains   []chainRecord   `json:"chains"`
		}{"deploy", ok, list, chains})
		fmt.Fprintf(w, "%s\n", b)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MAC\tIP\tRESULT\tSTATE\tREASON")
	for _, r := range list {
		res := "ok"
		if !r.OK {
			res = "KO"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.MAC, r.IP, res, r.State, r.Reason)
	}
	tw.Flush()
	for _, c := range chains {
		var parts []string
		for _, n := range c.Nodes {
			parts = append(parts, n.MAC+" "+n.State)
		}
		res := "ok"
		if !c.OK {
			res = "KO " + c.Error
		}
		fmt.Fprintf(w, "chain %s: %s: %s\n", c.Name, res, strings.Join(parts, ", "))
	}
}
