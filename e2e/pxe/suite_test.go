package pxee2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/vishvananda/netns"

	"github.com/herd-cluster/herd/pxe/httpboot"
	"github.com/herd-cluster/herd/qemu"
)

func TestPXEE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "herd boot side end-to-end")
}

// Built once for the suite: a static herd and the agent's boot files.
var (
	herdBin string
	kernel  string
	initrd  string
)

var _ = BeforeSuite(func() {
	if testing.Short() {
		Skip("the boot suite boots QEMU machines (about 2 minutes): skipped with -short")
	}
	if os.Geteuid() != 0 {
		Skip("the boot suite needs root (network namespaces, taps)")
	}
	for _, tool := range []string{"ip", qemu.Binary, "busybox", "dpkg"} {
		if _, err := exec.LookPath(tool); err != nil {
			Skip(fmt.Sprintf("the boot suite needs %s (Debian iproute2, qemu-system-x86, busybox-static, dpkg)", tool))
		}
	}
	dir, err := os.MkdirTemp("", "herd-e2e-pxe-")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, dir)
	herdBin = filepath.Join(dir, "herd")
	build := exec.Command("go", "build", "-o", herdBin, "github.com/herd-cluster/herd/cmd/herd")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "go build herd: %s", out)

	boot := filepath.Join(dir, "boot")
	start := time.Now()
	out, err = exec.Command(herdBin, "initramfs", "build", "--out", boot, "--herd", herdBin, "--cache", "/var/cache/herd").CombinedOutput()
	if err != nil && (strings.Contains(string(out), "apt-get download") || strings.Contains(string(out), "apt-cache depends")) {
		Skip("no kernel package in /var/cache/herd and apt cannot download one: " + string(out))
	}
	Expect(err).NotTo(HaveOccurred(), "herd initramfs build: %s", out)
	GinkgoWriter.Printf("herd initramfs build (%.1fs):\n%s", time.Since(start).Seconds(), out)
	kernel, initrd = filepath.Join(boot, "vmlinuz"), filepath.Join(boot, "initrd.img")
})

// lan is a network namespace with a bridge holding the host side's
// address; VMs get taps on the bridge.
type lan struct {
	ns, bridge, ip string
	taps           int
}

// newLAN makes a namespace with bridge br0 at 10.79.0.1/24, removed when
// the spec ends.
func newLAN() *lan {
	l := &lan{ns: fmt.Sprintf("herd-e2epxe-%d-%d", os.Getpid(), rand.IntN(1e6)), bridge: "br0", ip: "10.79.0.1"}
	run("ip", "netns", "add", l.ns)
	DeferCleanup(func() { exec.Command("ip", "netns", "del", l.ns).Run() })
	run("ip", "-n", l.ns, "link", "set", "lo", "up")
	run("ip", "-n", l.ns, "link", "add", l.bridge, "type", "bridge")
	run("ip", "-n", l.ns, "addr", "add", l.ip+"/24", "brd", "+", "dev", l.bridge)
	run("ip", "-n", l.ns, "link", "set", l.bridge, "up")
	return l
}

// addTap adds a tap on the bridge and returns its name.
func (l *lan) addTap() string {
	l.taps++
	tap := fmt.Sprintf("tap%d", l.taps)
	run("ip", "-n", l.ns, "tuntap", "add", tap, "mode", "tap")
	run("ip", "-n", l.ns, "link", "set", tap, "master", l.bridge)
	run("ip", "-n", l.ns, "link", "set", tap, "up")
	return tap
}

// startDHCP runs busybox udhcpd on the bridge, handing out
// 10.79.0.100-120, until the spec ends.
func (l *lan) startDHCP() {
	dir := GinkgoT().TempDir()
	conf := filepath.Join(dir, "udhcpd.conf")
	Expect(os.WriteFile(filepath.Join(dir, "leases"), nil, 0o644)).To(Succeed())
	Expect(os.WriteFile(conf, []byte(fmt.Sprintf(`start 10.79.0.100
end 10.79.0.120
interface %s
option subnet 255.255.255.0
option lease 600
lease_file %s/leases
pidfile %s/udhcpd.pid
`, l.bridge, dir, dir)), 0o644)).To(Succeed())
	cmd := exec.Command("ip", "netns", "exec", l.ns, "busybox", "udhcpd", "-f", conf)
	cmd.Stdout, cmd.Stderr = GinkgoWriter, GinkgoWriter
	Expect(cmd.Start()).To(Succeed())
	DeferCleanup(func() { cmd.Process.Kill(); cmd.Wait() })
}

// startVM boots kernel and initrd with args on a new tap of l.
func (l *lan) startVM(name, disk, args string) *qemu.VM {
	vm, err := qemu.Start(context.Background(), qemu.Config{
		Name: fmt.Sprintf("%s-%d-%d", name, os.Getpid(), rand.IntN(1e6)), Netns: l.ns, Tap: l.addTap(),
		Disk: disk, Kernel: kernel, Initrd: initrd, Append: args, SocketDir: GinkgoT().TempDir(),
	})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() {
		vm.Kill()
		if CurrentSpecReport().Failed() {
			GinkgoWriter.Printf("console of %s:\n%s\n", vm.Name(), vm.Console())
		}
	})
	return vm
}

func run(name string, args ...string) {
	GinkgoHelper()
	out, err := exec.Command(name, args...).CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "%s %s: %s", name, strings.Join(args, " "), out)
}

// listenIn opens a TCP listener inside the named namespace (the socket
// stays there after this thread goes back to the test's namespace).
func listenIn(ns, addr string) net.Listener {
	GinkgoHelper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	Expect(err).NotTo(HaveOccurred())
	defer orig.Close()
	h, err := netns.GetFromName(ns)
	Expect(err).NotTo(HaveOccurred())
	defer h.Close()
	Expect(netns.Set(h)).To(Succeed())
	l, lerr := net.Listen("tcp", addr)
	Expect(netns.Set(orig)).To(Succeed())
	Expect(lerr).NotTo(HaveOccurred())
	DeferCleanup(func() { l.Close() })
	return l
}

// apiServer is a stand-in for herd's agent API (register, report and
// the agent's check that it is still known), recording what agents send.
type apiServer struct {
	mu        sync.Mutex
	registers []httpboot.RegisterRequest
	reports   []httpboot.ReportRequest
	reg       chan httpboot.RegisterRequest
	rep       chan httpboot.ReportRequest
	srv       *http.Server
}

// stop ends the stand-in server: a herd server that died.
func (a *apiServer) stop() { a.srv.Close() }

func (l *lan) startAPI(port int) *apiServer {
	a := &apiServer{reg: make(chan httpboot.RegisterRequest, 16), rep: make(chan httpboot.ReportRequest, 16)}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+httpboot.PathRegister, func(w http.ResponseWriter, r *http.Request) {
		var req httpboot.RegisterRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		a.mu.Lock()
		a.registers = append(a.registers, req)
		a.mu.Unlock()
		a.reg <- req
		json.NewEncoder(w).Encode(httpboot.Reply{OK: true})
	})
	mux.HandleFunc("POST "+httpboot.PathReport, func(w http.ResponseWriter, r *http.Request) {
		var req httpboot.ReportRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		a.mu.Lock()
		a.reports = append(a.reports, req)
		a.mu.Unlock()
		a.rep <- req
		json.NewEncoder(w).Encode(httpboot.Reply{OK: true})
	})
	// The agent checks while it waits that the server still knows it.
	mux.HandleFunc("GET "+httpboot.PathMachines+"/{mac}", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"mac": r.PathValue("mac"), "state": "cloning"})
	})
	a.srv = &http.Server{Handler: mux}
	go a.srv.Serve(listenIn(l.ns, fmt.Sprintf("%s:%d", l.ip, port)))
	DeferCleanup(a.srv.Close)
	return a
}
