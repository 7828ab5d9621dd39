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
	bb, err := exec.LookPath("busybox")
	Expect(err).NotTo(HaveOccurred())
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
	run("sync")
	unmount()
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

var _ = Describe("herd deploy with an inventory, identity and hooks", func() {
	It("gives each raw clone of a golden its inventory name as host name, an empty machine-id and none of the golden's SSH host keys, and runs a hook in each clone with its name, MAC and IP", func() {
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

		// Identity is on by default: the inventory names the machines.
		d := startDeploy(l, dir, 2, "--inventory", inv, "--image", golden, "--used-only", "--hook", hook)
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
			host, ok := debugfsCat(dev, "/etc/hostname")
			Expect(ok).To(BeTrue())
			Expect(host).To(Equal(names[i]+"\n"), "the host name is the inventory's")
			hosts, _ := debugfsCat(dev, "/etc/hosts")
			Expect(hosts).To(Equal("127.0.0.1\tlocalhost\n127.0.1.1\t" + names[i] + "\n"))
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
			Expect(stamp).To(Equal(fmt.Sprintf("%s %s %s\n", names[i], mac, ips[mac])))

			// The server kept each agent's log: herd pxe logs prints it.
			out, err := exec.Command(herdBin, "pxe", "logs", mac, "--state", filepath.Join(dir, "machines.json")).CombinedOutput()
			Expect(err).NotTo(HaveOccurred(), "%s", out)
			Expect(string(out)).To(ContainSubstring("fix-ups: identity: hostname " + names[i]))
			Expect(string(out)).To(ContainSubstring("agent log, the last"))
			Expect(string(out)).To(ContainSubstring("herd: hook stamp.sh: stamped " + names[i]))
		}
	})
})
