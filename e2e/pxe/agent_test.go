package pxee2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/herd-cluster/herd/pxe/httpboot"
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
		someKey := fmt.Sprintf("%064x", rand.Uint64())
		vm := l.startVM("unreach", randomMAC(), "", "console=ttyS0 quiet herd.server=10.79.0.1:8080 herd.session=e2e herd.timeout=5 herd.retries=3 herd.agentkey="+someKey)
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

var _ = Describe("the agent's initramfs booted by QEMU, its server gone after it registered", func() {
	It("says so within herd.timeout and reboots to try PXE again", func() {
		l := newLAN()
		l.startDHCP()
		mac := randomMAC()
		api := l.startAPI(8080, mac)
		// A disk, so the agent (which finds its disk first) registers
		// and waits for its session.
		disk := filepath.Join(GinkgoT().TempDir(), "disk.img")
		Expect(os.WriteFile(disk, nil, 0o644)).To(Succeed())
		Expect(os.Truncate(disk, 16<<20)).To(Succeed())
		vm := l.startVM("lost", mac, disk, "console=ttyS0 quiet herd.server=10.79.0.1:8080 herd.session=e2e herd.timeout=5 herd.retries=2 herd.agentkey="+api.agentKey)
		Eventually(api.reg, 90*time.Second).Should(Receive(), "no registration; console:\n%s", vm.Console())
		expectLine(vm, "herd: registered with 10.79.0.1:8080", 10*time.Second)
		api.stop() // the server dies; no session will ever come
		start := time.Now()
		expectLine(vm, "herd: herd server 10.79.0.1:8080 does not answer while waiting for session e2e", 30*time.Second)
		expectLine(vm, "herd: no answer from herd server 10.79.0.1:8080 for 5s and no session started", 30*time.Second)
		expectLine(vm, "herd server 10.79.0.1:8080 is gone, rebooting to try PXE again", 10*time.Second)
		expectLine(vm, "reboot: Restarting system", 30*time.Second)
		GinkgoWriter.Printf("rebooted %.1fs after the server died\n", time.Since(start).Seconds())
		expectLine(vm, "SeaBIOS", 30*time.Second)
		Expect(vm.Count("clone verified")).To(BeZero())
	})
})

var _ = Describe("the agent in QEMU receiving a disk image", func() {
	It("registers, gets the image from herd send, writes and verifies the disk, reports and reboots", func() {
		dir := GinkgoT().TempDir()
		const size = 24 << 20
		golden := filepath.Join(dir, "golden.img")
		img := make([]byte, size)
		rng := rand.New(rand.NewPCG(7, uint64(os.Getpid())))
		for i := 0; i < size; i += 4096 {
			if i%(1<<20) < 3<<18 { // three quarters data, one quarter zeros
				for j := i; j < i+4096; j += 8 {
					binary.LittleEndian.PutUint64(img[j:], rng.Uint64())
				}
			}
		}
		Expect(os.WriteFile(golden, img, 0o644)).To(Succeed())
		disk := filepath.Join(dir, "disk.img")
		Expect(os.WriteFile(disk, nil, 0o644)).To(Succeed())
		Expect(os.Truncate(disk, 64<<20)).To(Succeed())
		l := newLAN()
		l.startDHCP()
		mac := randomMAC()
		api := l.startAPI(8080, mac)
		// The kernel line carries the machine's agent key only; the
		// chain key comes in the answer to its registration.
		line := "console=ttyS0 quiet herd.server=10.79.0.1:8080 herd.session=e2e herd.port=9998 herd.method=raw herd.disk=/dev/vda herd.agentkey=" + api.agentKey + " herd.timeout=10 herd.retries=5"
		Expect(line).NotTo(ContainSubstring(hex.EncodeToString(api.key)))
		vm := l.startVM("clone", mac, disk, line)

		var reg httpboot.RegisterRequest
		Eventually(api.reg, 90*time.Second).Should(Receive(&reg), "no registration; console:\n%s", vm.Console())
		Expect(reg.Session).To(Equal("e2e"))
		Expect(reg.Port).To(Equal(9998))
		Expect(net.ParseIP(reg.IP).To4()).NotTo(BeNil())
		Expect(reg.MAC).To(Equal(mac))
		expectLine(vm, "herd: registered with 10.79.0.1:8080", 10*time.Second)

		send := exec.Command("ip", "netns", "exec", l.ns, herdBin, "send", "--to", reg.IP+":9998", "--in", golden, "--out", "/dev/vda", "--key-file", api.keyFile, "--json", "--connect-timeout", "30s")
		var out, errb bytes.Buffer
		send.Stdout, send.Stderr = &out, &errb
		start := time.Now()
		Expect(send.Run()).To(Succeed(), "herd send: %s\n%s\nconsole:\n%s", out.String(), errb.String(), vm.Console())
		GinkgoWriter.Printf("herd send to the VM took %.1fs\n", time.Since(start).Seconds())
		Expect(out.String()).To(ContainSubstring(`"event":"summary","ok":true`))

		var rep httpboot.ReportRequest
		Eventually(api.rep, 60*time.Second).Should(Receive(&rep), "no report; console:\n%s", vm.Console())
		// The agent's own log travels with its report (issue #16).
		Expect(rep.AgentLog).To(ContainElement(ContainSubstring("herd: registered with 10.79.0.1:8080")), "the agent's log")
		rep.AgentLog = nil
		Expect(rep).To(Equal(httpboot.ReportRequest{MAC: reg.MAC, OK: true, Bytes: size}))
		expectLine(vm, "herd: clone verified (", 30*time.Second)
		expectLine(vm, "reboot: Restarting system", 30*time.Second)
		vm.Kill()

		got, err := os.ReadFile(disk)
		Expect(err).NotTo(HaveOccurred())
		Expect(sha256.Sum256(got[:size])).To(Equal(sha256.Sum256(img)), "the VM's disk holds the golden image")
		Expect(bytes.Count(got[size:], []byte{0})).To(Equal(len(got)-size), "nothing written past the image")
	})
})
