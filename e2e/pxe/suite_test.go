package pxee2e

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/vishvananda/netns"

	"github.com/herd-cluster/herd/harness"
	"github.com/herd-cluster/herd/internal/testenv"
	"github.com/herd-cluster/herd/live"
	"github.com/herd-cluster/herd/pxe"
	"github.com/herd-cluster/herd/pxe/httpboot"
	"github.com/herd-cluster/herd/pxe/state"
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
	if err := harness.Available(); err != nil {
		Skip(fmt.Sprintf("the boot suite needs the harness: %v", err))
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
	buildArgs := []string{"initramfs", "build", "--out", boot, "--herd", herdBin, "--cache", "/var/cache/herd"}
	if secureBootAvailable() == nil {
		buildArgs = append(buildArgs, "--secure-boot")
	}
	out, err = exec.Command(herdBin, buildArgs...).CombinedOutput()
	if err != nil && (strings.Contains(string(out), "apt-get download") || strings.Contains(string(out), "apt-cache depends")) {
		Skip("no kernel package in /var/cache/herd and apt cannot download one: " + string(out))
	}
	Expect(err).NotTo(HaveOccurred(), "herd initramfs build: %s", out)
	GinkgoWriter.Printf("herd initramfs build (%.1fs):\n%s", time.Since(start).Seconds(), out)
	kernel, initrd = filepath.Join(boot, "vmlinuz"), filepath.Join(boot, "initrd.img")
	suiteBoot = boot
})

// suiteBoot is where herd initramfs build wrote the boot files (with
// --secure-boot, also shimx64.efi and grubx64.efi).
var suiteBoot string

// secureBootAvailable says why this machine cannot run the UEFI and
// Secure Boot specs, or nil when it can.
func secureBootAvailable() error {
	for _, f := range append(qemu.FirmwareFiles("secureboot"), qemu.FirmwareFiles("uefi")...) {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("%s is missing (Debian ovmf)", f)
		}
	}
	for f, pkg := range map[string]string{pxe.DebianBootFiles[pxe.ShimFile]: "shim-signed",
		pxe.DebianBootFiles[pxe.GrubFile]:                    "grub-efi-amd64-signed",
		"/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed": "grub-efi-amd64-signed"} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("%s is missing (Debian %s)", f, pkg)
		}
	}
	return nil
}

// lan is a network namespace with a bridge holding the host side's
// address; VMs get taps on the bridge. It is a harness cluster's golden
// namespace (pinned at /run/netns/<ns>, so `ip netns exec <ns>` works), so
// the harness removes it, its taps and whatever runs in it, also after a
// crash or an interrupt, and never leaves a pin behind when /run/netns is
// bound over itself meanwhile.
type lan struct {
	c              *harness.Cluster
	ns, bridge, ip string
	taps           int
}

// newLAN makes a namespace with bridge br0 at 10.79.0.1/24, removed when
// the spec ends. (The cluster's one node, 10.79.0.11, is not used.)
func newLAN() *lan {
	GinkgoHelper()
	c, err := harness.New(context.Background(), harness.Config{Nodes: 1, DiskSize: 1 << 20, Subnet: netip.MustParsePrefix("10.79.0.0/24")})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(c.Close()).To(Succeed()) })
	g := c.Golden()
	return &lan{c: c, ns: filepath.Base(g.NetNS()), bridge: "br0", ip: g.Addr().String()}
}

// addTap adds a tap on the bridge and returns its name.
func (l *lan) addTap() string {
	GinkgoHelper()
	l.taps++
	tap := fmt.Sprintf("tap%d", l.taps)
	Expect(l.c.AddTap(tap)).To(Succeed())
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

// randomMAC returns a locally administered MAC in QEMU's 52:54:00 range.
func randomMAC() string {
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", rand.IntN(256), rand.IntN(256), rand.IntN(256))
}

// startVM boots kernel and initrd with args on a new tap of l, with the
// NIC address mac.
func (l *lan) startVM(name, mac, disk, args string) *qemu.VM {
	vm, err := qemu.Start(context.Background(), qemu.Config{
		Name: fmt.Sprintf("%s-%d-%d", name, os.Getpid(), rand.IntN(1e6)), Netns: l.ns, Tap: l.addTap(), MAC: mac,
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

// apiServer is herd's own agent API (pxe/httpboot, without DHCP or
// boot files) for one machine, with a session key; it records the
// registrations and reports it accepted.
type apiServer struct {
	// key is the session key (the chain's), keyFile holds it.
	key     []byte
	keyFile string
	// agentKey is the machine's agent key, for its kernel line.
	agentKey string
	store    *state.Store
	reg      chan httpboot.RegisterRequest
	rep      chan httpboot.ReportRequest
	srv      *http.Server
}

// stop ends the server: a herd server that died.
func (a *apiServer) stop() { a.srv.Close() }

// startAPI serves the API on l's address at port for the machine mac.
func (l *lan) startAPI(port int, mac string) *apiServer {
	GinkgoHelper()
	dir := GinkgoT().TempDir()
	a := &apiServer{key: []byte(fmt.Sprintf("e2e-session-key-%016x", rand.Uint64())), keyFile: filepath.Join(dir, "key"),
		reg: make(chan httpboot.RegisterRequest, 16), rep: make(chan httpboot.ReportRequest, 16)}
	Expect(os.WriteFile(a.keyFile, a.key, 0o600)).To(Succeed())
	var err error
	a.store, err = state.Open("")
	Expect(err).NotTo(HaveOccurred())
	m, err := a.store.Add(mac, "")
	Expect(err).NotTo(HaveOccurred())
	a.agentKey = hex.EncodeToString(httpboot.AgentKey(a.key, m.MAC, m.KeyID))
	api := &httpboot.Server{Dir: dir, Store: a.store, Key: a.key, Logf: func(f string, args ...any) { GinkgoWriter.Printf(f+"\n", args...) }}
	h := api.Handler()
	// Record what the real handler accepted.
	record := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(rec, r)
		if rec.code != http.StatusOK || r.Method != http.MethodPost {
			return
		}
		switch r.URL.Path {
		case httpboot.PathRegister:
			var req httpboot.RegisterRequest
			json.Unmarshal(body, &req)
			a.reg <- req
		case httpboot.PathReport:
			var req httpboot.ReportRequest
			json.Unmarshal(body, &req)
			a.rep <- req
		}
	})
	a.srv = &http.Server{Handler: record}
	go a.srv.Serve(listenIn(l.ns, fmt.Sprintf("%s:%d", l.ip, port)))
	DeferCleanup(a.srv.Close)
	return a
}

// statusWriter remembers the status code written through it.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// liveView reads the live view's JSON at addr inside l's namespace.
func liveView(l *lan, addr string) live.View {
	GinkgoHelper()
	var v live.View
	Expect(json.Unmarshal(httpGetIn(l, addr, "/api/v1/view"), &v)).To(Succeed())
	return v
}

// scrapeMetrics reads /metrics at addr inside l's namespace into
// name{labels} → value.
func scrapeMetrics(l *lan, addr string) map[string]float64 {
	GinkgoHelper()
	out := map[string]float64{}
	line := regexp.MustCompile(`^([a-z_]+(?:\{[^}]*\})?) (\S+)$`)
	for _, s := range strings.Split(string(httpGetIn(l, addr, "/metrics")), "\n") {
		if m := line.FindStringSubmatch(s); m != nil {
			v, err := strconv.ParseFloat(m[2], 64)
			Expect(err).NotTo(HaveOccurred(), s)
			out[m[1]] = v
		}
	}
	return out
}

// httpGetIn GETs path from addr inside l's namespace.
func httpGetIn(l *lan, addr, path string) []byte {
	GinkgoHelper()
	local, stop, err := testenv.Forward(l.c.Golden().NetNS(), addr)
	Expect(err).NotTo(HaveOccurred())
	defer stop()
	r, err := http.Get("http://" + local + path)
	Expect(err).NotTo(HaveOccurred())
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	Expect(err).NotTo(HaveOccurred())
	Expect(r.StatusCode).To(Equal(http.StatusOK), "%s: %s", path, b)
	return b
}
