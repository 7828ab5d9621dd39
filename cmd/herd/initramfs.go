package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/herd-cluster/herd/pxe"
	"github.com/herd-cluster/herd/pxe/initramfs"
	"github.com/herd-cluster/herd/pxe/kmod"
)

type initramfsOptions struct {
	out        string
	kernelDeb  string
	kernelPkg  string
	kernelRoot string
	cache      string
	busybox    string
	herd       string
	modules    []string
	firmware   string
	secureBoot bool
	kernelName string
	initrdName string
}

func newInitramfsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "initramfs",
		Short: "Build the kernel and initramfs that PXE-booted machines run (the herd agent)",
	}
	cmd.AddCommand(newInitramfsBuildCmd(), newInitramfsStage2Cmd())
	return cmd
}

func newInitramfsStage2Cmd() *cobra.Command {
	var out, busybox, herd, initFile string
	var withHerd bool
	var tools []string
	cmd := &cobra.Command{
		Use:   "stage2 --out FILE.cpio.gz",
		Short: "Make a small busybox-based stage 2 for herd deploy --stage2",
		Long: `Stage2 writes a gzip-compressed cpio archive of a small root file system:
busybox, an /init that runs "herd agent", and the folders a root needs. With
herd deploy --stage2 FILE every node receives it through the chain into RAM,
switches to it, and its herd agent then clones the disk (the seed's step 2).
Any other cpio or tar archive of a root file system works the same way if its
/init (or /sbin/init) ends by running "herd agent"; without /bin/herd the
first agent gives the stage 2 its own.

--tools copies programs of this machine into the stage 2's /bin with their
shared libraries: herd deploy --method files runs the mkfs tools of the
desc's file systems, blkid, e2fsck, sfdisk and extlinux on the nodes.

Exit codes:
  0  archive written
  2  usage error
  3  build failed`,
		Example: `  herd initramfs stage2 --out /srv/herd/stage2.cpio.gz
  herd initramfs stage2 --out rescue.cpio.gz --init my-init.sh --with-herd
  herd initramfs stage2 --out files.cpio.gz --tools mkfs.ext4,mkfs.vfat,blkid,e2fsck,extlinux`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usagef("--out FILE is required")
			}
			if !strings.HasSuffix(out, ".cpio.gz") {
				return usagef("--out %s: name it .cpio.gz (the nodes unpack it by its name)", out)
			}
			o := initramfs.Stage2Options{Busybox: busybox, Tools: tools}
			if initFile != "" {
				b, err := os.ReadFile(initFile)
				if err != nil {
					return usagef("--init: %v", err)
				}
				o.Init = b
			}
			if withHerd || herd != "" {
				if herd == "" {
					self, err := os.Executable()
					if err != nil {
						return fmt.Errorf("find the herd binary: %w (give --herd)", err)
					}
					herd = self
				}
				o.Herd = herd
			}
			b, err := initramfs.BuildStage2(o)
			if err != nil {
				return err
			}
			if err := os.WriteFile(out, b, 0o644); err != nil {
				return fmt.Errorf("write %s: %w", out, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "stage 2: %s (%d bytes)\n", out, len(b))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&out, "out", "o", "", "archive to write (FILE.cpio.gz)")
	f.StringVar(&busybox, "busybox", "/bin/busybox", "static busybox binary")
	f.StringVar(&initFile, "init", "", "file to use as /init instead of the default")
	f.BoolVar(&withHerd, "with-herd", false, "put this herd binary in (default: the first agent gives its own)")
	f.StringVar(&herd, "herd", "", "static herd binary to put in (implies --with-herd)")
	f.StringSliceVar(&tools, "tools", nil, "programs of this machine to copy into /bin with their shared libraries (comma-separated)")
	return cmd
}

func newInitramfsBuildCmd() *cobra.Command {
	var o initramfsOptions
	cmd := &cobra.Command{
		Use:   "build [--out DIR]",
		Short: "Make vmlinuz and initrd.img (the server image) from Debian's generic kernel, busybox and this herd binary",
		Long: `Build takes Debian's generic kernel package (linux-image-amd64's current
version, downloaded with apt-get download into --cache unless --kernel-deb or
--kernel-root is given; nothing is installed), keeps the storage and network
drivers servers use with their dependencies (--modules to choose others),
adds a static busybox and the herd binary, and writes the kernel and a
gzip-compressed initramfs to --out. Same inputs give the same bytes.

At boot the agent loads only the drivers the machine's devices ask for (by
the modalias of each device under /sys), and says which PCI devices no driver
of the image serves. Default drivers:
  ` + strings.Join(initramfs.DefaultModules, " ") + `

Firmware: Debian's kernel package holds none, and some NICs need it (bnx2x,
some Intel ice and QLogic cards). --firmware DIR copies a folder laid out
like /lib/firmware (for example from firmware-misc-nonfree or the vendor)
into the image; the build lists the firmware files the drivers may ask for
that are not in it.

--secure-boot also puts Debian's signed shim (shimx64.efi, from shim-signed)
and signed GRUB netboot image (grubx64.efi, from grub-efi-amd64-signed) in
--out: give herd pxe serve or herd deploy --efi-file shimx64.efi and UEFI
machines with Secure Boot on boot the agent through shim and GRUB, which
verify the kernel. The initramfs is not verified (see docs/secure-boot.md).

The herd binary must be static (CGO_ENABLED=0 go build ./cmd/herd).

Exit codes:
  0  kernel and initramfs written
  2  usage error
  3  build failed (download, missing module, dynamic binary, write error)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runInitramfsBuild(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.out, "out", "o", ".", "folder for the kernel and initramfs")
	f.StringVar(&o.kernelDeb, "kernel-deb", "", "kernel .deb to use instead of downloading one")
	f.StringVar(&o.kernelPkg, "kernel-package", "", "kernel package to download (default: what "+initramfs.MetaPackage+" depends on; linux-image-VERSION-cloud-amd64 for virtual machines only)")
	f.StringVar(&o.kernelRoot, "kernel-root", "", "folder holding an already extracted kernel package")
	f.StringVar(&o.cache, "cache", "/var/cache/herd", "folder keeping downloaded kernel packages")
	f.StringVar(&o.busybox, "busybox", "/bin/busybox", "static busybox binary")
	f.StringVar(&o.herd, "herd", "", "static herd binary to put in (default: this executable)")
	f.StringSliceVar(&o.modules, "modules", nil, "drivers to put in instead of the server set (dependencies are added; each must exist)")
	f.StringVar(&o.firmware, "firmware", "", "folder laid out like /lib/firmware to copy into the image")
	f.BoolVar(&o.secureBoot, "secure-boot", false, "also write Debian's signed shimx64.efi and grubx64.efi (netboot) to --out")
	f.StringVar(&o.kernelName, "kernel-name", "vmlinuz", "file name of the kernel in --out")
	f.StringVar(&o.initrdName, "initrd-name", "initrd.img", "file name of the initramfs in --out")
	return cmd
}

func runInitramfsBuild(ctx context.Context, o initramfsOptions, stdout io.Writer) error {
	if o.kernelDeb != "" && o.kernelRoot != "" {
		return usagef("give --kernel-deb or --kernel-root, not both")
	}
	for _, n := range []string{o.kernelName, o.initrdName} {
		if n == "" || strings.ContainsRune(n, '/') {
			return usagef("output name %q must be a plain file name", n)
		}
	}
	if o.herd == "" {
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find the herd binary: %w (give --herd)", err)
		}
		o.herd = self
	}
	root := o.kernelRoot
	if root == "" {
		deb := o.kernelDeb
		if deb == "" {
			var err error
			if deb, err = initramfs.FetchKernelDeb(ctx, o.cache, o.kernelPkg); err != nil {
				return err
			}
		}
		tmp, err := os.MkdirTemp("", "herd-kernel-")
		if err != nil {
			return fmt.Errorf("create build folder: %w", err)
		}
		defer os.RemoveAll(tmp)
		if err := initramfs.ExtractDeb(ctx, deb, tmp); err != nil {
			return err
		}
		root = tmp
		fmt.Fprintf(stdout, "kernel package %s\n", filepath.Base(deb))
	}
	if o.firmware != "" {
		if st, err := os.Stat(o.firmware); err != nil || !st.IsDir() {
			return usagef("--firmware %s: not a folder", o.firmware)
		}
	}
	res, err := initramfs.Build(initramfs.Options{KernelRoot: root, Busybox: o.busybox, Herd: o.herd, Modules: o.modules, Firmware: o.firmware})
	if err != nil {
		return err
	}
	if err := res.WriteFiles(o.out, o.kernelName, o.initrdName); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "kernel %s: %s (%d bytes)\n", res.KernelVersion, filepath.Join(o.out, o.kernelName), len(res.Kernel))
	fmt.Fprintf(stdout, "initramfs: %s (%d bytes)\n", filepath.Join(o.out, o.initrdName), len(res.Initrd))
	printDrivers(stdout, res, o.modules)
	if o.secureBoot {
		copied, err := pxe.SecureBootFiles(o.out)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "secure boot: %s in %s (boot UEFI machines with --efi-file shimx64.efi)\n", strings.Join(copied, ", "), o.out)
	}
	return nil
}

// printDrivers says which drivers the image holds, which of the
// defaults this kernel lacks, the firmware they may want, and what a
// thousand machines fetching the image cost.
func printDrivers(w io.Writer, res *initramfs.Result, asked []string) {
	if len(asked) == 0 {
		asked = initramfs.DefaultModules
	}
	in := map[string]bool{}
	for _, m := range res.Modules {
		in[m.Name] = true
	}
	var drivers []string
	for _, n := range asked {
		if n = kmod.Name(n); in[n] {
			drivers = append(drivers, n)
		}
	}
	fmt.Fprintf(w, "drivers (%d, loaded at boot by the devices that need them): %s\n", len(drivers), strings.Join(drivers, " "))
	fmt.Fprintf(w, "modules in the image with their dependencies: %d\n", len(res.Modules))
	if len(res.Missing) > 0 {
		fmt.Fprintf(w, "not modules of this kernel (built in or absent): %s\n", strings.Join(res.Missing, " "))
	}
	if len(res.Firmware) > 0 {
		fmt.Fprintf(w, "firmware files added: %d\n", len(res.Firmware))
	}
	if n := len(res.FirmwareWanted); n > 0 {
		fmt.Fprintf(w, "firmware the drivers may ask for and the image lacks: %d files (add them with --firmware DIR), e.g. %s\n", n, res.FirmwareWanted[0])
	}
	total := float64(len(res.Kernel)+len(res.Initrd)) * 1000
	fmt.Fprintf(w, "1000 machines fetching kernel and initramfs: %.1f GB from the server, %.0f s at 10 Gbit/s, %.0f s at 1 Gbit/s\n",
		total/1e9, total*8/10e9, total*8/1e9)
}
