package main

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/herd-cluster/herd/harness"
	"github.com/herd-cluster/herd/internal/units"
)

// newLabFaultCmd is herd lab fault: faults injected into a running lab.
func newLabFaultCmd(o *labOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "fault NODE kill|freeze|thaw|cut|restore|loss N|rate RATE|slow-disk RATE",
		Short: "Inject a fault into a lab node (or undo it)",
		Long: `Fault changes one node of the lab:

  kill            SIGKILL every process in the node
  freeze, thaw    SIGSTOP, SIGCONT every process in the node
  cut, restore    unplug and replug the node's cable (its bridge port goes down/up)
  loss N          drop one packet in N at random each way (0: no loss)
  rate RATE       shape the node's link, e.g. 100mbit (0: unshaped)
  slow-disk RATE  throttle the node's disk, e.g. 10M/s or 10MB (bytes per second; 0: full speed)

Rates are bits per second (1gbit, 500mbit) or bytes per second (125MB/s,
10M/s, 8MB); sizes take K, M, G, T (binary) or KB, MB, GB, TB (decimal).`,
		Args: cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := o.node(args[0])
			if err != nil {
				return err
			}
			action, val := args[1], ""
			if len(args) == 3 {
				val = args[2]
			}
			needVal := action == "loss" || action == "rate" || action == "slow-disk"
			if needVal != (val != "") {
				return usagef("lab fault %s: %s takes %s", n.Name(), action, map[bool]string{true: "one value", false: "no value"}[needVal])
			}
			switch action {
			case "kill":
				err = n.Kill()
			case "freeze":
				err = n.Freeze()
			case "thaw":
				err = n.Thaw()
			case "cut":
				err = n.Cut()
			case "restore":
				err = n.Restore()
			case "loss":
				var k int
				if k, err = strconv.Atoi(val); err != nil {
					return usagef("loss %q: want a number N (drop one packet in N)", val)
				}
				err = n.SetLoss(k)
			case "rate":
				var bits uint64
				if bits, err = units.ParseRate(val); err != nil {
					return usageError{units.FlagError("rate", err)}
				}
				err = n.SetRate(bits)
			case "slow-disk":
				var bits uint64
				if bits, err = units.ParseRate(val); err != nil {
					return usageError{units.FlagError("slow-disk", err)}
				}
				err = n.SlowDisk(bits/8, bits/8)
			default:
				return usagef("unknown fault %q (kill, freeze, thaw, cut, restore, loss, rate, slow-disk)", action)
			}
			if errors.Is(err, harness.ErrBadConfig) {
				return usageError{err}
			}
			if err != nil {
				return fmt.Errorf("lab fault %s %s: %w", n.Name(), action, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s %s\n", n.Name(), action, val)
			return nil
		},
	}
}
