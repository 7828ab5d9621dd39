package pxee2e

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/herd-cluster/herd/internal/syncio"
	"github.com/herd-cluster/herd/pxe/initramfs"
	"github.com/herd-cluster/herd/qemu"
	"github.com/herd-cluster/herd/ring/report"
)

// bootableGolden makes a disk image with one active ext2 partition
// holding extlinux, the Debian kernel and an initramfs whose /init
// prints marker: a whole system in miniature, bootable by SeaBIOS.
func bootableGolden(path string, sizeMiB int, marker string) {
	GinkgoHelper()
	for _, tool := range []string{"sfdisk", "losetup", "mkfs.ext2", "extlinux", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			Skip("a bootable golden image needs " + tool + " (Debian fdisk, mount, e2fsprogs, extlinux)")
		}
	}
	const mbr = "/usr/lib/EXTLINUX/mbr.bin"
	if _, err := os.Stat(mbr); err != nil {
		Skip("extlinux's " + mbr + " is missing (Debian extlinux)")
	}
	Expect(os.WriteFile(path, nil, 0o644)).To(Succeed())
	Expect(os.Truncate(path, int64(sizeMiB)<<20)).To(Succeed())
	sf := exec.Command("sfdisk", "--quiet", path)
	sf.Stdin = strings.NewReader("label: dos\nstart=2048, type=83, bootable\n")
	out, err := sf.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "sfdisk: %s", out)
	run("dd", "if="+mbr, "of="+path, "bs=440", "count=1", "conv=notrunc", "status=none")

	// No partition scanning on loop devices here: a loop device of its own
	// for the partition.
	loopOut, err := exec.Command("losetup", "--find", "--show", "--offset", fmt.Sprint(1<<20), "--sizelimit", fmt.Sprint((sizeMiB-1)<<20), path).Output()
	Expect(err).NotTo(HaveOccurred())
	loop := strings.TrimSpace(string(loopOut))
	detached := false
	detach := func() {
		if !detached {
			detached = true
			exec.Command("losetup", "-d", loop).Run()
		}
	}
	DeferCleanup(detach)
	run("mkfs.ext2", "-q", "-L", "herdgolden", loop)
	mnt := GinkgoT().TempDir()
	run("mount", loop, mnt)
	mounted := true
	unmount := func() {
		if mounted {
			mounted = false
			exec.Command("umount", mnt).Run()
		}
	}
	DeferCleanup(unmount)
	goldenTree(mnt, marker)
	run("extlinux", "--install", mnt)
	run("sync")
	unmount()
	detach()
}

// goldenTree writes the files of the golden system into dir: the Debian
// kernel, an initramfs whose /init prints marker and the kernel line, and
// an extlinux configuration booting them.
func goldenTree(dir, marker string) {
	GinkgoHelper()
	ctx := context.Background()
	deb, err := initramfs.FetchKernelDeb(ctx, "/var/cache/herd", "")
	Expect(err).NotTo(HaveOccurred())
	kroot := GinkgoT().TempDir()
	Expect(initramfs.ExtractDeb(ctx, deb, kroot)).To(Succeed())
	res, err := initramfs.Build(initramfs.Options{KernelRoot: kroot, Modules: []string{"virtio_blk"},
		Init: []byte("#!/bin/sh\nmount -t proc proc /proc\necho \"" + marker + " $(cat /proc/cmdline)\"\nexec sleep 100000\n")})
	Expect(err).NotTo(HaveOccurred())
	Expect(os.WriteFile(filepath.Join(dir, "vmlinuz"), res.Kernel, 0o644)).To(Succeed())
	Expect(os.WriteFile(filepath.Join(dir, "initrd.img"), res.Initrd, 0o644)).To(Succeed())
	Expect(os.WriteFile(filepath.Join(dir, "extlinux.conf"), []byte(
		"DEFAULT golden\nPROMPT 0\nTIMEOUT 1\nLABEL golden\n  KERNEL /vmlinuz\n  INITRD /initrd.img\n  APPEND console=ttyS0 quiet herd.golden=1\n"), 0o644)).To(Succeed())
}

// deployRun is herd deploy running in the LAN's namespace.
type deployRun struct {
	cmd       *exec.Cmd
	out, errb syncio.Buffer
	done      chan struct{}
	err       error
}

// bootFolder copies the agent's kernel and initramfs into dir/boot.
func bootFolder(dir string) string {
	GinkgoHelper()
	bootDir := filepath.Join(dir, "boot")
	Expect(os.MkdirAll(bootDir, 0o755)).To(Succeed())
	for src, dst := range map[string]string{kernel: "vmlinuz", initrd: "initrd.img"} {
		b, err := os.ReadFile(src)
		Expect(err).NotTo(HaveOccurred())
		Expect(os.WriteFile(filepath.Join(bootDir, dst), b, 0o644)).To(Succeed())
	}
	// The Secure Boot chain, when herd initramfs build --secure-boot
	// could write it.
	for _, name := range []string{"shimx64.efi", "grubx64.efi"} {
		if b, err := os.ReadFile(filepath.Join(suiteBoot, name)); err == nil {
			Expect(os.WriteFile(filepath.Join(bootDir, name), b, 0o644)).To(Succeed())
		}
	}
	return bootDir
}

// startDeploy runs herd deploy for nodes machines on l (DHCP server on
// its bridge, HTTP only) with extra args (what to clone), until the spec
// ends.
func startDeploy(l *lan, dir string, nodes int, extra ...string) *deployRun {
	GinkgoHelper()
	return runHerdDeploy(l, append([]string{"deploy",
		"-i", l.bridge, "--server-ip", l.ip, "--range", "10.79.0.100-10.79.0.150", "--netmask", "255.255.255.0",
		"--tftp-port", "0", "--boot-dir", bootFolder(dir), "--state", filepath.Join(dir, "machines.json"),
		"--nodes", fmt.Sprint(nodes), "--settle", "5s", "--disk", "/dev/vda", "--session", "e2e",
		"--agent-timeout", "10s", "--agent-retries", "10", "--connect-timeout", "60s",
		"--wait", "4m", "--linger", "30s", "--json"}, extra...)...)
}

// runHerdDeploy runs herd with args (a deploy) in l's namespace until the
// spec ends.
func runHerdDeploy(l *lan, args ...string) *deployRun {
	GinkgoHelper()
	d := &deployRun{cmd: exec.Command("ip", append([]string{"netns", "exec", l.ns, herdBin}, args...)...), done: make(chan struct{})}
	d.cmd.Stdout, d.cmd.Stderr = &d.out, &d.errb
	// Its own process group, so cleanup also ends what it runs.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	Expect(d.cmd.Start()).To(Succeed())
	go func() { d.err = d.cmd.Wait(); close(d.done) }()
	DeferCleanup(func() {
		syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.done
		if CurrentSpecReport().Failed() {
			GinkgoWriter.Printf("herd deploy stdout:\n%s\nstderr:\n%s\n", d.out.String(), d.errb.String())
		}
	})
	return d
}

// result waits for herd deploy to end successfully and returns its
// result, in which every machine went local.
func (d *deployRun) result(machines int) *report.Event {
	GinkgoHelper()
	Eventually(d.done, 3*time.Minute).Should(BeClosed(), func() string { return "herd deploy did not end: " + d.errb.String() })
	Expect(d.err).NotTo(HaveOccurred(), "herd deploy failed: %s\n%s", d.out.String(), d.errb.String())
	lines := strings.Split(strings.TrimSpace(d.out.String()), "\n")
	result, err := report.Parse([]byte(lines[len(lines)-1]))
	Expect(err).NotTo(HaveOccurred(), "deploy JSON: %s", d.out.String())
	Expect(result.Event).To(Equal(report.Deploy))
	Expect(*result.OK).To(BeTrue(), "deploy: %s", d.out.String())
	Expect(result.Machines).To(HaveLen(machines))
	for _, m := range result.Machines {
		Expect(m.OK).To(BeTrue(), "%+v", m)
		Expect(m.State).To(Equal("local"), "%+v", m)
	}
	return result
}

// netbootVMs starts one machine per MAC with an empty disk, booting
// from the network (iPXE ROM, falling back to the disk).
func netbootVMs(l *lan, dir string, macs []string) []*qemu.VM {
	GinkgoHelper()
	return netbootMachines(l, dir, macs, qemu.Config{})
}

// netbootMachines is netbootVMs for machines with the hardware of hw
// (firmware, NIC model, disk bus, memory): hw[i] for machine i, or
// hw[0] for all.
func netbootMachines(l *lan, dir string, macs []string, hw ...qemu.Config) []*qemu.VM {
	GinkgoHelper()
	var vms []*qemu.VM
	for i, mac := range macs {
		h := hw[0]
		if len(hw) == len(macs) {
			h = hw[i]
		}
		disk := filepath.Join(dir, fmt.Sprintf("node%d.img", i))
		Expect(os.WriteFile(disk, nil, 0o644)).To(Succeed())
		Expect(os.Truncate(disk, 80<<20)).To(Succeed())
		vm, err := qemu.Start(context.Background(), qemu.Config{
			Name: fmt.Sprintf("pxe%d-%d-%d", i, os.Getpid(), rand.IntN(1e6)), Netns: l.ns, Tap: l.addTap(), MAC: mac,
			Disk: disk, NetBoot: true, SocketDir: GinkgoT().TempDir(),
			Firmware: h.Firmware, NIC: h.NIC, DiskBus: h.DiskBus, MemoryMB: h.MemoryMB, Before: h.Before,
		})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() {
			vm.Kill()
			if CurrentSpecReport().Failed() {
				GinkgoWriter.Printf("console of %s:\n%s\n", vm.Name(), vm.Console())
			}
		})
		vms = append(vms, vm)
	}
	return vms
}

func needIPXEROM() {
	if _, err := os.Stat("/usr/lib/ipxe/qemu/efi-virtio.rom"); err != nil {
		Skip("QEMU's iPXE ROM is missing (Debian ipxe-qemu)")
	}
}

var _ = Describe("herd deploy with PXE-booted QEMU machines", func() {
	It("clones a bootable golden disk (used blocks only) to three BIOS machines of different hardware (e1000e NICs, AHCI and MegaRAID SAS disks, virtio), each finding its own disk, that then boot it from their own disks", func() {
		needIPXEROM()
		dir := GinkgoT().TempDir()
		marker := fmt.Sprintf("HERD-GOLDEN-MARKER-%d", rand.IntN(1e9))
		golden := filepath.Join(dir, "golden.img")
		bootableGolden(golden, 64, marker)

		l := newLAN()
		// The machines to clone are named: only they get an agent key.
		// --disk auto: each agent writes the one disk its machine has,
		// whatever its controller calls it.
		macs := []string{randomMAC(), randomMAC(), randomMAC()}
		// With its live view (issue #16): scraped at the end.
		d := startDeploy(l, dir, 3, "--macs", strings.Join(macs, ","), "--image", golden, "--used-only", "--disk", "auto", "--http", "127.0.0.1:18081")
		vms := netbootMachines(l, dir, macs, qemu.Config{NIC: "e1000e", DiskBus: "ahci"}, qemu.Config{NIC: "e1000e", DiskBus: "megasas"}, qemu.Config{})
		start := time.Now()
		for _, vm := range vms {
			expectLine(vm, "herd: agent starting", 3*time.Minute)
		}
		GinkgoWriter.Printf("all agents started %.1fs after power on\n", time.Since(start).Seconds())
		for i, vm := range vms {
			// The driver its hardware asked for, and the disk it found.
			expectLine(vm, "herd: drivers loaded for this machine", time.Minute)
			expectLine(vm, []string{" e1000e", " e1000e", " virtio_net"}[i], time.Second)
			expectLine(vm, "herd: disk auto: "+[]string{"/dev/sda", "/dev/sda", "/dev/vda"}[i], 2*time.Minute)
			// Its /dev/disk/by-path name, worked out from sysfs
			// (no udev in the agent): SATA port 1, a SCSI target
			// behind the RAID controller, virtio on its PCI slot.
			line, err := vm.ExpectString("\n", time.Second)
			Expect(err).NotTo(HaveOccurred())
			Expect(line).To(MatchRegexp([]string{` path=pci-0000:00:[0-9a-f]{2}\.0-ata-1\.0`, ` path=pci-0000:00:[0-9a-f]{2}\.0-scsi-0:\d+:\d+:0`, ` path=pci-0000:00:[0-9a-f]{2}\.0\s`}[i]))
			expectLine(vm, "herd: clone verified (", 4*time.Minute)
			expectLine(vm, "reboot: Restarting system", time.Minute)
		}
		Expect(vms[1].Console()).To(ContainSubstring(" megaraid_sas"), "the MegaRAID machine loaded its driver")
		Expect(vms[0].Console()).To(ContainSubstring(" ahci"), "the AHCI machine loaded its driver")
		GinkgoWriter.Printf("all clones verified %.1fs after power on\n", time.Since(start).Seconds())
		// Every machine went local before it rebooted: the live view
		// says so, and /metrics counts what was served (herd deploy
		// lingers 30 s after the last one).
		view := liveView(l, "127.0.0.1:18081")
		Expect(view.Machines).To(HaveLen(3))
		for _, m := range view.Machines {
			Expect(macs).To(ContainElement(m.ID))
			Expect(m.State).To(Equal("local"), "%+v", m)
		}
		Expect(view.Failures).To(BeEmpty())
		metrics := scrapeMetrics(l, "127.0.0.1:18081")
		Expect(metrics).To(HaveKeyWithValue(`herd_machines{state="local"}`, 3.0))
		Expect(metrics).To(HaveKeyWithValue(`herd_machines{state="ko"}`, 0.0))
		Expect(metrics).To(HaveKeyWithValue(`herd_failures_total{reason="other"}`, 0.0))
		// Each machine so far: DHCP offer and ack at least once (its
		// ROM; the agent asks again); HTTP the chain script, its own
		// script, kernel, initramfs, then the agent's register and
		// report. No TFTP: this deploy serves HTTP only.
		Expect(metrics[`herd_pxe_requests_total{outcome="ok",service="dhcp"}`]).To(BeNumerically(">=", 3*2))
		Expect(metrics[`herd_pxe_requests_total{outcome="ok",service="http"}`]).To(BeNumerically(">=", 3*6))
		Expect(metrics).NotTo(HaveKey(`herd_pxe_requests_total{outcome="ok",service="tftp"}`))
		for _, vm := range vms {
			// Back in the firmware: iPXE asks again, the server sends the
			// machine to its disk, extlinux boots the golden system.
			expectLine(vm, marker+" ", 3*time.Minute)
			expectLine(vm, "herd.golden=1", 10*time.Second) // the rest of the marker line: the disk's kernel line
			Expect(vm.Count("herd: agent starting")).To(Equal(1), "the agent ran once per machine")
			Expect(vm.Count("boot.ipxe... ok")).To(Equal(2), "the second boot asked the server too, which sent it to its disk")
		}
		GinkgoWriter.Printf("all machines booted the golden disk %.1fs after power on\n", time.Since(start).Seconds())
		res := d.result(3)
		for _, m := range res.Machines {
			Expect(macs).To(ContainElement(m.MAC))
		}
		Expect(res.Chains).To(HaveLen(1))
		Expect(res.Chains[0].Name).To(Equal("image"))
	})

	It("fails a machine whose disk rule fits none of its disks, with the disks it has as the reason, and writes nothing", func() {
		needIPXEROM()
		dir := GinkgoT().TempDir()
		golden := filepath.Join(dir, "golden.img")
		Expect(os.WriteFile(golden, bytes.Repeat([]byte("herd"), 1<<18), 0o644)).To(Succeed())
		l := newLAN()
		mac := randomMAC()
		d := startDeploy(l, dir, 1, "--macs", mac, "--image", golden, "--disk", "size>=1T", "--connect-timeout", "10s")
		vm := netbootVMs(l, dir, []string{mac})[0]
		expectLine(vm, "herd: agent starting", 3*time.Minute)
		expectLine(vm, "herd: agent: no disk to write: disksel: no disk fits rule size>=1T; disks: /dev/vda 80.0MiB", 2*time.Minute)
		expectLine(vm, "nothing was written", 10*time.Second)
		Eventually(d.done, 3*time.Minute).Should(BeClosed(), func() string { return "herd deploy did not end: " + d.errb.String() })
		Expect(d.err).To(HaveOccurred(), "a deploy with a failed machine fails")
		lines := strings.Split(strings.TrimSpace(d.out.String()), "\n")
		res, err := report.Parse([]byte(lines[len(lines)-1]))
		Expect(err).NotTo(HaveOccurred(), "deploy JSON: %s", d.out.String())
		Expect(*res.OK).To(BeFalse())
		Expect(res.Machines).To(HaveLen(1))
		Expect(res.Machines[0].OK).To(BeFalse())
		Expect(res.Machines[0].Reason).To(ContainSubstring("no disk fits rule size>=1T; disks: /dev/vda 80.0MiB"), "%+v", res.Machines[0])
		Expect(vm.Console()).NotTo(ContainSubstring("herd recv"), "herd recv never ran")
	})

	It("sends a stage 2 with mkfs tools through the chain into two machines' RAM, whose own agent then clones the golden system file by file", func() {
		needIPXEROM()
		for _, tool := range []string{"mkfs.ext4", "losetup", "extlinux"} {
			if _, err := exec.LookPath(tool); err != nil {
				Skip("the file-level stage 2 carries this machine's " + tool + " (Debian e2fsprogs, mount, extlinux)")
			}
		}
		mbr, err := os.ReadFile("/usr/lib/EXTLINUX/mbr.bin")
		if err != nil {
			Skip("extlinux's mbr.bin is missing (Debian extlinux)")
		}
		dir := GinkgoT().TempDir()
		// The golden system: files in a folder and a desc that makes one
		// bootable ext4 partition filling each node's disk.
		marker := fmt.Sprintf("HERD-GOLDEN-MARKER-%d", rand.IntN(1e9))
		golden := filepath.Join(dir, "golden")
		Expect(os.MkdirAll(golden, 0o755)).To(Succeed())
		goldenTree(golden, marker)
		descFile := filepath.Join(dir, "golden.desc")
		Expect(os.WriteFile(descFile, []byte("linux fill fs=ext4 mount=/ label=golden boot\n"), 0o644)).To(Succeed())
		// A busybox stage 2 with the tools the file-level method runs; its
		// init says where it runs; the first agent gives it its herd.
		s2marker := fmt.Sprintf("HERD-STAGE2-MARKER-%d", rand.IntN(1e9))
		s2, err := initramfs.BuildStage2(initramfs.Stage2Options{
			Tools: []string{"mkfs.ext4", "losetup", "extlinux"},
			Files: map[string][]byte{"usr/lib/EXTLINUX/mbr.bin": mbr},
			Init: []byte("#!/bin/sh\nexport PATH=/bin\n" +
				"echo \"" + s2marker + " root=$(stat -f -c %T /) herd=$(ls /bin/herd)\"\nexec /bin/herd agent\n")})
		Expect(err).NotTo(HaveOccurred())
		stage2 := filepath.Join(dir, "stage2.cpio.gz")
		Expect(os.WriteFile(stage2, s2, 0o644)).To(Succeed())
		GinkgoWriter.Printf("stage 2: %d bytes\n", len(s2))

		l := newLAN()
		// Any machine that PXE-boots here may join (with a warning).
		d := startDeploy(l, dir, 2, "--allow-unknown", "--stage2", stage2, "--method", "files", "--desc", descFile, "--from", golden)
		vms := netbootVMs(l, dir, []string{randomMAC(), randomMAC()})
		start := time.Now()
		for _, vm := range vms {
			expectLine(vm, "herd: registered with 10.79.0.1:8080", 3*time.Minute)
			expectLine(vm, "waiting for the stage2 of session e2e", 5*time.Second)
		}
		for _, vm := range vms {
			expectLine(vm, "herd: stage 2 received (", 3*time.Minute)
			// Inside the stage 2: its own init prints the marker from a
			// root in RAM, with the herd the first agent gave it.
			expectLine(vm, s2marker+" root=tmpfs herd=/bin/herd", time.Minute)
			expectLine(vm, "herd: running in the stage 2", time.Minute)
			expectLine(vm, "herd: eth0 already has 10.79.0.", 30*time.Second)
		}
		GinkgoWriter.Printf("both machines run their stage 2 %.1fs after power on\n", time.Since(start).Seconds())
		for _, vm := range vms {
			expectLine(vm, "herd: clone verified (", 3*time.Minute)
			expectLine(vm, "reboot: Restarting system", time.Minute)
		}
		for _, vm := range vms {
			expectLine(vm, marker+" ", 3*time.Minute)
			Expect(vm.Count(s2marker)).To(Equal(1), "the stage 2 ran once")
		}
		GinkgoWriter.Printf("both machines booted the golden disk %.1fs after power on\n", time.Since(start).Seconds())
		res := d.result(2)
		Expect(d.errb.String()).To(ContainSubstring("warning: --allow-unknown"))
		Expect(res.Chains).To(HaveLen(2))
		macs := []string{res.Machines[0].MAC, res.Machines[1].MAC}
		for i, name := range []string{"stage2", "files"} {
			c := res.Chains[i]
			Expect(c.Name).To(Equal(name))
			Expect(c.OK).To(BeTrue(), "%+v", c)
			Expect(c.Nodes).To(HaveLen(2), "both machines in the %s chain", name)
			var got []string
			for _, n := range c.Nodes {
				Expect(n.State).To(Equal("done"), "%+v", c)
				got = append(got, n.MAC)
			}
			Expect(got).To(ConsistOf(macs))
		}
	})
})
