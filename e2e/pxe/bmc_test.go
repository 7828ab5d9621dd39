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

var _ = Describe("herd deploy --bmc", func() {
	It("powers on a machine that is off through its BMC (ipmi_sim over IPMI-over-LAN) to PXE boot it, clones it, then sets it to boot its disk and power cycles it into its clone", func() {
		needIPXEROM()
		for _, bin := range []string{qemu.IPMISim, qemu.IPMITool} {
			if _, err := exec.LookPath(bin); err != nil {
				Skip(bin + " is missing (Debian openipmi, ipmitool)")
			}
		}
		dir := GinkgoT().TempDir()
		marker := fmt.Sprintf("HERD-GOLDEN-MARKER-%d", rand.IntN(1e9))
		golden := filepath.Join(dir, "golden.img")
		bootableGolden(golden, 64, marker)
		l := newLAN()

		// The machine: off, set to boot its (empty) disk; only its BMC,
		// in the lab's namespace, can power it on.
		mac := randomMAC()
		disk := filepath.Join(dir, "node01.img")
		Expect(os.WriteFile(disk, nil, 0o644)).To(Succeed())
		Expect(os.Truncate(disk, 80<<20)).To(Succeed())
		addr, err := qemu.FreeBMCAddr()
		Expect(err).NotTo(HaveOccurred())
		vm, err := qemu.StartBMC(context.Background(),
			qemu.Config{Name: fmt.Sprintf("bmc-%d-%d", os.Getpid(), rand.IntN(1e6)), Netns: l.ns, Tap: l.addTap(), MAC: mac, Disk: disk, SocketDir: dir},
			qemu.BMCConfig{Addr: addr, User: "herd", Password: "n0t-default", Dir: filepath.Join(dir, "bmc")})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() {
			vm.Kill()
			if CurrentSpecReport().Failed() {
				GinkgoWriter.Printf("console of %s:\n%s\n", vm.Name(), vm.Console())
			}
		})
		Expect(vm.Running()).To(BeFalse())

		// The inventory names it and its BMC.
		Expect(os.WriteFile(filepath.Join(dir, "bmc.cred"), []byte("user=herd\npassword=n0t-default\n"), 0o600)).To(Succeed())
		inv := filepath.Join(dir, "inventory.yaml")
		Expect(os.WriteFile(inv, []byte(fmt.Sprintf(`credentials: bmc.cred
machines:
  - name: node01
    mac: %s
    # ipmi_sim cannot list its cipher suites
    bmc: ipmi://%s?cipher=3
`, mac, addr)), 0o644)).To(Succeed())

		d := startDeploy(l, dir, 1, "--inventory", inv, "--bmc", "--image", golden, "--used-only")
		// herd set PXE once and powered it on: the BMC starts it from the network.
		expectLine(vm, "herd-bmc: power on 1, boot from network", time.Minute)
		expectLine(vm, "herd: agent starting", 3*time.Minute)
		expectLine(vm, "herd: clone verified (", 4*time.Minute)
		// Verified: herd set disk boot and power cycled it; the BMC
		// starts it from its disk, which boots the clone without asking
		// the network.
		expectLine(vm, "herd-bmc: power on 2, boot from disk", 2*time.Minute)
		second, err := vm.ExpectString(marker+" ", 3*time.Minute)
		Expect(err).NotTo(HaveOccurred(), "console so far:\n%s", vm.Console())
		Expect(second).NotTo(ContainSubstring("boot.ipxe"), "the second power-on booted the disk directly")
		expectLine(vm, "herd.golden=1", 10*time.Second)
		Expect(vm.Count("herd: agent starting")).To(Equal(1))
		Expect(vm.Starts()).To(Equal(2))

		res := d.result(1)
		Expect(res.Machines[0].Name).To(Equal("node01"))
		Expect(res.Machines[0].MAC).To(Equal(mac))
		Expect(res.Machines[0].Reason).To(BeEmpty(), "the reboot through the BMC worked")

		// The BMC holds the disk override; herd power reads the machine as on.
		out, err := vm.IPMITool(context.Background(), "chassis", "bootparam", "get", "5")
		Expect(err).NotTo(HaveOccurred())
		Expect(out).To(ContainSubstring("Force Boot from default Hard-Drive"))
		status, err := exec.Command("ip", "netns", "exec", l.ns, herdBin, "power", "status", "node01", "--inventory", inv).CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "%s", status)
		Expect(strings.Fields(string(status))).To(Equal([]string{"node01", "on"}))
	})
})
