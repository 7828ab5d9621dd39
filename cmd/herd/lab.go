package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/herd-cluster/herd/harness"
	"github.com/herd-cluster/herd/internal/units"
)

// labOptions are the flags every `herd lab` subcommand shares.
type labOptions struct {
	name string
}

func newLabCmd() *cobra.Command {
	var o labOptions
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Run a whole cluster on this machine to try herd before real hardware",
		Long: `Lab builds a cluster on this one machine (root needed): a "golden" network
namespace holding a bridge (10.99.0.1) and N node namespaces joined to it
(node1 is 10.99.0.11, node2 10.99.0.12, ...). Every node has its own mount
namespace and its own loop-backed disk, always at
` + harness.NodeDisk + ` inside the node, so one config fits all nodes.
The lab persists between invocations until "herd lab down".

  herd lab up -n 8 --disk 2G --rate 1gbit
  herd key new /var/tmp/lab.key
  herd lab exec node1 -- herd recv --key-file /var/tmp/lab.key --allow ` + harness.NodeDisk + `
  herd lab exec golden -- herd send --key-file /var/tmp/lab.key --to 10.99.0.11,10.99.0.12 --in golden.img --out ` + harness.NodeDisk + `
  herd lab status
  herd lab fault node3 cut
  herd lab down`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown lab command %q (want up, exec, status or down)", args[0])
			}
			return cmd.Help()
		},
	}
	cmd.PersistentFlags().StringVar(&o.name, "name", "lab", "name of the lab (several labs may coexist)")
	cmd.AddCommand(newLabUpCmd(&o), newLabExecCmd(&o), newLabStatusCmd(&o), newLabDownCmd(&o), newLabFaultCmd(&o))
	return cmd
}

func newLabUpCmd(o *labOptions) *cobra.Command {
	var (
		nodes        int
		disk, rate   string
		subnet       string
		replaceStale bool
	)
	cmd := &cobra.Command{
		Use:   "up [-n NODES] [--disk SIZE] [--rate RATE]",
		Short: "Build the lab: N nodes with a disk each on one bridge",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			size, err := units.ParseSize(disk)
			if err != nil {
				return usageError{units.FlagError("--disk", err)}
			}
			if size <= 0 {
				return usagef("--disk %q: want a size above zero (like 2G)", disk)
			}
			var bits uint64
			if rate != "" {
				if bits, err = units.ParseRate(rate); err != nil {
					return usageError{units.FlagError("--rate", err)}
				}
			}
			pfx, err := netip.ParsePrefix(subnet)
			if err != nil {
				return usagef("--subnet %q: %w", subnet, err)
			}
			if replaceStale {
				if err := harness.Destroy(o.name); err != nil && !errors.Is(err, harness.ErrNotFound) {
					return fmt.Errorf("remove old lab %s: %w", o.name, err)
				}
			}
			c, err := harness.New(cmd.Context(), harness.Config{
				Name: o.name, Nodes: nodes, DiskSize: size, Rate: bits, Subnet: pfx, Persistent: true,
			})
			switch {
			case errors.Is(err, harness.ErrBadConfig):
				return usageError{err}
			case errors.Is(err, harness.ErrExists):
				return fmt.Errorf("lab %s is already up (herd lab down --name %s, or up --replace): %w", o.name, o.name, err)
			case err != nil:
				return fmt.Errorf("lab up: %w", err)
			}
			return printLabStatus(cmd.OutOrStdout(), c)
		},
	}
	f := cmd.Flags()
	f.IntVarP(&nodes, "nodes", "n", 4, "number of nodes besides golden (1..240)")
	f.StringVar(&disk, "disk", "1G", "size of each node's (sparse) disk")
	f.StringVar(&rate, "rate", "", "shape every node's link, e.g. 1gbit or 500mbit (default unshaped)")
	f.StringVar(&subnet, "subnet", "10.99.0.0/24", "address range of the lab network")
	f.BoolVar(&replaceStale, "replace", false, "take down an existing lab of the same name first")
	return cmd
}

func newLabExecCmd(o *labOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "exec NODE -- CMD [ARG...]",
		Short: "Run a command inside a lab node (golden, node1..nodeN)",
		Long: `Exec runs CMD inside NODE: in its network namespace and, for nodeI, its mount
namespace, where its disk is ` + harness.NodeDisk + `. "golden" (or "host")
is the namespace with the bridge; it shares this machine's files. The exit
code is CMD's.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := o.node(args[0])
			if err != nil {
				return err
			}
			argv := args[1:]
			if argv[0] == "--" {
				argv = argv[1:]
			}
			if len(argv) == 0 {
				return usagef("lab exec %s: no command given", args[0])
			}
			x := n.Command(cmd.Context(), argv[0], argv[1:]...)
			// Stay in our process group so a terminal works (and Ctrl-C
			// reaches the command).
			x.SysProcAttr = &syscall.SysProcAttr{}
			x.Cancel = func() error { return x.Process.Signal(syscall.SIGTERM) }
			x.Stdin, x.Stdout, x.Stderr = cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()
			err = x.Run()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code := ee.ExitCode()
				if code < 0 {
					code = 128 + int(ee.Sys().(syscall.WaitStatus).Signal())
				}
				return exitError{code: code}
			}
			if err != nil {
				return fmt.Errorf("exec in %s: %w", n.Name(), err)
			}
			return nil
		},
	}
	cmd.Flags().SetInterspersed(false)
	return cmd
}

func newLabStatusCmd(o *labOptions) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the lab's nodes, addresses and disks",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := harness.Open(o.name)
			if err != nil {
				return labOpenError(o.name, err)
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(labStatusOf(c))
			}
			return printLabStatus(cmd.OutOrStdout(), c)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as one JSON object")
	return cmd
}

func newLabDownCmd(o *labOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Remove the lab and the leftovers of any crashed run",
		Long: `Down removes the lab: its processes, namespaces (with their links), mounts,
loop devices, files. It also removes what crashed or killed runs left behind:
labs and test clusters whose creator is gone, namespaces with the lab prefix
that no running lab claims, also when their mounts are hidden under a bind of
/run/netns over itself. It lists what it removed; nothing to remove is not an
error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			removed, err := harness.Down(o.name)
			if errors.Is(err, harness.ErrBadConfig) {
				return usageError{err}
			}
			w := cmd.OutOrStdout()
			if len(removed) == 0 && err == nil {
				fmt.Fprintf(w, "no lab %q is up and nothing was left behind: nothing to remove\n", o.name)
				return nil
			}
			if len(removed) > 0 {
				fmt.Fprintln(w, "removed:")
				for _, r := range removed {
					fmt.Fprintf(w, "  %s\n", r)
				}
			}
			if err != nil {
				return fmt.Errorf("lab down: %w", err)
			}
			fmt.Fprintf(w, "lab %q is down\n", o.name)
			return nil
		},
	}
}

// node opens the lab and returns its node name (golden, node1, ...).
func (o *labOptions) node(name string) (*harness.Node, error) {
	c, err := harness.Open(o.name)
	if err != nil {
		return nil, labOpenError(o.name, err)
	}
	n, err := c.Node(name)
	if err != nil {
		return nil, usageError{err}
	}
	return n, nil
}

func labOpenError(name string, err error) error {
	if errors.Is(err, harness.ErrNotFound) {
		return fmt.Errorf("no lab %q is up (run: herd lab up): %w", name, err)
	}
	return fmt.Errorf("open lab %s: %w", name, err)
}

// labStatus is the JSON form of `herd lab status`.
type labStatus struct {
	Name     string          `json:"name"`
	Subnet   string          `json:"subnet"`
	RateBits uint64          `json:"rate_bits"`
	DiskSize int64           `json:"disk_size"`
	Nodes    []labNodeStatus `json:"nodes"`
}

type labNodeStatus struct {
	Name     string `json:"name"`
	Addr     string `json:"addr"`
	HostDisk string `json:"host_disk,omitempty"`
	NodeDisk string `json:"node_disk,omitempty"`
	NetNS    string `json:"netns"`
	Procs    int    `json:"procs"`
}

func labStatusOf(c *harness.Cluster) labStatus {
	s := labStatus{Name: c.Name(), Subnet: c.Subnet().String(), RateBits: c.Rate(), DiskSize: c.DiskSize()}
	for _, n := range c.All() {
		ns := labNodeStatus{Name: n.Name(), Addr: n.Addr().String(), HostDisk: n.Disk(), NetNS: n.NetNS(), Procs: len(n.Pids())}
		if n.Disk() != "" {
			ns.NodeDisk = harness.NodeDisk
		}
		s.Nodes = append(s.Nodes, ns)
	}
	return s
}

func printLabStatus(w io.Writer, c *harness.Cluster) error {
	s := labStatusOf(c)
	rate := "unshaped"
	if s.RateBits > 0 {
		rate = fmt.Sprintf("%g Mbit/s", float64(s.RateBits)/1e6)
	}
	fmt.Fprintf(w, "lab %q: %d nodes, disk %d MiB each at %s, links %s, subnet %s\n",
		s.Name, len(s.Nodes)-1, s.DiskSize>>20, harness.NodeDisk, rate, s.Subnet)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tADDRESS\tHOST DISK\tPROCS")
	for _, n := range s.Nodes {
		d := n.HostDisk
		if d == "" {
			d = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", n.Name, n.Addr, d, n.Procs)
	}
	return tw.Flush()
}
