package pxe

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netns"
)

// lab is a pair of network namespaces joined by a veth pair: the server
// side has 10.77.0.1/24 on SrvIf, the client side ClientIf.
type lab struct {
	Srv, Client     string // namespace names
	SrvIf, ClientIf string
	ClientMAC       string
}

func requireRootTools(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (Debian: iproute2, busybox-static)", tool)
		}
	}
}

func sh(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	require.NoError(t, err, "%s: %s", strings.Join(args, " "), out)
	return strings.TrimSpace(string(out))
}

// newLab creates the namespaces and links; t.Cleanup removes them.
func newLab(t *testing.T) *lab {
	t.Helper()
	requireRootTools(t, "ip", "busybox")
	b := make([]byte, 3)
	rand.Read(b)
	id := fmt.Sprintf("%d%s", os.Getpid()%100000, hex.EncodeToString(b))
	l := &lab{Srv: "herdpxe-s-" + id, Client: "herdpxe-c-" + id, SrvIf: "hps" + id, ClientIf: "hpc" + id}
	if len(l.SrvIf) > 15 {
		l.SrvIf, l.ClientIf = l.SrvIf[:15], l.ClientIf[:15]
	}
	sh(t, "ip", "netns", "add", l.Srv)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", l.Srv).Run() })
	sh(t, "ip", "netns", "add", l.Client)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", l.Client).Run() })
	sh(t, "ip", "link", "add", l.SrvIf, "type", "veth", "peer", "name", l.ClientIf)
	t.Cleanup(func() { exec.Command("ip", "link", "del", l.SrvIf).Run() }) // gone already once moved and the netns is deleted
	sh(t, "ip", "link", "set", l.SrvIf, "netns", l.Srv)
	sh(t, "ip", "link", "set", l.ClientIf, "netns", l.Client)
	sh(t, "ip", "-n", l.Srv, "addr", "add", "10.77.0.1/24", "brd", "+", "dev", l.SrvIf)
	sh(t, "ip", "-n", l.Srv, "link", "set", "lo", "up")
	sh(t, "ip", "-n", l.Srv, "link", "set", l.SrvIf, "up")
	sh(t, "ip", "-n", l.Client, "link", "set", "lo", "up")
	sh(t, "ip", "-n", l.Client, "link", "set", l.ClientIf, "up")
	l.ClientMAC = sh(t, "ip", "netns", "exec", l.Client, "cat", "/sys/class/net/"+l.ClientIf+"/address")
	return l
}

// in runs f on a thread switched into the namespace ns. Sockets f opens
// stay in ns after the thread switches back. A thread that cannot switch
// back stays locked, so the runtime discards it instead of reusing it.
func in(ns string, f func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	h, err := netns.GetFromName(ns)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns %s: %w", ns, err)
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	ferr := f()
	if err := netns.Set(orig); err != nil {
		return fmt.Errorf("return from netns %s: %w", ns, err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// dialer returns a DialContext that connects from inside ns.
func dialer(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := in(ns, func() error {
			var err error
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}
