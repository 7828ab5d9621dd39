package pxee2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/herd-cluster/herd/qemu"
)

// The EFI system partition's type GUID.
const espType = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"

// uefiGolden makes a GPT disk image with one EFI system partition that
// boots under Secure Boot as a Debian system does: Debian's signed shim
// as the fallback loader EFI/BOOT/BOOTX64.EFI, Debian's signed GRUB
// beside it, EFI/debian/grub.cfg booting the signed Debian kernel and an
// initramfs whose /init prints marker and the kernel line.
//
// The host's kernel may lack vfat, so the file system is made in a file
// and filled with mtools, then written into the partition.
func uefiGolden(path string, sizeMiB int, marker string) {
	GinkgoHelper()
	for _, tool := range []string{"sfdisk", "mkfs.vfat", "mmd", "mcopy", "dd"} {
		if _, err := exec.LookPath(tool); err != nil {
			Skip("a UEFI golden image needs " + tool + " (Debian fdisk, dosfstools, mtools)")
		}
	}
	Expect(os.WriteFile(path, nil, 0o644)).To(Succeed())
	Expect(os.Truncate(path, int64(sizeMiB)<<20)).To(Succeed())
	partMiB := sizeMiB - 2 // 1 MiB before, the backup GPT after
	sf := exec.Command("sfdisk", "--quiet", path)
	sf.Stdin = strings.NewReader(fmt.Sprintf("label: gpt\nstart=2048, size=%d, type=%s, name=esp\n", partMiB<<11, espType))
	out, err := sf.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "sfdisk: %s", out)

	tree := GinkgoT().TempDir()
	goldenTree(tree, marker)
	for dst, src := range map[string]string{
		"EFI/BOOT/BOOTX64.EFI": "/usr/lib/shim/shimx64.efi.signed",
		"EFI/BOOT/grubx64.efi": "/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed",
	} {
		b, err := os.ReadFile(src)
		Expect(err).NotTo(HaveOccurred())
		Expect(os.MkdirAll(filepath.Dir(filepath.Join(tree, dst)), 0o755)).To(Succeed())
		Expect(os.WriteFile(filepath.Join(tree, dst), b, 0o644)).To(Succeed())
	}
	Expect(os.MkdirAll(filepath.Join(tree, "EFI/debian"), 0o755)).To(Succeed())
	Expect(os.WriteFile(filepath.Join(tree, "EFI/debian/grub.cfg"), []byte(
		"set timeout=0\nlinux /vmlinuz console=ttyS0 herd.golden=1\ninitrd /initrd.img\nboot\n"), 0o644)).To(Succeed())

	fat := filepath.Join(GinkgoT().TempDir(), "esp.img")
	run("mkfs.vfat", "-n", "HERDESP", "-C", fat, fmt.Sprint(partMiB<<10))
	run("mmd", "-i", fat, "::/EFI", "::/EFI/BOOT", "::/EFI/debian")
	for _, f := range []string{"vmlinuz", "initrd.img", "EFI/BOOT/BOOTX64.EFI", "EFI/BOOT/grubx64.efi", "EFI/debian/grub.cfg"} {
		run("mcopy", "-i", fat, filepath.Join(tree, f), "::/"+f)
	}
	run("dd", "if="+fat, "of="+path, "bs=1M", "seek=1", "conv=notrunc", "status=none")
}

func needSecureBoot() {
	if err := secureBootAvailable(); err != nil {
		Skip("the UEFI specs need " + err.Error())
	}
	if _, err := os.Stat(filepath.Join(suiteBoot, "shimx64.efi")); err != nil {
		Skip("herd initramfs build --secure-boot wrote no shimx64.efi")
	}
}

var _ = Describe("herd deploy to UEFI machines", func() {
	It("clones a Secure Boot system to a machine with Secure Boot enforced, an NVMe disk and two NICs (an e1000e, then a virtio), booting from the second: shim, GRUB and the agent's kernel verified, the agent on the NIC it booted from, then the clone boots signed from its own disk", func() {
		needSecureBoot()
		dir := GinkgoT().TempDir()
		marker := fmt.Sprintf("HERD-UEFI-MARKER-%d", rand.IntN(1e9))
		golden := filepath.Join(dir, "golden.img")
		uefiGolden(golden, 64, marker)

		l := newLAN()
		mac := randomMAC()
		d := startDeploy(l, dir, 1, "--macs", mac, "--image", golden,
			"--tftp-port", "69", "--efi-file", "shimx64.efi", "--disk", "/dev/nvme0n1")
		// A first NIC on the same network (an Intel e1000e, whose
		// driver the agent loads under lockdown), which herd's DHCP
		// would also give an address: the agent must take the one it
		// booted from (BOOTIF), whose MAC is the one deploy knows. It
		// cannot boot from the e1000e: OVMF has no driver for it, and
		// QEMU's iPXE ROM for it is not signed (docs/secure-boot.md).
		other := randomMAC()
		vm := netbootMachines(l, dir, []string{mac}, qemu.Config{Firmware: "secureboot", DiskBus: "nvme", MemoryMB: 512,
			Before: []qemu.NIC{{Tap: l.addTap(), MAC: other, Model: "e1000e"}}})[0]
		start := time.Now()
		// Firmware → shim (signed by Microsoft's UEFI CA) → GRUB (signed
		// by Debian) → the machine's own GRUB file → the agent's kernel,
		// which the chain verified before it ran.
		expectLine(vm, "NBP filename is shimx64.efi", 3*time.Minute)
		expectLine(vm, "herd: loading the agent", 2*time.Minute)
		expectLine(vm, "EFI stub: UEFI Secure Boot is enabled.", 3*time.Minute)
		expectLine(vm, "Kernel is locked down from EFI Secure Boot", 30*time.Second)
		expectLine(vm, "herd: agent starting", 2*time.Minute)
		// Loaded by the devices' modalias, under lockdown: Debian's
		// signed modules, unchanged.
		expectLine(vm, "herd: drivers loaded for this machine", time.Minute)
		drivers, err := vm.ExpectString("\n", time.Second)
		Expect(err).NotTo(HaveOccurred())
		Expect(drivers).To(And(ContainSubstring(" nvme"), ContainSubstring(" e1000e"), ContainSubstring(" virtio_net")), "the NVMe disk's and both NICs' drivers")
		expectLine(vm, "herd: lease 10.79.0.", time.Minute)
		expectLine(vm, " on eth1 ("+mac+", the NIC it booted from)", time.Second)
		GinkgoWriter.Printf("agent started under Secure Boot %.1fs after power on\n", time.Since(start).Seconds())
		expectLine(vm, "herd: clone verified (", 4*time.Minute)
		expectLine(vm, "reboot: Restarting system", time.Minute)
		// Back through the firmware: the server's GRUB file now sends it
		// to its disk, whose shim, GRUB and kernel Secure Boot checks.
		expectLine(vm, "herd: booting from the disk", 3*time.Minute)
		expectLine(vm, "EFI stub: UEFI Secure Boot is enabled.", 3*time.Minute)
		expectLine(vm, marker+" ", 3*time.Minute)
		expectLine(vm, "herd.golden=1", 10*time.Second)
		Expect(vm.Count("herd: agent starting")).To(Equal(1), "the agent ran once")
		Expect(vm.Count("Kernel is locked down from EFI Secure Boot")).To(Equal(2), "both kernels ran under Secure Boot")
		Expect(vm.Count("Verification failed")).To(BeZero())
		GinkgoWriter.Printf("the clone booted under Secure Boot %.1fs after power on\n", time.Since(start).Seconds())
		res := d.result(1)
		Expect(res.Machines[0].MAC).To(Equal(mac))
	})
})

var _ = Describe("UEFI HTTP boot", func() {
	It("clones to a UEFI machine that boots its disk first: the disk empty, its firmware HTTP boots iPXE from herd (no TFTP), the agent clones it, and it then boots its clone from its disk", func() {
		if _, err := os.Stat(qemu.FirmwareFiles("uefi")[0]); err != nil {
			Skip("UEFI firmware is missing (Debian ovmf)")
		}
		const ipxeEFI = "/usr/lib/ipxe/ipxe.efi"
		ipxe, err := os.ReadFile(ipxeEFI)
		if err != nil {
			Skip("iPXE for UEFI is missing (Debian ipxe)")
		}
		dir := GinkgoT().TempDir()
		marker := fmt.Sprintf("HERD-HTTPBOOT-MARKER-%d", rand.IntN(1e9))
		golden := filepath.Join(dir, "golden.img")
		uefiGolden(golden, 64, marker)
		Expect(os.MkdirAll(filepath.Join(dir, "boot"), 0o755)).To(Succeed())
		Expect(os.WriteFile(filepath.Join(dir, "boot", "ipxe.efi"), ipxe, 0o644)).To(Succeed())

		l := newLAN()
		mac := randomMAC()
		// TFTP stays off (startDeploy): everything comes over HTTP.
		d := startDeploy(l, dir, 1, "--macs", mac, "--image", golden, "--disk", "auto")
		disk := filepath.Join(dir, "node.img")
		Expect(os.WriteFile(disk, nil, 0o644)).To(Succeed())
		Expect(os.Truncate(disk, 80<<20)).To(Succeed())
		vm, err := qemu.Start(context.Background(), qemu.Config{
			Name: fmt.Sprintf("http-%d-%d", os.Getpid(), rand.IntN(1e6)), Netns: l.ns, Tap: l.addTap(), MAC: mac,
			Disk: disk, DiskBus: "nvme", Firmware: "uefi", HTTPBoot: true, MemoryMB: 512, SocketDir: GinkgoT().TempDir(),
		})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() {
			vm.Kill()
			if CurrentSpecReport().Failed() {
				GinkgoWriter.Printf("console of %s:\n%s\n", vm.Name(), vm.Console())
			}
		})
		start := time.Now()
		expectLine(vm, "Start HTTP Boot over IPv4", 3*time.Minute)
		expectLine(vm, "iPXE", 2*time.Minute)
		expectLine(vm, "herd: agent starting", 3*time.Minute)
		expectLine(vm, "herd: disk auto: /dev/nvme0n1", 2*time.Minute)
		line, err := vm.ExpectString("\n", time.Second)
		Expect(err).NotTo(HaveOccurred())
		Expect(line).To(MatchRegexp(` path=pci-0000:00:[0-9a-f]{2}\.0-nvme-1\s`), "its /dev/disk/by-path name")
		GinkgoWriter.Printf("agent started after HTTP boot %.1fs after power on\n", time.Since(start).Seconds())
		expectLine(vm, "herd: clone verified (", 4*time.Minute)
		expectLine(vm, "reboot: Restarting system", time.Minute)
		// Its disk comes first now that it holds a system.
		expectLine(vm, marker+" ", 3*time.Minute)
		expectLine(vm, "herd.golden=1", 10*time.Second)
		Expect(vm.Count("Start HTTP Boot over IPv4")).To(Equal(1), "the second boot did not ask the network")
		Expect(vm.Count("Start PXE")).To(BeZero(), "PXE is off in this firmware")
		GinkgoWriter.Printf("the clone booted %.1fs after power on\n", time.Since(start).Seconds())
		res := d.result(1)
		Expect(res.Machines[0].MAC).To(Equal(mac))
	})
})
