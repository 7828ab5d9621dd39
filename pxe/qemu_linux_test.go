package pxe

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/herd-cluster/herd/harness"
	"github.com/herd-cluster/herd/harness/harnesstest"
	"github.com/herd-cluster/herd/pxe/dhcp"
	"github.com/herd-cluster/herd/pxe/state"
)

// logSink collects service log lines for a test.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (l *logSink) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logSink) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// waitFor polls cond every 100 ms until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return cond()
}

// bootVM starts QEMU (software emulation) inside ns on tap, booting from
// the network with the iPXE ROM QEMU ships; it is killed at test end.
func bootVM(t *testing.T, ns, tap, mac string) (console func() string, stop func()) {
	t.Helper()
	var out bytes.Buffer
	var mu sync.Mutex
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(p) })
	cmd := exec.Command("ip", "netns", "exec", ns, "qemu-system-x86_64", "-accel", "tcg", "-m", "128", "-nographic", "-no-reboot",
		"-netdev", "tap,id=n0,ifname="+tap+",script=no,downscript=no", "-device", "virtio-net-pci,netdev=n0,mac="+mac, "-boot", "n")
	cmd.Stdout, cmd.Stderr = w, w
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cmd.Process.Kill()
		<-done
	}
	t.Cleanup(stop)
	return func() string { mu.Lock(); defer mu.Unlock(); return out.String() }, stop
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// qemuNetns makes a namespace (a harness cluster's golden one, removed
// with everything in it when the test ends, also after a crash or an
// interrupt) whose bridge srvIf holds 10.78.0.1/24, with a tap on it for
// a virtual machine.
func qemuNetns(t *testing.T) (ns, srvIf, tap string) {
	t.Helper()
	c := harnesstest.New(t, harness.Config{Nodes: 1, DiskSize: 1 << 20, Subnet: netip.MustParsePrefix("10.78.0.0/24")})
	tap = "tap0"
	require.NoError(t, c.AddTap(tap))
	return filepath.Base(c.Golden().NetNS()), "br0", tap
}

func requireQEMU(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots QEMU machines (~15 s each): skipped with -short")
	}
	requireRootTools(t, "ip", "qemu-system-x86_64")
	if _, err := os.Stat("/usr/lib/ipxe/qemu/efi-virtio.rom"); err != nil {
		t.Skip("QEMU's iPXE ROM is missing (Debian ipxe-qemu)")
	}
}

// TestIPXEInQEMU boots a real iPXE (QEMU's virtio NIC ROM) against the
// server: DHCP with router advertisements, the chain script, the
// per-MAC script and the kernel and initramfs over HTTP. Switched to
// local, the same machine is sent back to its disk.
func TestIPXEInQEMU(t *testing.T) {
	requireQEMU(t)
	ns, srvIf, tap := qemuNetns(t)
	dir, top := bootFolder(t)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "initrd.img"), []byte("initrd"), 0o644))
	logs := &logSink{}
	srv, _ := startIn(t, ns, Options{
		Interface: srvIf, ServerIP: net.IPv4(10, 78, 0, 1), Netmask: net.CIDRMask(24, 32),
		DHCP: dhcp.ModeServer, RangeStart: net.IPv4(10, 78, 0, 100), RangeEnd: net.IPv4(10, 78, 0, 110),
		BootDir: dir, StatePath: filepath.Join(top, "m.json"), RA: true, Logf: logs.logf,
		Key: testKey, MACs: []string{"52:54:00:aa:bb:01"},
	})
	const mac = "52:54:00:aa:bb:01"

	console, stop := bootVM(t, ns, tap, mac)
	start := time.Now()
	ok := waitFor(90*time.Second, func() bool { return strings.Contains(logs.text(), "got initrd.img") })
	require.True(t, ok, "iPXE did not fetch the initramfs\nserver:\n%s\nconsole:\n%s", logs.text(), console())
	t.Logf("iPXE fetched kernel and initramfs %.1fs after power on", time.Since(start).Seconds())
	assert.Contains(t, logs.text(), "got the iPXE script of "+mac)
	assert.Contains(t, logs.text(), "got vmlinuz")
	assert.Contains(t, console(), "fd68:6572:6400:", "iPXE took an address from the router advertisement")
	stop()

	_, err := srv.Store().Set(mac, state.Local, "")
	require.NoError(t, err)
	before := strings.Count(logs.text(), "got vmlinuz")
	console, _ = bootVM(t, ns, tap, mac)
	ok = waitFor(90*time.Second, func() bool { return strings.Contains(console(), "Booting from Hard Disk") })
	require.True(t, ok, "local machine did not fall through to its disk\nserver:\n%s\nconsole:\n%s", logs.text(), console())
	assert.Equal(t, before, strings.Count(logs.text(), "got vmlinuz"), "a local machine must not load the agent")
}

// TestPXELinuxInQEMU runs the seed's flow: the iPXE ROM loads pxelinux.0
// over TFTP, pxelinux asks for pxelinux.cfg/01-<mac> (generated from the
// machine's state) and loads the agent's kernel over TFTP; once the
// machine is local, pxelinux gets LOCALBOOT 0 and the disk is tried.
func TestPXELinuxInQEMU(t *testing.T) {
	requireQEMU(t)
	for _, f := range []string{"/usr/lib/PXELINUX/pxelinux.0", "/usr/lib/syslinux/modules/bios/ldlinux.c32"} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("%s missing (Debian pxelinux, syslinux-common)", f)
		}
	}
	ns, srvIf, tap := qemuNetns(t)
	dir, top := bootFolder(t)
	_, _, err := PrepareBootDir(dir, map[string]string{"pxelinux.0": "/usr/lib/PXELINUX/pxelinux.0", "ldlinux.c32": "/usr/lib/syslinux/modules/bios/ldlinux.c32"})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "initrd.img"), []byte("initrd"), 0o644))
	logs := &logSink{}
	srv, _ := startIn(t, ns, Options{
		Interface: srvIf, ServerIP: net.IPv4(10, 78, 0, 1), Netmask: net.CIDRMask(24, 32),
		DHCP: dhcp.ModeServer, RangeStart: net.IPv4(10, 78, 0, 100), RangeEnd: net.IPv4(10, 78, 0, 110),
		BootDir: dir, StatePath: filepath.Join(top, "m.json"), RA: true, BIOSFile: "pxelinux.0", NoIPXEScript: true, Logf: logs.logf,
		Key: testKey, MACs: []string{"52:54:00:aa:bb:02"},
	})
	const mac = "52:54:00:aa:bb:02"
	cfgName := "pxelinux.cfg/01-52-54-00-aa-bb-02"

	console, stop := bootVM(t, ns, tap, mac)
	ok := waitFor(90*time.Second, func() bool { return strings.Contains(logs.text(), "got vmlinuz") })
	require.True(t, ok, "pxelinux did not load the kernel\nserver:\n%s\nconsole:\n%s", logs.text(), console())
	assert.Contains(t, logs.text(), "got pxelinux.0")
	assert.Contains(t, logs.text(), "got ldlinux.c32")
	assert.Contains(t, logs.text(), "got "+cfgName+" (generated")
	stop()

	_, err = srv.Store().Set(mac, state.Local, "")
	require.NoError(t, err)
	before := strings.Count(logs.text(), "got vmlinuz")
	console, _ = bootVM(t, ns, tap, mac)
	ok = waitFor(90*time.Second, func() bool { return strings.Contains(console(), "Booting from Hard Disk") })
	require.True(t, ok, "LOCALBOOT did not reach the disk\nserver:\n%s\nconsole:\n%s", logs.text(), console())
	assert.Equal(t, 2, strings.Count(logs.text(), "got "+cfgName), "the config was asked again")
	assert.Equal(t, before, strings.Count(logs.text(), "got vmlinuz"), "a local machine must not load the agent")
}

// plainDHCP answers like a production DHCP server that knows nothing of
// PXE: addresses only. It runs until the test ends.
func plainDHCP(t *testing.T, ns, iface string) {
	t.Helper()
	var conn net.PacketConn
	require.NoError(t, in(ns, func() error {
		var err error
		conn, err = ListenDHCP(iface, dhcp.ServerPort)
		return err
	}))
	t.Cleanup(func() { conn.Close() })
	cfg := &dhcp.Config{Mode: dhcp.ModeServer, ServerIP: net.IPv4(10, 78, 0, 254).To4(), Start: net.IPv4(10, 78, 0, 50).To4(),
		End: net.IPv4(10, 78, 0, 60).To4(), Netmask: net.CIDRMask(24, 32)} // no boot files at all
	pool := dhcp.NewPool(cfg.Start, cfg.End)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			req, err := dhcpv4.FromBytes(buf[:n])
			if err != nil {
				continue
			}
			if reply, err := dhcp.Handle(cfg, pool, req, dhcp.ServerPort); err == nil {
				conn.WriteTo(reply.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: dhcp.ClientPort})
			}
		}
	}()
}

// TestProxyDHCPWithIPXEInQEMU: a production DHCP server hands out the
// address, herd answers as proxyDHCP only, and a real iPXE boots the
// agent's kernel from herd.
func TestProxyDHCPWithIPXEInQEMU(t *testing.T) {
	requireQEMU(t)
	ns, srvIf, tap := qemuNetns(t)
	sh(t, "ip", "-n", ns, "addr", "add", "10.78.0.254/24", "dev", srvIf) // the production server's address
	dir, top := bootFolder(t)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "initrd.img"), []byte("initrd"), 0o644))
	plainDHCP(t, ns, srvIf)
	logs := &logSink{}
	startIn(t, ns, Options{
		Interface: srvIf, ServerIP: net.IPv4(10, 78, 0, 1), Netmask: net.CIDRMask(24, 32),
		DHCP: dhcp.ModeProxy, BootDir: dir, StatePath: filepath.Join(top, "m.json"), RA: true, Logf: logs.logf,
		Key: testKey, MACs: []string{"52:54:00:aa:bb:05"},
	})
	const mac = "52:54:00:aa:bb:05"
	console, _ := bootVM(t, ns, tap, mac)
	ok := waitFor(90*time.Second, func() bool { return strings.Contains(logs.text(), "got initrd.img") })
	require.True(t, ok, "iPXE did not boot through proxyDHCP\nserver:\n%s\nconsole:\n%s", logs.text(), console())
	assert.Contains(t, console(), "10.78.0.5", "the address came from the production server's range")
	assert.Contains(t, logs.text(), "OFFER to "+mac+" ip=0.0.0.0", "herd offered no address")
}
