package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/herd-cluster/herd/desc"
	"github.com/herd-cluster/herd/filelevel"
)

// descExitHelp lists the exit codes of the desc subcommands.
const descExitHelp = `
Exit codes:
  0  done
  2  usage or description error (bad desc, disk too small): nothing was written
  3  the device could not be read or written, or is in use`

func newDescCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "desc",
		Short: "Partition descriptions: lay out, read from a disk, apply to a disk",
		Long: `A desc describes a disk's partitions, one per line, in KA's format
("linux 3500", "extended fill", "logical swap 500", "typeNN", # comments, sizes
in MB) or with herd's extensions: "table gpt", sizes with units (512M, 20G) or
percentages (25%), fs=ext4|ext3|ext2|xfs|vfat|swap|none, label=, name=, mount=,
uuid=, and the flags boot, esp, bios_grub. "fill" takes the rest of its
container, so one desc fits disks of any size. See docs/desc.md.`,
	}
	cmd.AddCommand(newDescLayoutCmd(), newDescCheckCmd(), newDescFromDiskCmd(), newDescApplyCmd())
	return cmd
}

// readDescFile reads and parses a desc file ("-" for stdin). Errors are
// usage errors naming the file, line and column.
func readDescFile(cmd *cobra.Command, path string) (*desc.Desc, error) {
	var text []byte
	var err error
	if path == "-" {
		text, err = io.ReadAll(cmd.InOrStdin())
	} else {
		text, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, usagef("read desc: %w", err)
	}
	d, err := desc.Parse(string(text))
	if err != nil {
		return nil, descError(path, err)
	}
	return d, nil
}

// descError turns a desc.ParseError into a usage error "FILE:LINE:COL: msg".
func descError(path string, err error) error {
	var pe *desc.ParseError
	if errors.As(err, &pe) {
		if pe.Line > 0 {
			return usagef("%s:%d:%d: %s", path, pe.Line, pe.Col, pe.Msg)
		}
		return usagef("%s: %s", path, pe.Msg)
	}
	return err
}

// parseDiskSize reads --size: a number with a unit (80G = 80 GiB, 80GB =
// 80e9 bytes), a plain number being MiB as in a desc.
func parseDiskSize(s string) (int64, error) {
	sz, err := desc.ParseSize(s)
	if err != nil {
		return 0, usagef("--size: %v", err)
	}
	if sz.Kind != desc.SizeFixed {
		return 0, usagef("--size %s: want a size such as 80G or 2TB", s)
	}
	return sz.Bytes, nil
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newDescLayoutCmd() *cobra.Command {
	var size string
	var sector int64
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "layout DESC --size SIZE",
		Short: "Print the exact sectors a desc takes on a disk of the given size",
		Long: `Layout places every partition of DESC ("-" for stdin) on a disk of SIZE
bytes: starts and sizes on 1 MiB boundaries, "fill" stretched to the end of its
container, one MiB before each logical partition for its EBR. A disk too small
for the fixed sizes is refused, naming the first line that does not fit.` + descExitHelp,
		Example: `  herd desc layout node.desc --size 80G
  echo "linux 3500
extended fill
logical swap 500
logical linux fill" | herd desc layout - --size 2TB`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := readDescFile(cmd, args[0])
			if err != nil {
				return err
			}
			if size == "" {
				return usagef("--size is required (for example --size 80G)")
			}
			n, err := parseDiskSize(size)
			if err != nil {
				return err
			}
			p, err := d.Layout(n, sector)
			if err != nil {
				return descError(args[0], err)
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), p)
			}
			_, err = fmt.Fprint(cmd.OutOrStdout(), p)
			return err
		},
	}
	cmd.Flags().StringVar(&size, "size", "", "disk size: 80G (GiB), 80GB (10^9 bytes), 2T, 500000M")
	cmd.Flags().Int64Var(&sector, "sector-size", 512, "logical sector size of the disk (512 or 4096)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the plan as JSON (sectors, types, GUIDs, filesystems)")
	return cmd
}

func newDescCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check DESC",
		Short: "Check a desc and print it in canonical form",
		Long: `Check parses DESC ("-" for stdin), reports the first error with its
line and column, and prints the desc in canonical form.` + descExitHelp,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := readDescFile(cmd, args[0])
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(cmd.OutOrStdout(), d)
			return err
		},
	}
}

func newDescFromDiskCmd() *cobra.Command {
	var noProbe, asJSON bool
	var sector int64
	var mountedAt string
	cmd := &cobra.Command{
		Use:   "from-disk DEV",
		Short: "Read the partition table of a disk or image back into a desc",
		Long: `From-disk reads the MBR (with its extended and logical partitions) or the
GPT of DEV, a block device or an image file, and prints a desc: partitions in
disk order with their exact sizes, except the last partition of each container
(the disk and the extended partition), which becomes "fill" so the desc applies
to a larger or smaller disk. The filesystem, label and UUID of each partition
are read from its superblock (ext2/3/4, xfs, vfat, swap) unless --no-probe.
With --mounted-at DIR, a partition whose filesystem is mounted at DIR or below
(found by UUID, so loop devices count) gets mount= relative to DIR: the desc
then says what herd send --files sends (mount=/ for DIR itself).` + descExitHelp,
		Example: `  herd desc from-disk /dev/sda > node.desc
  herd desc from-disk golden.img
  herd desc from-disk /dev/sda --mounted-at / > golden.desc   # on the running golden node`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dev := args[0]
			size, ss, err := desc.DeviceSize(dev)
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("sector-size") {
				sector = ss // 0 for an image file: detect
			}
			f, err := os.Open(dev)
			if err != nil {
				return err
			}
			defer f.Close()
			p, err := desc.ReadTableSector(f, size, sector)
			if err != nil {
				return fmt.Errorf("read table of %s: %w", dev, err)
			}
			if len(p.Parts) == 0 {
				return fmt.Errorf("%s: the %s table has no partitions", dev, p.Table)
			}
			if !noProbe {
				desc.Probe(f, p)
			}
			var mounted []string
			if mountedAt != "" {
				if noProbe {
					return usagef("--mounted-at finds filesystems by UUID: it cannot be used with --no-probe")
				}
				if mounted, err = filelevel.AddMounts(p, mountedAt); err != nil {
					return fmt.Errorf("mount points under %s: %w", mountedAt, err)
				}
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return printJSON(out, p)
			}
			fmt.Fprintf(out, "# from %s: %s table, %d bytes, %d-byte sectors\n", dev, p.Table, size, p.SectorSize)
			for _, m := range mounted {
				fmt.Fprintf(out, "# %s\n", m)
			}
			_, err = fmt.Fprint(out, desc.ToDesc(p))
			return err
		},
	}
	cmd.Flags().BoolVar(&noProbe, "no-probe", false, "do not read filesystems (no fs=, label=, uuid=)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the table read (exact sectors, GUIDs) as JSON instead of a desc")
	cmd.Flags().Int64Var(&sector, "sector-size", 0, "logical sector size (default: the device's, 512 for an MBR image)")
	cmd.Flags().StringVar(&mountedAt, "mounted-at", "", "add mount= for partitions whose filesystem is mounted at this directory or below (for herd send --files)")
	return cmd
}

func newDescApplyCmd() *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "apply DESC DEV [--dry-run]",
		Short: "Partition DEV from a desc and make its filesystems",
		Long: `Apply lays DESC ("-" for stdin) out for DEV's size, writes the partition table
(MBR with EBRs, or GPT with its backup) and makes each filesystem with
mkfs.ext4/ext3/ext2, mkfs.xfs, mkfs.vfat or mkswap through a loop device at the
partition's offset (no partition nodes needed). DEV is a block device or an
image file; one that is mounted or used by a loop or device-mapper device is
refused. The whole table is encoded and checked before anything is written.
--dry-run prints the plan, the table writes and the commands, and writes
nothing.` + descExitHelp,
		Example: `  herd desc apply node.desc /dev/sda --dry-run
  herd desc apply node.desc /dev/loop3`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := readDescFile(cmd, args[0])
			if err != nil {
				return err
			}
			dev := args[1]
			size, ss, err := desc.DeviceSize(dev)
			if err != nil {
				return err
			}
			if ss == 0 {
				ss = 512
			}
			p, err := d.Layout(size, ss)
			if err != nil {
				return descError(args[0], err)
			}
			opt := desc.WithLog(cmd.OutOrStdout())
			if dryRun {
				opt = desc.WithDryRun(cmd.OutOrStdout())
			}
			if err := desc.Apply(cmd.Context(), p, dev, opt); err != nil {
				return fmt.Errorf("apply %s to %s: %w", args[0], dev, err)
			}
			if !dryRun {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %d partitions written\n", dev, len(p.Parts))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan and commands, write nothing")
	return cmd
}
