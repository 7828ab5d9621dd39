package pxee2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/herd-cluster/herd/pxe/initramfs"
	"github.com/herd-cluster/herd/qemu"
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
	ctx := context.Background()
	deb, err := initramfs.FetchKernelDeb(ctx, "/var/cache/herd", "")
	Expect(err).NotTo(HaveOccurred())
	kroot := GinkgoT().TempDir()
	Expect(initramfs.ExtractDeb(ctx, deb, kroot)).To(Succeed())
	res, err := initramfs.Build(initramfs.Options{KernelRoot: kroot, Modules: []string{"virtio_blk"},
		Init: []byte("#!/bin/sh\nmount -t proc proc /proc\necho \"" + marker + " $(cat /proc/cmdline)\"\nexec sleep 100000\n")})
	Expect(err).NotTo(HaveOccurred())

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
	Expect(os.WriteFile(filepath.Join(mnt, "vmlinuz"), res.Kernel, 0o644)).To(Succeed())
	Expect(os.WriteFile(filepath.Join(mnt, "initrd.img"), res.Initrd, 0o644)).To(Succeed())
	Expect(os.WriteFile(filepath.Join(mnt, "extlinux.conf"), []byte(
		"DEFAULT golden\nPROMPT 0\nTIMEOUT 1\nLABEL golden\n  KERNEL /vmlinuz\n  INITRD /initrd.img\n  APPEND console=ttyS0 quiet herd.golden=1\n"), 0o644)).To(Succeed())
	run("extlinux", "--install", mnt)
	run("sync")
	unmount()
	detach()
}

var _ = Describe("herd deploy with PXE-booted QEMU machines", func() {
	It("clones a bootable golden disk to three machines that then boot it from their own disks", func() {
		if _, err := os.Stat("/usr/lib/ipxe/qemu/efi-virtio.rom"); err != nil {
			Skip("QEMU's iPXE ROM is missing (Debian ipxe-qemu)")
		}
		dir := GinkgoT().TempDir()
		marker := fmt.Sprintf("HERD-GOLDEN-MARKER-%d", rand.IntN(1e9))
		golden := filepath.Join(dir, "golden.img")
		bootableGolden(golden, 64, marker)

		bootDir := filepath.Join(dir, "boot")
		Expect(os.MkdirAll(bootDir, 0o755)).To(Succeed())
		for src, dst := range map[string]string{kernel: "vmlinuz", initrd: "initrd.img"} {
			b, err := os.ReadFile(src)
			Expect(err).NotTo(HaveOccurred())
			Expect(os.WriteFile(filepath.Join(bootDir, dst), b, 0o644)).To(Succeed())
		}

		l := newLAN()
		deploy := exec.Command("ip", "netns", "exec", l.ns, herdBin, "deploy",
			"-i", l.bridge, "--server-ip", l.ip, "--range", "10.79.0.100-10.79.0.150", "--netmask", "255.255.255.0",
			"--tftp-port", "0", "--boot-dir", bootDir, "--state", filepath.Join(dir, "machines.json"),
			"--nodes", "3", "--settle", "5s", "--image", golden, "--disk", "/dev/vda", "--session", "e2e",
			"--agent-timeout", "10", "--agent-retries", "10", "--connect-timeout", "60s",
			"--wait", "4m", "--linger", "30s", "--json")
		var dout, derr syncBuffer
		deploy.Stdout, deploy.Stderr = &dout, &derr
		// Its own process group, so cleanup also ends the herd send it runs.
		deploy.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		Expect(deploy.Start()).To(Succeed())
		var deployErr error
		deployDone := make(chan struct{})
		go func() { deployErr = deploy.Wait(); close(deployDone) }()
		DeferCleanup(func() {
			syscall.Kill(-deploy.Process.Pid, syscall.SIGKILL)
			<-deployDone
			if CurrentSpecReport().Failed() {
				GinkgoWriter.Printf("herd deploy stdout:\n%s\nstderr:\n%s\n", dout.String(), derr.String())
			}
		})

		var vms []*qemu.VM
		for i := range 3 {
			disk := filepath.Join(dir, fmt.Sprintf("node%d.img", i))
			Expect(os.WriteFile(disk, nil, 0o644)).To(Succeed())
			Expect(os.Truncate(disk, 80<<20)).To(Succeed())
			vm, err := qemu.Start(context.Background(), qemu.Config{
				Name: fmt.Sprintf("pxe%d-%d-%d", i, os.Getpid(), rand.IntN(1e6)), Netns: l.ns, Tap: l.addTap(),
				Disk: disk, NetBoot: true, SocketDir: GinkgoT().TempDir(),
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
		start := time.Now()
		for _, vm := range vms {
			expectLine(vm, "herd: agent starting", 3*time.Minute)
		}
		GinkgoWriter.Printf("all agents started %.1fs after power on\n", time.Since(start).Seconds())
		for _, vm := range vms {
			expectLine(vm, "herd: clone verified (", 4*time.Minute)
			expectLine(vm, "reboot: Restarting system", time.Minute)
		}
		GinkgoWriter.Printf("all clones verified %.1fs after power on\n", time.Since(start).Seconds())
		for _, vm := range vms {
			// Back in the firmware: iPXE asks again, the server sends the
			// machine to its disk, extlinux boots the golden system.
			expectLine(vm, marker+" ", 3*time.Minute)
			expectLine(vm, "herd.golden=1", 10*time.Second) // the rest of the marker line: the disk's kernel line
			Expect(vm.Count("herd: agent starting")).To(Equal(1), "the agent ran once per machine")
			Expect(vm.Count("boot.ipxe... ok")).To(Equal(2), "the second boot asked the server too, which sent it to its disk")
		}
		GinkgoWriter.Printf("all machines booted the golden disk %.1fs after power on\n", time.Since(start).Seconds())

		Eventually(deployDone, 3*time.Minute).Should(BeClosed(), func() string { return "herd deploy did not end: " + derr.String() })
		Expect(deployErr).NotTo(HaveOccurred(), "herd deploy failed: %s\n%s", dout.String(), derr.String())
		var result struct {
			Event    string `json:"event"`
			OK       bool   `json:"ok"`
			Machines []struct {
				MAC   string `json:"mac"`
				OK    bool   `json:"ok"`
				State string `json:"state"`
			} `json:"machines"`
		}
		lines := strings.Split(strings.TrimSpace(dout.String()), "\n")
		Expect(json.Unmarshal([]byte(lines[len(lines)-1]), &result)).To(Succeed(), "deploy JSON: %s", dout.String())
		Expect(result.Event).To(Equal("deploy"))
		Expect(result.OK).To(BeTrue(), "deploy: %s", dout.String())
		Expect(result.Machines).To(HaveLen(3))
		for _, m := range result.Machines {
			Expect(m.OK).To(BeTrue(), "%+v", m)
			Expect(m.State).To(Equal("local"), "%+v", m)
		}
	})
})

// syncBuffer is a bytes.Buffer safe to read while a process writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
