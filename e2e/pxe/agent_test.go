package pxee2e

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// expect waits for s on vm's console after the previous match.
func expectLine(vm interface {
	ExpectString(string, time.Duration) (string, error)
	Console() string
}, s string, timeout time.Duration) {
	GinkgoHelper()
	_, err := vm.ExpectString(s, timeout)
	Expect(err).NotTo(HaveOccurred(), "console so far:\n%s", vm.Console())
}

var _ = Describe("the agent's initramfs booted by QEMU", func() {
	It("retries an unreachable server a bounded number of times, then reboots to try again", func() {
		l := newLAN()
		l.startDHCP()
		// Nothing listens on 10.79.0.1:8080: every register attempt fails.
		vm := l.startVM("unreach", "", "console=ttyS0 quiet herd.server=10.79.0.1:8080 herd.session=e2e herd.timeout=5 herd.retries=3")
		start := time.Now()
		expectLine(vm, "herd: initramfs up", 60*time.Second)
		GinkgoWriter.Printf("initramfs up %.1fs after power on\n", time.Since(start).Seconds())
		expectLine(vm, "herd: agent starting: server 10.79.0.1:8080 session e2e", 30*time.Second)
		expectLine(vm, "herd: network up: eth0 ", 60*time.Second)
		for _, n := range []string{"1/3", "2/3", "3/3"} {
			expectLine(vm, "cannot reach herd server 10.79.0.1:8080 (attempt "+n+")", 30*time.Second)
		}
		expectLine(vm, "giving up on herd server 10.79.0.1:8080 after 3 attempts, rebooting", 10*time.Second)
		expectLine(vm, "reboot: Restarting system", 30*time.Second)
		// The machine really restarts: firmware, kernel and agent again.
		expectLine(vm, "SeaBIOS", 30*time.Second)
		expectLine(vm, "herd: initramfs up", 60*time.Second)
		expectLine(vm, "cannot reach herd server 10.79.0.1:8080 (attempt 1/3)", 60*time.Second)
		Expect(vm.Count("(attempt 4/3)")).To(BeZero())
	})
})
