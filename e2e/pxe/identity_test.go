package pxee2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/herd-cluster/herd/desc"
	"github.com/herd-cluster/herd/pxe/initramfs"
)

// goldenMachineID is the machine-id every raw clone of identityGolden
// starts with.
const goldenMachineID = "0123456789abcdef0123456789abcdef"

// partLoop attaches a loop device (read-only with ro) to the first
// partition of a bootableGolden image (1 MiB in, sizeMiB-1 long) until
// the spec ends, and returns it.
func partLoop(image string, sizeMiB int, ro bool) string {
	GinkgoHelper()
	args := []string{"--find", "--show", "--offset", fmt.Sprint(1 << 20), "--sizelimit", fmt.Sprint((sizeMiB - 1) << 20)}
	if ro {
		args = append(args, "--read-only")
	}
	out, err := exec.Command("losetup", append(args, image)...).Output()
	Expect(err).NotTo(HaveOccurred())
	loop := strings.TrimSpace(string(out))
	DeferCleanup(func() { exec.Command("losetup", "-d", loop).Run() })
	return loop
}

// identityGolden is bootableGolden with what makes a system's identity,
// as a real golden has it: /etc/hostname "golden", a fixed machine-id,
// SSH host keys, /etc/hosts with its 127.0.1.1 line, /etc/os-release;
// and a static busybox as /bin/sh for the hooks. It has no ssh-keygen,
// so the agents can only remove the host keys.
func identityGolden(path string, sizeMiB int, marker string) {
	GinkgoHelper()
	bootableGolden(path, sizeMiB, marker)
	loop := partLoop(path, sizeMiB, false)
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
	identityFiles(mnt)
	run("sync")
	unmount()
}

// identityFiles writes under mnt what makes a golden system's identity
// (see identityGolden) and a static busybox as /bin/sh.
func identityFiles(mnt string) {
	GinkgoHelper()
	bb, err := exec.LookPath("busybox")
	Expect(err).NotTo(HaveOccurred())
	for _, d := range []string{"etc/ssh", "bin", "var/lib/dbus"} {
		Expect(os.MkdirAll(filepath.Join(mnt, d), 0o755)).To(Succeed())
	}
	files := map[string]string{
		"etc/hostname":                     "golden\n",
		"etc/machine-id":                   goldenMachineID + "\n",
		"var/lib/dbus/machine-id":          goldenMachineID + "\n",
		"etc/hosts":                        "127.0.0.1\tlocalhost\n127.0.1.1\tgolden\n",
		"etc/os-release":                   "PRETTY_NAME=\"herd e2e golden\"\nID=herd-golden\n",
		"etc/ssh/ssh_host_ed25519_key":     "-----BEGIN OPENSSH PRIVATE KEY-----\nthe golden's own\n-----END OPENSSH PRIVATE KEY-----\n",
		"etc/ssh/ssh_host_ed25519_key.pub": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGoldenGoldenGoldenGoldenGoldenGoldenGolden root@golden\n",
		"etc/ssh/sshd_config":              "# not a host key: stays\n",
	}
	for name, text := range files {
		Expect(os.WriteFile(filepath.Join(mnt, name), []byte(text), 0o644)).To(Succeed())
	}
	b, err := os.ReadFile(bb)
	Expect(err).NotTo(HaveOccurred())
	Expect(os.WriteFile(filepath.Join(mnt, "bin/busybox"), b, 0o755)).To(Succeed())
	Expect(os.Symlink("busybox", filepath.Join(mnt, "bin/sh"))).To(Succeed())
}

// diskPartLoop attaches a read-only loop device to the first partition
// of the disk image, as its partition table says, until the spec ends.
func diskPartLoop(image string) string {
	GinkgoHelper()
	f, err := os.Open(image)
	Expect(err).NotTo(HaveOccurred())
	defer f.Close()
	fi, err := f.Stat()
	Expect(err).NotTo(HaveOccurred())
	p, err := desc.ReadTable(f, fi.Size())
	Expect(err).NotTo(HaveOccurred())
	Expect(p.Parts).NotTo(BeEmpty())
	pp := p.Parts[0]
	out, err := exec.Command("losetup", "--find", "--show", "--read-only", "--offset", fmt.Sprint(pp.Offset(p.SectorSize)), "--sizelimit", fmt.Sprint(pp.Bytes(p.SectorSize)), image).Output()
	Expect(err).NotTo(HaveOccurred())
	loop := strings.TrimSpace(string(out))
	DeferCleanup(func() { exec.Command("losetup", "-d", loop).Run() })
	return loop
}

// debugfsCat returns the contents of file in the ext2 file system on
// dev, read by debugfs (no mount), and whether it exists.
func debugfsCat(dev, file string) (string, bool) {
	GinkgoHelper()
	cmd := exec.Command("debugfs", "-R", "cat "+file, dev)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	Expect(err).NotTo(HaveOccurred(), "debugfs: %s", stderr.String())
	if strings.Contains(stderr.String(), "File not found") {
		return "", false
	}
	return string(out), true
}

// expectFixedClone checks the clone's root file system on dev (read
// by debugfs, unmounted): the identity of machine name, none of the
// golden's, and the stamp of the hook.
func expectFixedClone(dev, name, mac, ip string) {
	GinkgoHelper()
	host, ok := debugfsCat(dev, "/etc/hostname")
	Expect(ok).To(BeTrue())
	Expect(host).To(Equal(name+"\n"), "the host name is the inventory's")
	hosts, _ := debugfsCat(dev, "/etc/hosts")
	Expect(hosts).To(Equal("127.0.0.1\tlocalhost\n127.0.1.1\t" + name + "\n"))
	id, ok := debugfsCat(dev, "/etc/machine-id")
	Expect(ok).To(BeTrue(), "the machine-id file stays, for systemd to fill")
	Expect(id).To(BeEmpty())
	_, ok = debugfsCat(dev, "/var/lib/dbus/machine-id")
	Expect(ok).To(BeFalse(), "dbus's copy of the golden's machine-id is gone")
	for _, k := range []string{"ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"} {
		_, ok = debugfsCat(dev, "/etc/ssh/"+k)
		Expect(ok).To(BeFalse(), "the golden's %s is gone (no ssh-keygen in the clone: made at first boot)", k)
	}
	cfg, ok := debugfsCat(dev, "/etc/ssh/sshd_config")
	Expect(ok).To(BeTrue())
	Expect(cfg).To(Equal("# not a host key: stays\n"))
	stamp, ok := debugfsCat(dev, "/etc/herd-hook")
	Expect(ok).To(BeTrue(), "the hook ran in the clone")
	Expect(stamp).To(Equal(fmt.Sprintf("%s %s %s\n", name, mac, ip)))
}

var _ = Describe("herd deploy with an inventory, identity and hooks", func() {
	It("driven only by an inventory and a config file, gives each raw clone of a golden its inventory name as host name, an empty machine-id and none of the golden's SSH host keys, and runs a hook in each clone with its name, MAC and IP", func() {
		needIPXEROM()
		if _, err := exec.LookPath("debugfs"); err != nil {
			Skip("reading the clones needs debugfs (Debian e2fsprogs)")
		}
		dir := GinkgoT().TempDir()
		marker := fmt.Sprintf("HERD-GOLDEN-MARKER-%d", rand.IntN(1e9))
		golden := filepath.Join(dir, "golden.img")
		const goldenMiB = 64
		identityGolden(golden, goldenMiB, marker)

		l := newLAN()
		macs := []string{randomMAC(), randomMAC()}
		names := []string{"rack1-node07", "rack2-node11"}
		inv := filepath.Join(dir, "inventory.yaml")
		Expect(os.WriteFile(inv, []byte(fmt.Sprintf("machines:\n  - name: %s\n    mac: %s\n  - name: %s\n    mac: %s\n", names[0], macs[0], names[1], macs[1])), 0o644)).To(Succeed())
		hook := filepath.Join(dir, "stamp.sh")
		Expect(os.WriteFile(hook, []byte("echo \"$HERD_NAME $HERD_MAC $HERD_IP\" > /etc/herd-hook\necho stamped $HERD_NAME\n"), 0o644)).To(Succeed())

		// Driven by the inventory and a site config file alone (issue
		// #16): no flag on the command line. Identity is on by default:
		// the inventory names the machines; each finds its disk itself.
		cfg := filepath.Join(dir, "herd.yaml")
		Expect(os.WriteFile(cfg, []byte(fmt.Sprintf(`# the lab's provisioning network
iface: %s
server-ip: %s
range: 10.79.0.100-10.79.0.150
netmask: 255.255.255.0
tftp-port: 0
boot-dir: %s
state: %s
session: e2e
agent-timeout: 10s
agent-retries: 10
inventory: %s
deploy:
  image: %s
  used-only: true
  hook: [%s]
  settle: 5s
  connect-timeout: 60s
  wait: 4m
  linger: 30s
  json: true
`, l.bridge, l.ip, bootFolder(dir), filepath.Join(dir, "machines.json"), inv, golden, hook)), 0o644)).To(Succeed())
		d := runHerdDeploy(l, "--config", cfg, "deploy")
		vms := netbootVMs(l, dir, macs)
		start := time.Now()
		for i, vm := range vms {
			expectLine(vm, "herd: clone verified (", 6*time.Minute)
			// The fix-ups ran before the report (the console keeps
			// them before "clone verified").
			con := vm.Console()
			Expect(con).To(ContainSubstring("herd: identity: hostname "+names[i]), "console:\n%s", con)
			Expect(con).To(ContainSubstring("herd: hook stamp.sh: stamped " + names[i]))
			expectLine(vm, "reboot: Restarting system", time.Minute)
		}
		GinkgoWriter.Printf("both clones verified and fixed %.1fs after power on\n", time.Since(start).Seconds())
		for _, vm := range vms {
			// The fixed clone still boots.
			expectLine(vm, marker+" ", 3*time.Minute)
		}
		res := d.result(2)
		ips := map[string]string{}
		for _, m := range res.Machines {
			ips[m.MAC] = m.IP
		}
		stderr := d.errb.String()
		Expect(stderr).To(ContainSubstring("each agent fixes its clone's identity"))
		for i, mac := range macs {
			Expect(stderr).To(ContainSubstring(fmt.Sprintf("deploy: %s %s: identity: hostname %s", mac, names[i], names[i])), "the deploy log says what was done per machine")
			Expect(ips[mac]).NotTo(BeEmpty())
		}
		for _, vm := range vms {
			vm.Kill()
		}

		// Read each clone's disk back without mounting it.
		for i, mac := range macs {
			dev := partLoop(filepath.Join(dir, fmt.Sprintf("node%d.img", i)), goldenMiB, true)
			expectFixedClone(dev, names[i], mac, ips[mac])

			// The server kept each agent's log: herd pxe logs prints it.
			out, err := exec.Command(herdBin, "pxe", "logs", mac, "--state", filepath.Join(dir, "machines.json")).CombinedOutput()
			Expect(err).NotTo(HaveOccurred(), "%s", out)
			Expect(string(out)).To(ContainSubstring("fix-ups: identity: hostname " + names[i]))
			Expect(string(out)).To(ContainSubstring("agent log, the last"))
			Expect(string(out)).To(ContainSubstring("herd: hook stamp.sh: stamped " + names[i]))
		}
	})

	It("fixes the identity of file-level clones too, on the root file system their desc made, and runs the hook there", func() {
		needIPXEROM()
		for _, tool := range []string{"mkfs.ext4", "losetup", "extlinux", "debugfs"} {
			if _, err := exec.LookPath(tool); err != nil {
				Skip("the file-level stage 2 carries this machine's " + tool + "; the clones are read with debugfs (Debian e2fsprogs, mount, extlinux)")
			}
		}
		mbr, err := os.ReadFile("/usr/lib/EXTLINUX/mbr.bin")
		if err != nil {
			Skip("extlinux's mbr.bin is missing (Debian extlinux)")
		}
		dir := GinkgoT().TempDir()
		marker := fmt.Sprintf("HERD-GOLDEN-MARKER-%d", rand.IntN(1e9))
		golden := filepath.Join(dir, "golden")
		Expect(os.MkdirAll(golden, 0o755)).To(Succeed())
		goldenTree(golden, marker)
		identityFiles(golden)
		descFile := filepath.Join(dir, "golden.desc")
		Expect(os.WriteFile(descFile, []byte("linux fill fs=ext4 mount=/ label=golden boot\n"), 0o644)).To(Succeed())
		s2, err := initramfs.BuildStage2(initramfs.Stage2Options{
			Tools: []string{"mkfs.ext4", "losetup", "extlinux"},
			Files: map[string][]byte{"usr/lib/EXTLINUX/mbr.bin": mbr},
			Init:  []byte("#!/bin/sh\nexport PATH=/bin\nexec /bin/herd agent\n")})
		Expect(err).NotTo(HaveOccurred())
		stage2 := filepath.Join(dir, "stage2.cpio.gz")
		Expect(os.WriteFile(stage2, s2, 0o644)).To(Succeed())

		l := newLAN()
		macs := []string{randomMAC(), randomMAC()}
		names := []string{"files-a", "files-b"}
		inv := filepath.Join(dir, "inventory.yaml")
		Expect(os.WriteFile(inv, []byte(fmt.Sprintf("machines:\n  - name: %s\n    mac: %s\n  - name: %s\n    mac: %s\n", names[0], macs[0], names[1], macs[1])), 0o644)).To(Succeed())
		hook := filepath.Join(dir, "stamp.sh")
		Expect(os.WriteFile(hook, []byte("echo \"$HERD_NAME $HERD_MAC $HERD_IP\" > /etc/herd-hook\n"), 0o644)).To(Succeed())

		d := startDeploy(l, dir, 2, "--inventory", inv, "--identity", "yes", "--hook", hook,
			"--stage2", stage2, "--method", "files", "--desc", descFile, "--from", golden)
		vms := netbootVMs(l, dir, macs)
		start := time.Now()
		for i, vm := range vms {
			expectLine(vm, "herd: running in the stage 2", 6*time.Minute)
			expectLine(vm, "herd: clone verified (", 4*time.Minute)
			con := vm.Console()
			// The root by the desc: the UUID herd recv made, not a probe.
			Expect(con).To(MatchRegexp(`herd: the desc's root file system [0-9a-f-]+ is vda1`), "console:\n%s", con)
			Expect(con).To(ContainSubstring("herd: identity: hostname " + names[i]))
			expectLine(vm, "reboot: Restarting system", time.Minute)
		}
		for _, vm := range vms {
			expectLine(vm, marker+" ", 3*time.Minute)
		}
		GinkgoWriter.Printf("both file-level clones fixed and booted %.1fs after power on\n", time.Since(start).Seconds())
		res := d.result(2)
		ips := map[string]string{}
		for _, m := range res.Machines {
			ips[m.MAC] = m.IP
		}
		for _, vm := range vms {
			vm.Kill()
		}
		for i, mac := range macs {
			expectFixedClone(diskPartLoop(filepath.Join(dir, fmt.Sprintf("node%d.img", i))), names[i], mac, ips[mac])
		}
	})
})
