package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/herd-cluster/herd/pxe/agent"
)

type agentOptions struct {
	cmdline  string
	force    bool
	noReboot bool
}

func newAgentCmd() *cobra.Command {
	var o agentOptions
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the PXE agent: join the session named on the kernel command line, write the disk, reboot",
		Long: `Agent is what the herd initramfs runs as its init. It reads its orders from the
kernel command line (herd.server=IP:PORT herd.session=NAME herd.port=9998
herd.method=raw herd.disk=RULE herd.agentkey=HEX herd.timeout=SECONDS
herd.retries=N herd.stage2=1), loads the drivers its devices ask for, brings
eth0 up with DHCP, registers with the
server (signed with herd.agentkey, this machine's key for one registration),
gets the chain key in the server's sealed answer, finds the disk herd.disk
names (a /dev path, or a rule such as auto, model=PERC*,largest or size>=100G:
see docs/secure-boot.md; a rule that fits no disk or several is reported to
the server with the disks the machine has, and nothing is written), receives
the image with herd recv (--key-file in RAM, --allow DISK: nothing else is
written), reports and reboots. A server that refuses the machine (unknown, its key
already used) is not asked again: the agent says so and reboots after
herd.timeout x herd.retries. With herd.stage2=1 it first receives a stage 2 into RAM
and switches to it; the stage 2's herd agent then receives the image. If the server cannot be reached
it says so on the console, retries herd.retries times and reboots. Once
registered, it checks every 5 s that the server still knows it; if the server
stops answering for herd.timeout seconds before a session reached the agent,
it says so and reboots to try PXE again.

It reboots the machine it runs on, so outside an initramfs (pid 1) it refuses
to start unless --force is given.

Exit codes (only seen with --no-reboot):
  0  the clone verified and was reported
  2  usage error, bad kernel command line
  3  the server was unreachable or the clone failed`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAgent(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.cmdline, "cmdline", "/proc/cmdline", "file holding the kernel command line")
	f.BoolVar(&o.force, "force", false, "run even though this is not pid 1 (the machine reboots at the end)")
	f.BoolVar(&o.noReboot, "no-reboot", false, "do not reboot at the end (for trying the agent out)")
	return cmd
}

func runAgent(ctx context.Context, o agentOptions, console io.Writer) error {
	if os.Getpid() != 1 && !o.force && !o.noReboot {
		return usagef("herd agent reboots this machine at the end; it runs as an initramfs's init (pid 1): give --force or --no-reboot to run it here")
	}
	b, err := os.ReadFile(o.cmdline)
	if err != nil {
		return usagef("read kernel command line: %v", err)
	}
	cfg, err := agent.ParseCmdline(string(b))
	if err != nil {
		fmt.Fprintf(console, "herd: %v\n", err)
		if o.noReboot {
			return usageError{err}
		}
		fmt.Fprintln(console, "herd: rebooting in 30 s")
		select {
		case <-ctx.Done():
		case <-timeAfter30():
		}
		return agent.Reboot()
	}
	a := &agent.Agent{Config: cfg, Console: console}
	if o.noReboot {
		a.Reboot = func() error { return nil }
	}
	err = a.Run(ctx)
	if os.Getpid() == 1 && !o.noReboot {
		// Init must never exit (the kernel would panic): the reboot
		// failed, keep trying.
		for {
			fmt.Fprintf(console, "herd: still running after the reboot request (%v); retrying in 10 s\n", err)
			time.Sleep(10 * time.Second)
			err = agent.Reboot()
		}
	}
	if err != nil {
		return exitError{ExitFailed, err}
	}
	return nil
}

func timeAfter30() <-chan time.Time { return time.After(30 * time.Second) }
