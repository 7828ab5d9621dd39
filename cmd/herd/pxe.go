package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/herd-cluster/herd/pxe"
	"github.com/herd-cluster/herd/pxe/bootcfg"
	"github.com/herd-cluster/herd/pxe/dhcp"
	"github.com/herd-cluster/herd/pxe/httpboot"
	"github.com/herd-cluster/herd/pxe/state"
)

// pxeFlags are the flags of herd pxe serve, shared with herd deploy.
type pxeFlags struct {
	iface, serverIP, dhcpMode, rangeS, netBase, subnet, gateway, dns string
	lease                                                            time.Duration
	bootDir, statePath                                               string
	httpPort, tftpPort                                               int
	biosFile, efiFile, kernel, initrd                                string
	session, method, disk, keyFile, console, appendArgs              string
	agentPort, agentTimeout, agentRetries                            int
	menu, knownOnly, allowUnknown, noIPXEScript                      bool
	stage2                                                           bool // set by herd deploy --stage2: herd.stage2=1
	macs                                                             string
	quiet                                                            bool
	ra, raPrefix, tftpServer                                         string
}

func addPXEFlags(f *pflag.FlagSet, p *pxeFlags) {
	f.StringVarP(&p.iface, "iface", "i", "", "network interface of the provisioning network (DHCP binds to it)")
	f.StringVarP(&p.serverIP, "server-ip", "p", "", "address nodes reach this server at (default: first IPv4 of --iface)")
	f.StringVar(&p.dhcpMode, "dhcp", "server", "DHCP mode: server (only DHCP server of the network), proxy (beside an existing one: PXE clients only, no addresses) or off")
	f.StringVar(&p.rangeS, "range", "", "addresses to hand out in server mode, FIRST-LAST")
	f.StringVarP(&p.netBase, "net", "n", "", "network base like clone_script -n (10.0.1: range 10.0.1.100-10.0.1.199, netmask /24)")
	f.StringVar(&p.subnet, "netmask", "", "netmask in server mode (default: the interface's)")
	f.StringVarP(&p.gateway, "gateway", "w", "", "default gateway handed out in server mode")
	f.StringVarP(&p.dns, "dns", "s", "", "comma-separated DNS servers handed out in server mode")
	f.DurationVar(&p.lease, "lease", time.Hour, "DHCP lease time")
	f.StringVar(&p.bootDir, "boot-dir", "", "boot folder: first stages, kernel, initramfs (nothing outside it is served)")
	f.StringVar(&p.statePath, "state", "", "machine state file (default: herd-machines.json beside the boot folder)")
	f.IntVar(&p.httpPort, "http-port", 8080, "HTTP port (kernels, initramfs, iPXE scripts, agent API)")
	f.StringVarP(&p.tftpServer, "tftp-server", "t", "", "TFTP server handed out for the first stage, like clone_script -t (default: this server)")
	f.IntVar(&p.tftpPort, "tftp-port", 69, "TFTP port (first stage); 0 disables TFTP")
	f.StringVar(&p.biosFile, "bios-file", "undionly.kpxe", "first stage for BIOS clients (undionly.kpxe or pxelinux.0)")
	f.StringVar(&p.efiFile, "efi-file", "ipxe.efi", "first stage for x86-64 UEFI clients")
	f.StringVar(&p.kernel, "kernel", "vmlinuz", "agent kernel, relative to the boot folder")
	f.StringVar(&p.initrd, "initrd", "initrd.img", "agent initramfs, relative to the boot folder")
	f.StringVar(&p.session, "session", "herd", "session name the agents join")
	f.IntVar(&p.agentPort, "agent-port", 9998, "port the agents listen on for the chain")
	f.StringVar(&p.method, "method", "raw", "duplication method the agents run")
	f.StringVar(&p.disk, "disk", "/dev/vda", "target disk on the nodes")
	f.IntVar(&p.agentTimeout, "agent-timeout", 300, "seconds an agent waits for the server")
	f.IntVar(&p.agentRetries, "agent-retries", 3, "attempts before an agent reboots")
	f.StringVar(&p.console, "console", "ttyS0", "kernel console of the nodes (- for none)")
	f.StringVar(&p.appendArgs, "append", "", "extra kernel parameters")
	f.BoolVar(&p.noIPXEScript, "no-ipxe-script", false, "give iPXE clients --bios-file/--efi-file too (e.g. pxelinux.0) instead of the HTTP script")
	f.BoolVar(&p.menu, "menu", false, "pxelinux shows the seed's menu (local, herd, kamethod, dolly) instead of booting the agent at once")
	f.StringVar(&p.macs, "macs", "", "comma-separated MACs of the machines to provision")
	f.BoolVar(&p.knownOnly, "known-only", false, "answer only the --macs machines and those approved in the state file (DHCP ignores the others)")
	f.BoolVar(&p.allowUnknown, "allow-unknown", false, "give every machine that PXE-boots here an agent key (without it, machines not in --macs nor approved are listed as discovered and boot their disk); anyone on the provisioning network can then get the chain key")
	f.BoolVarP(&p.quiet, "quiet", "q", false, "do not log every DHCP, TFTP and HTTP event")
	f.StringVar(&p.ra, "ra", "auto", "IPv6 router advertisements on --iface so iPXE starts without a 16 s wait: on, off, or auto (on with --dhcp server)")
	f.StringVar(&p.raPrefix, "ra-prefix", "", "IPv6 /64 to advertise (default fd68:6572:6400::/64)")
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func parseIPv4(flag, s string) (net.IP, error) {
	ip := net.ParseIP(strings.TrimSpace(s)).To4()
	if ip == nil {
		return nil, usagef("--%s: %q is not an IPv4 address", flag, s)
	}
	return ip, nil
}

// options turns the flags into pxe.Options; every error is a usage error.
// logf gets the services' events (nil: quiet), alarmf the alarms and
// warnings, always.
func (p *pxeFlags) options(logf, alarmf func(string, ...any)) (pxe.Options, error) {
	var o pxe.Options
	mode, err := dhcp.ParseMode(p.dhcpMode)
	if err != nil {
		return o, usagef("--dhcp: %v", err)
	}
	if p.keyFile == "" {
		return o, usagef("--key-file FILE is required: the session key herd send uses (make one with: head -c 32 /dev/urandom > FILE)")
	}
	key, err := readKey(p.keyFile)
	if err != nil {
		return o, err
	}
	if p.knownOnly && p.allowUnknown {
		return o, usagef("--known-only and --allow-unknown exclude each other")
	}
	if p.bootDir == "" {
		return o, usagef("--boot-dir is required")
	}
	if fi, err := os.Stat(p.bootDir); err != nil || !fi.IsDir() {
		return o, usagef("--boot-dir %s: not a folder", p.bootDir)
	}
	o = pxe.Options{
		Interface: p.iface, DHCP: mode, LeaseTime: p.lease,
		BootDir: p.bootDir, StatePath: p.statePath, HTTPPort: p.httpPort, TFTPPort: p.tftpPort,
		BIOSFile: p.biosFile, EFIFile: p.efiFile, Kernel: p.kernel, Initrd: p.initrd, Menu: p.menu, NoIPXEScript: p.noIPXEScript,
		KnownOnly: p.knownOnly, AllowUnknown: p.allowUnknown, MACs: splitList(p.macs), Logf: logf, Alarmf: alarmf, Key: key,
		Agent: bootcfg.Agent{Session: p.session, Port: p.agentPort, Method: p.method, Disk: p.disk,
			Timeout: p.agentTimeout, Retries: p.agentRetries, Console: p.console, Extra: p.appendArgs, Stage2: p.stage2},
	}
	if o.StatePath == "" {
		o.StatePath = filepath.Join(filepath.Dir(filepath.Clean(p.bootDir)), "herd-machines.json")
	}
	if p.tftpPort == 0 {
		o.TFTPPort = -1
	}
	if p.serverIP != "" {
		if o.ServerIP, err = parseIPv4("server-ip", p.serverIP); err != nil {
			return o, err
		}
	}
	if p.netBase != "" {
		parts := strings.Split(p.netBase, ".")
		if len(parts) != 3 || net.ParseIP(p.netBase+".0").To4() == nil {
			return o, usagef("--net %q: want the first three bytes, like 10.0.1", p.netBase)
		}
		o.RangeStart, o.RangeEnd = net.ParseIP(p.netBase+".100").To4(), net.ParseIP(p.netBase+".199").To4()
		o.Netmask = net.CIDRMask(24, 32)
	}
	if p.rangeS != "" {
		a, b, ok := strings.Cut(p.rangeS, "-")
		if !ok {
			return o, usagef("--range %q: want FIRST-LAST", p.rangeS)
		}
		if o.RangeStart, err = parseIPv4("range", a); err != nil {
			return o, err
		}
		if o.RangeEnd, err = parseIPv4("range", b); err != nil {
			return o, err
		}
	}
	if p.subnet != "" {
		m, err := parseIPv4("netmask", p.subnet)
		if err != nil {
			return o, err
		}
		o.Netmask = net.IPMask(m)
	}
	if p.tftpServer != "" {
		if o.TFTPServer, err = parseIPv4("tftp-server", p.tftpServer); err != nil {
			return o, err
		}
	}
	if p.gateway != "" {
		if o.Router, err = parseIPv4("gateway", p.gateway); err != nil {
			return o, err
		}
	}
	for _, d := range splitList(p.dns) {
		ip, err := parseIPv4("dns", d)
		if err != nil {
			return o, err
		}
		o.DNS = append(o.DNS, ip)
	}
	switch p.ra {
	case "on":
		o.RA = true
	case "off":
	case "auto", "":
		o.RA = mode == dhcp.ModeServer && p.iface != ""
	default:
		return o, usagef("--ra %q: want on, off or auto", p.ra)
	}
	if p.raPrefix != "" {
		if o.RAPrefix, err = netip.ParsePrefix(p.raPrefix); err != nil {
			return o, usagef("--ra-prefix: %v", err)
		}
	}
	if mode == dhcp.ModeServer && o.RangeStart == nil {
		return o, usagef("--dhcp server needs --range FIRST-LAST or --net A.B.C (or use --dhcp proxy beside an existing DHCP server)")
	}
	return o, nil
}

// lineLogger serializes log lines from the services onto w.
func lineLogger(w io.Writer) func(string, ...any) {
	var mu sync.Mutex
	return func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(w, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
}

func newPXECmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pxe",
		Short: "PXE services: DHCP (server or proxy), TFTP, HTTP boot and per-machine boot state",
	}
	cmd.AddCommand(newPXEServeCmd(), newPXEListCmd(), newPXESetCmd(), newPXEMenuCmd(), newPXEInitCmd())
	return cmd
}

func newPXEServeCmd() *cobra.Command {
	var p pxeFlags
	cmd := &cobra.Command{
		Use:   "serve --boot-dir DIR [--iface IF] [--dhcp server|proxy|off] ...",
		Short: "Serve DHCP, TFTP and HTTP boot until interrupted",
		Long: `Serve boots every machine of the provisioning network into the herd agent and,
once its clone is verified and it was switched to local boot, into its own disk.

DHCP hands out addresses (--dhcp server, like clone_script -p -w -n -s) or only
boot files beside an existing DHCP server (--dhcp proxy: PXE clients only, ports
67 and 4011). BIOS clients get --bios-file, UEFI clients --efi-file, iPXE
clients an HTTP script. TFTP serves the first stage; HTTP the kernel, the
initramfs, iPXE scripts and the agent API (/api/v1/register, /api/v1/report,
/api/v1/machines). pxelinux.cfg/01-<mac> files and iPXE scripts are generated
from each machine's state (new, cloning, done, local, failed, discovered), kept
in --state.

--key-file is the session key herd send uses for the chain (required). It never
leaves this server in clear: each machine's boot configuration carries only its
own agent key (herd.agentkey), derived from the session key and good for one
registration; the agent gets the chain key in the sealed answer to it. A second
registration with the same agent key is refused and logged as an ALARM (its MAC
is spoofed, or it rebooted during its clone); herd pxe set MAC new gives it a
fresh key. Every API call, reads included, is signed: herd pxe list and set
need the same --key-file. A machine not in --macs nor approved in --state is
listed as discovered and boots its disk without a key (herd pxe set MAC new
lets it in), unless --allow-unknown (then anyone on the network can register
and get the chain key: a warning says so). See docs/security.md.

With a stage 2 (--append herd.stage2=1) the agents first receive it through a
chain of their own: herd send --in STAGE2.cpio.gz --out /stage2 --cook.`,
		Example: `  herd pxe serve -i eth1 -p 10.0.1.21 -n 10.0.1 -w 10.0.1.253 -s 10.0.1.253 --boot-dir /srv/herd/boot --key-file /etc/herd/key --macs 52:54:00:12:34:56,52:54:00:12:34:57
  herd pxe serve -i eth0 --dhcp proxy --boot-dir /srv/herd/boot --key-file /etc/herd/key --known-only --macs 52:54:00:12:34:56`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPXEServe(cmd.Context(), &p, cmd.ErrOrStderr())
		},
	}
	addPXEFlags(cmd.Flags(), &p)
	cmd.Flags().StringVar(&p.keyFile, "key-file", "", "session key file (the one herd send uses); required")
	return cmd
}

func runPXEServe(ctx context.Context, p *pxeFlags, logw io.Writer) error {
	alarmf := lineLogger(logw)
	logf := alarmf
	if p.quiet {
		logf = nil
	}
	o, err := p.options(logf, alarmf)
	if err != nil {
		return err
	}
	srv, err := pxe.New(o)
	if err != nil {
		return usageError{err}
	}
	return srv.Run(ctx)
}

func newPXEListCmd() *cobra.Command {
	var statePath, server, keyFile string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list (--state FILE | --server http://IP:PORT --key-file FILE)",
		Short: "List machines with their boot state, agent key and alarms",
		Long: `List shows every machine the server knows: its state (new, cloning, done,
local, failed, or discovered: seen PXE-booting but not let in), how many agent
keys it was given and whether the current one was used (KEY, e.g. "2 used"),
and its reason or ALARM (a second registration with a used agent key: its MAC
was spoofed or it rebooted during its clone; herd pxe set MAC new gives it a
fresh key). A running server answers only requests signed with its session
key: give --key-file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var ms []state.Machine
			switch {
			case server != "":
				key, err := operatorKey(keyFile)
				if err != nil {
					return err
				}
				if ms, err = fetchMachines(cmd.Context(), server, key); err != nil {
					return err
				}
			case statePath != "":
				b, err := os.ReadFile(statePath)
				if err != nil {
					return fmt.Errorf("read state %s: %w", statePath, err)
				}
				if ms, err = state.Load(b); err != nil {
					return fmt.Errorf("state %s: %w", statePath, err)
				}
			default:
				return usagef("give --state FILE or --server URL")
			}
			return printMachines(cmd.OutOrStdout(), ms, asJSON)
		},
	}
	cmd.Flags().StringVar(&statePath, "state", "", "machine state file")
	cmd.Flags().StringVar(&server, "server", "", "running herd pxe server, http://IP:PORT")
	cmd.Flags().StringVar(&keyFile, "key-file", "", "session key file of the server (with --server)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// operatorKey reads the session key file an operator command signs with.
func operatorKey(keyFile string) (httpboot.Credential, error) {
	if keyFile == "" {
		return httpboot.Credential{}, usagef("--server needs --key-file: the server answers only requests signed with its session key")
	}
	key, err := readKey(keyFile)
	if err != nil {
		return httpboot.Credential{}, err
	}
	return httpboot.Operator(key), nil
}

func printMachines(w io.Writer, ms []state.Machine, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(ms)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MAC\tNAME\tSTATE\tIP\tUPDATED\tKEY\tREASON")
	for _, m := range ms {
		key := "-"
		if m.KeyGen > 0 {
			key = strconv.Itoa(m.KeyGen)
			if m.KeyUsed {
				key += " used"
			}
		}
		reason := m.Reason
		if m.Alarm != "" {
			reason = strings.TrimSpace("ALARM: " + m.Alarm + "; " + reason)
			reason = strings.TrimSuffix(reason, ";")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.MAC, m.Name, m.State, m.IP, m.Updated.Format(time.RFC3339), key, reason)
	}
	return tw.Flush()
}

func newPXEMenuCmd() *cobra.Command {
	var a bootcfg.Agent
	var m bootcfg.Menu
	cmd := &cobra.Command{
		Use:   "menu --server IP:PORT",
		Short: "Print the seed's pxelinux menu (labels local, herd, kamethod, dolly, nfs, http)",
		Long: `Menu prints a pxelinux.cfg/default with one label per method, for users who
want to choose at the boot prompt. herd pxe serve does not need it: it answers
each machine with its own generated configuration.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.Validate(); err != nil {
				return usageError{err}
			}
			m.Args = a.KernelArgs()
			m.Seed = true
			_, err := io.WriteString(cmd.OutOrStdout(), bootcfg.PXELinuxMenu(m))
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&a.Server, "server", "", "herd HTTP server the agents call, IP:PORT")
	f.StringVar(&a.Session, "session", "herd", "session name")
	f.StringVar(&a.Disk, "disk", "/dev/vda", "target disk on the nodes")
	f.StringVar(&m.Default, "default", "local", "label booted when nobody chooses")
	f.StringVar(&m.Kernel, "kernel", "vmlinuz", "kernel path on the TFTP server")
	f.StringVar(&m.Initrd, "initrd", "initrd.img", "initramfs path on the TFTP server")
	f.StringVar(&m.NFSURL, "nfs", "", "SERVER:/DIR for the nfs label")
	f.StringVar(&m.HTTPURL, "http", "", "SERVER:/DIR for the http label")
	return cmd
}

// fetchMachines asks a running herd pxe server for its machines, signed
// with the operator's credential.
func fetchMachines(ctx context.Context, server string, op httpboot.Credential) ([]state.Machine, error) {
	url := strings.TrimRight(server, "/") + httpboot.PathMachines
	if !strings.Contains(server, "://") {
		url = "http://" + url
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, usagef("--server %q: %v", server, err)
	}
	httpboot.Sign(req, op, nil, time.Now())
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("ask %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var r httpboot.Reply
		json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&r)
		return nil, fmt.Errorf("ask %s: %s %s", url, resp.Status, r.Error)
	}
	var ms []state.Machine
	if err := json.NewDecoder(resp.Body).Decode(&ms); err != nil {
		return nil, fmt.Errorf("ask %s: %w", url, err)
	}
	return ms, nil
}

func newPXEInitCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "init --boot-dir DIR",
		Short: "Fill a boot folder with the first stages installed by Debian (ipxe, pxelinux, syslinux-common)",
		Long: `Init copies undionly.kpxe, ipxe.efi, snponly.efi, pxelinux.0, lpxelinux.0 and
ldlinux.c32 from where Debian installs them into the boot folder, keeping any
file already there. Put the agent's kernel (vmlinuz) and initramfs
(initrd.img) beside them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if dir == "" {
				return usagef("--boot-dir is required")
			}
			copied, missing, err := pxe.PrepareBootDir(dir, nil)
			if err != nil {
				return err
			}
			sort.Strings(copied)
			sort.Strings(missing)
			w := cmd.OutOrStdout()
			for _, n := range copied {
				fmt.Fprintf(w, "copied %s\n", n)
			}
			for _, n := range missing {
				fmt.Fprintf(w, "missing %s (install: apt-get install ipxe pxelinux syslinux-common)\n", n)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "boot-dir", "", "boot folder to fill")
	return cmd
}

func newPXESetCmd() *cobra.Command {
	var statePath, server, reason, keyFile string
	cmd := &cobra.Command{
		Use:   "set MAC STATE (--server http://IP:PORT | --state FILE)",
		Short: "Force a machine's boot state: new (clone it again), local (boot its disk), failed, ...",
		Long: `Set overrides the boot state of one machine. With --server it asks the running
herd pxe server, signed with its session key (--key-file, the same as herd
deploy's or herd pxe serve's: nobody else may change a machine); with --state
it edits the state file of a stopped server (a running server would overwrite
the change). Any change clears the machine's alarm.

States: new (clone it again: a fresh agent key for its next PXE boot; also how
a discovered machine is let in), cloning, done, local, failed (also a fresh
key), discovered (its key is withdrawn).`,
		Example: `  herd pxe set --server http://10.0.1.21:8080 52:54:00:12:34:56 new
  herd pxe set --state /srv/herd/herd-machines.json 52:54:00:12:34:56 local`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			mac, err := state.NormalizeMAC(args[0])
			if err != nil {
				return usageError{err}
			}
			p := state.Phase(args[1])
			if !p.Valid() {
				return usagef("state %q: want new, cloning, done, local, failed or discovered", args[1])
			}
			switch {
			case server != "":
				op, err := operatorKey(keyFile)
				if err != nil {
					return err
				}
				return postSet(cmd.Context(), server, mac, httpboot.SetRequest{State: p, Reason: reason}, op)
			case statePath != "":
				st, err := state.Open(statePath)
				if err != nil {
					return err
				}
				_, err = st.Set(mac, p, reason)
				return err
			default:
				return usagef("give --server URL or --state FILE")
			}
		},
	}
	cmd.Flags().StringVar(&statePath, "state", "", "state file of a stopped server")
	cmd.Flags().StringVar(&server, "server", "", "running herd pxe server, http://IP:PORT")
	cmd.Flags().StringVar(&reason, "reason", "", "reason, kept with state failed")
	cmd.Flags().StringVar(&keyFile, "key-file", "", "session key file of the server (with --server)")
	return cmd
}

// postSet asks a running server to set the state of mac, signed with
// the operator's credential.
func postSet(ctx context.Context, server, mac string, body httpboot.SetRequest, op httpboot.Credential) error {
	url := strings.TrimRight(server, "/") + httpboot.PathMachines + "/" + mac
	if !strings.Contains(server, "://") {
		url = "http://" + url
	}
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return usagef("--server %q: %v", server, err)
	}
	req.Header.Set("Content-Type", "application/json")
	httpboot.Sign(req, op, b, time.Now())
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("ask %s: %w", url, err)
	}
	defer resp.Body.Close()
	var r httpboot.Reply
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || !r.OK {
		return fmt.Errorf("ask %s: %s %s", url, resp.Status, r.Error)
	}
	return nil
}
