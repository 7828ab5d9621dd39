package pxe

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netns"

	"github.com/herd-cluster/herd/harness"
	"github.com/herd-cluster/herd/harness/harnesstest"
	"github.com/herd-cluster/herd/internal/testenv"
)

// lab is a server namespace and a client namespace on one link, made by
// the lab harness (which removes them, and whatever runs in them, also
// after a crash or an interrupt): the server side has 10.77.0.1/24 on
// SrvIf (the golden namespace's bridge), the client side ClientIf (a
// node's eth0).
type lab struct {
	Srv, Client     string // namespace names (under /run/netns)
	SrvIf, ClientIf string
	ClientMAC       string
}

func requireRootTools(t *testing.T, tools ...string) {
	t.Helper()
	testenv.NeedRoot(t, "network namespaces", tools...)
}

func sh(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	require.NoError(t, err, "%s: %s", strings.Join(args, " "), out)
	return strings.TrimSpace(string(out))
}

// newLab builds the namespaces with the harness; t.Cleanup removes them.
// The client has the harness's static address too (10.77.0.11), which a
// DHCP client ignores.
func newLab(t *testing.T) *lab {
	t.Helper()
	requireRootTools(t, "ip", "busybox")
	c := harnesstest.New(t, harness.Config{Nodes: 1, DiskSize: 1 << 20, Subnet: netip.MustParsePrefix("10.77.0.0/24")})
	l := &lab{
		Srv:    filepath.Base(c.Golden().NetNS()),
		Client: filepath.Base(c.Nodes()[0].NetNS()),
		SrvIf:  "br0", ClientIf: "eth0",
	}
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
