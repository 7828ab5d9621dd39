package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/herd-cluster/herd/pxe"
	"github.com/herd-cluster/herd/pxe/bootcfg"
	"github.com/herd-cluster/herd/pxe/httpboot"
	"github.com/herd-cluster/herd/pxe/state"
)

func newPXECmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pxe",
		Short: "PXE services: DHCP (server or proxy), TFTP, HTTP boot and per-machine boot state",
	}
	cmd.AddCommand(newPXEServeCmd(), newPXEListCmd(), newPXELogsCmd(), newPXESetCmd(), newPXEMenuCmd(), newPXEInitCmd())
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
		Example: `  herd pxe serve -i eth1 -p 10.0.1.21 --net 10.0.1 -w 10.0.1.253 -s 10.0.1.253 --boot-dir /srv/herd/boot --key-file /etc/herd/key --macs 52:54:00:12:34:56,52:54:00:12:34:57
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
	log := loggerFrom(ctx, logw).With("session", p.session)
	alarmf := printfAt(log, slog.LevelWarn)
	logf := printfAt(log, slog.LevelInfo)
	if p.quiet {
		logf = nil
	}
	if err := p.live.check(); err != nil {
		return err
	}
	o, err := p.options(logf, alarmf)
	if err != nil {
		return err
	}
	hub, endLive, err := p.live.start(ctx, "pxe", logw)
	if err != nil {
		return err
	}
	defer endLive()
	if hub != nil {
		o.Count = hub.Count
	}
	srv, err := pxe.New(o)
	if err != nil {
		return usageError{err}
	}
	go hub.WatchStore(ctx, srv.Store())
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
			ms, err := loadMachines(cmd.Context(), statePath, server, keyFile)
			if err != nil {
				return err
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

func newPXELogsCmd() *cobra.Command {
	var statePath, server, keyFile string
	cmd := &cobra.Command{
		Use:   "logs MAC (--state FILE | --server http://IP:PORT --key-file FILE)",
		Short: "Show a machine's state, reason, its agent's log and the kernel log its agent sent with its failure",
		Long: `Logs prints what the server knows of one machine: its state and reason, what
its agent did to the clone (identity, hooks), the last lines its agent printed
(sent with its report, success or failure), and the tail of the kernel log its
agent sent with its last failure (all kept until it registers again), e.g. a
disk controller's errors or a driver that did not load.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			mac, err := state.NormalizeMAC(args[0])
			if err != nil {
				return usageError{err}
			}
			ms, err := loadMachines(cmd.Context(), statePath, server, keyFile)
			if err != nil {
				return err
			}
			for _, m := range ms {
				if m.MAC != mac {
					continue
				}
				w := cmd.OutOrStdout()
				fmt.Fprintf(w, "%s %s %s", m.MAC, m.Name, m.State)
				if m.Reason != "" {
					fmt.Fprintf(w, ": %s", m.Reason)
				}
				if m.Alarm != "" {
					fmt.Fprintf(w, " (ALARM: %s)", m.Alarm)
				}
				fmt.Fprintln(w)
				if m.Fixups != "" {
					fmt.Fprintf(w, "fix-ups: %s\n", m.Fixups)
				}
				if len(m.AgentLog) == 0 {
					fmt.Fprintln(w, "no agent log: its agent has not reported yet")
				} else {
					fmt.Fprintf(w, "agent log, the last %d lines its agent printed before its report:\n", len(m.AgentLog))
					for _, l := range m.AgentLog {
						fmt.Fprintln(w, "  "+l)
					}
				}
				if len(m.Log) == 0 {
					fmt.Fprintln(w, "no kernel log: its agent sent none (it sends one with a failure)")
					return nil
				}
				fmt.Fprintf(w, "kernel log, the last %d lines its agent sent with its failure:\n", len(m.Log))
				for _, l := range m.Log {
					fmt.Fprintln(w, "  "+l)
				}
				return nil
			}
			return exitError{ExitFailed, fmt.Errorf("no machine %s", mac)}
		},
	}
	cmd.Flags().StringVar(&statePath, "state", "", "machine state file")
	cmd.Flags().StringVar(&server, "server", "", "running herd pxe server, http://IP:PORT")
	cmd.Flags().StringVar(&keyFile, "key-file", "", "session key file of the server (with --server)")
	return cmd
}

// loadMachines reads the machines from a running server or a state file.
func loadMachines(ctx context.Context, statePath, server, keyFile string) ([]state.Machine, error) {
	switch {
	case server != "":
		if err := checkServerURL("server", server); err != nil {
			return nil, err
		}
		key, err := operatorKey(keyFile)
		if err != nil {
			return nil, err
		}
		ms, err := (&httpboot.OperatorClient{Server: server, Cred: key}).Machines(ctx)
		if err != nil {
			return nil, operatorError(err)
		}
		return ms, nil
	case statePath != "":
		b, err := os.ReadFile(statePath)
		if err != nil {
			return nil, fmt.Errorf("read state %s: %w", statePath, err)
		}
		ms, err := state.Load(b)
		if err != nil {
			return nil, fmt.Errorf("state %s: %w", statePath, err)
		}
		return ms, nil
	}
	return nil, usagef("give --state FILE or --server URL")
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
			if a.Server != "" {
				if err := checkListen("server", a.Server); err != nil {
					return err
				}
			}
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
	f.StringVar(&a.Disk, "disk", "auto", "disk the nodes write: a /dev path or a rule (auto: the one disk that may be written; model=PAT, serial=PAT, size>=100G, size<=2T, largest, smallest, joined by commas)")
	f.StringVar(&m.Default, "default", "local", "label booted when nobody chooses")
	f.StringVar(&m.Kernel, "kernel", "vmlinuz", "kernel path on the TFTP server")
	f.StringVar(&m.Initrd, "initrd", "initrd.img", "initramfs path on the TFTP server")
	f.StringVar(&m.NFSURL, "nfs", "", "SERVER:/DIR for the nfs label")
	f.StringVar(&m.HTTPURL, "http", "", "SERVER:/DIR for the http label")
	return cmd
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
				if err := checkServerURL("server", server); err != nil {
					return err
				}
				op, err := operatorKey(keyFile)
				if err != nil {
					return err
				}
				return operatorError((&httpboot.OperatorClient{Server: server, Cred: op}).Set(cmd.Context(), mac, httpboot.SetRequest{State: p, Reason: reason}))
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

// operatorError makes a bad --server a usage error.
func operatorError(err error) error {
	if errors.Is(err, httpboot.ErrServerURL) {
		return usagef("--server: %v", err)
	}
	return err
}
