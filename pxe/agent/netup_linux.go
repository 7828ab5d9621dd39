package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
)

// ErrNoNetwork means no interface got an address; the error lists the
// interfaces and what each did.
var ErrNoNetwork = errors.New("agent: no network")

// NetUp configures the network the agent talks to the server over: the
// interface whose MAC is bootMAC (the one the machine PXE-booted from,
// BOOTIF) first, then every other interface with a link, in name order.
// An interface that already has an IPv4 address (the agent of a stage 2,
// whose kernel kept the first agent's configuration) is used as it is;
// the others are brought up and asked for a lease with herd's own DHCP
// client. It says on console which interface it used and why the others
// were passed over. ctx bounds the whole attempt.
func NetUp(ctx context.Context, bootMAC string, console io.Writer) (Lease, error) {
	var tried []string
	for {
		ifcs, err := candidates(bootMAC)
		if err != nil {
			return Lease{}, err
		}
		for _, ifc := range ifcs {
			boot := bootMAC != "" && strings.EqualFold(ifc.HardwareAddr.String(), bootMAC)
			if l, ok := ipv4Lease(&ifc); ok && (boot || bootMAC == "" || !hasBootIfc(ifcs, bootMAC)) {
				fmt.Fprintf(console, "herd: %s already has %s, no DHCP\n", ifc.Name, l.IP)
				return l, nil
			}
			l, err := dhcpOn(ctx, ifc, console)
			if err == nil {
				why := "the first with a lease"
				if boot {
					why = "the NIC it booted from"
				}
				fmt.Fprintf(console, "herd: lease %s on %s (%s, %s)\n", l.IP, ifc.Name, l.MAC, why)
				return l, nil
			}
			tried = append(tried, fmt.Sprintf("%s %s: %v", ifc.Name, ifc.HardwareAddr, err))
			if ctx.Err() != nil {
				break
			}
		}
		if len(ifcs) > 0 || ctx.Err() != nil {
			break
		}
		// No interface yet: its driver may still be coming up.
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	if len(tried) == 0 {
		tried = append(tried, "no network interface at all (no driver for the NIC? see the lines above)")
	}
	return Lease{}, fmt.Errorf("%w: %s; %s", ErrNoNetwork, strings.Join(tried, "; "), pciControllers("/sys", "02", "network controllers"))
}

func hasBootIfc(ifcs []net.Interface, mac string) bool {
	for _, i := range ifcs {
		if strings.EqualFold(i.HardwareAddr.String(), mac) {
			return true
		}
	}
	return false
}

// candidates lists the Ethernet interfaces, the one with bootMAC first.
func candidates(bootMAC string) ([]net.Interface, error) {
	all, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("agent: list interfaces: %w", err)
	}
	var out []net.Interface
	for _, i := range all {
		if i.Flags&net.FlagLoopback != 0 || len(i.HardwareAddr) != 6 {
			continue
		}
		out = append(out, i)
	}
	sort.SliceStable(out, func(a, b int) bool {
		ba := strings.EqualFold(out[a].HardwareAddr.String(), bootMAC)
		bb := strings.EqualFold(out[b].HardwareAddr.String(), bootMAC)
		if ba != bb {
			return ba
		}
		return out[a].Name < out[b].Name
	})
	return out, nil
}

// dhcpOn brings ifc up, waits up to 5 s for a link, asks for a lease
// (up to 10 s) and configures the address and default route.
func dhcpOn(ctx context.Context, ifc net.Interface, console io.Writer) (Lease, error) {
	link, err := netlink.LinkByName(ifc.Name)
	if err != nil {
		return Lease{}, err
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return Lease{}, fmt.Errorf("set up: %w", err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		l, err := netlink.LinkByName(ifc.Name)
		if err == nil && l.Attrs().OperState == netlink.OperUp {
			break
		}
		if time.Now().After(deadline) {
			return Lease{}, errors.New("no link")
		}
		select {
		case <-ctx.Done():
			return Lease{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	c, err := nclient4.New(ifc.Name, nclient4.WithTimeout(3*time.Second), nclient4.WithRetry(3))
	if err != nil {
		return Lease{}, fmt.Errorf("DHCP: %w", err)
	}
	defer c.Close()
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	lease, err := c.Request(dctx)
	if err != nil {
		return Lease{}, fmt.Errorf("DHCP: %w", err)
	}
	ipn, bcast, err := leaseAddr(lease.ACK.YourIPAddr, lease.ACK.SubnetMask())
	if err != nil {
		return Lease{}, fmt.Errorf("DHCP: %w", err)
	}
	ack := lease.ACK
	if err := netlink.AddrReplace(link, &netlink.Addr{IPNet: ipn, Broadcast: bcast}); err != nil {
		return Lease{}, fmt.Errorf("add address %s: %w", ipn, err)
	}
	if gw := ack.Router(); len(gw) > 0 {
		if err := netlink.RouteReplace(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw[0]}); err != nil {
			fmt.Fprintf(console, "herd: default route via %s on %s: %v\n", gw[0], ifc.Name, err)
		}
	}
	return Lease{Interface: ifc.Name, MAC: strings.ToLower(ifc.HardwareAddr.String()), IP: ipn.IP.String()}, nil
}
