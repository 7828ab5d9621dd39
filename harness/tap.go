package harness

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// AddTap creates a persistent tap interface called name in the golden
// namespace, attached to the bridge and up, for a virtual machine whose
// QEMU runs in golden (start it with Golden().Command or Golden().Start and
// `-netdev tap,id=n0,ifname=NAME,script=no,downscript=no`). The tap goes
// away with the cluster.
func (c *Cluster) AddTap(name string) error {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if name == "" || len(name) > 15 {
		return fmt.Errorf("tap name %q (1-15 characters): %w", name, ErrBadConfig)
	}
	g, err := netns.GetFromPath(c.golden.NetNS())
	if err != nil {
		return fmt.Errorf("open golden netns: %w", err)
	}
	defer g.Close()
	// A tap is made with ioctls on /dev/net/tun, which act in the calling
	// thread's namespace: do it on a thread moved into golden and back.
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		origin, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("get current netns: %w", err)
			return
		}
		defer origin.Close()
		if err := netns.Set(g); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter golden netns: %w", err)
			return
		}
		tap := &netlink.Tuntap{
			LinkAttrs: netlink.LinkAttrs{Name: name},
			Mode:      netlink.TUNTAP_MODE_TAP,
			Flags:     netlink.TUNTAP_NO_PI | netlink.TUNTAP_ONE_QUEUE,
		}
		err = netlink.LinkAdd(tap)
		for _, f := range tap.Fds {
			f.Close()
		}
		if serr := netns.Set(origin); serr != nil {
			// Leave the thread locked: the runtime discards it.
			errc <- errors.Join(err, fmt.Errorf("restore netns: %w", serr))
			return
		}
		runtime.UnlockOSThread()
		if err != nil {
			err = fmt.Errorf("create tap %s: %w", name, err)
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		return err
	}
	gh, err := netlink.NewHandleAt(g)
	if err != nil {
		return fmt.Errorf("netlink in golden: %w", err)
	}
	defer gh.Close()
	br, err := gh.LinkByName("br0")
	if err != nil {
		return fmt.Errorf("find br0: %w", err)
	}
	l, err := gh.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find tap %s: %w", name, err)
	}
	if err := gh.LinkSetMaster(l, br); err != nil {
		return fmt.Errorf("attach tap %s to br0: %w", name, err)
	}
	if err := gh.LinkSetUp(l); err != nil {
		return fmt.Errorf("set tap %s up: %w", name, err)
	}
	return nil
}
