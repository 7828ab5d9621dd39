package agent

import (
	"fmt"
	"net"
)

// leaseAddr checks what a DHCP server offered (anyone on the network
// can answer) and returns the address with its mask and broadcast: an
// IPv4 unicast address, and a contiguous IPv4 mask (the address's
// class mask when the server sent none or a malformed one).
func leaseAddr(ip net.IP, mask net.IPMask) (*net.IPNet, net.IP, error) {
	ip4 := ip.To4()
	if ip4 == nil || ip4.IsUnspecified() || ip4.IsLoopback() || ip4.IsMulticast() || ip4.Equal(net.IPv4bcast) {
		return nil, nil, fmt.Errorf("offered address %v is not a usable IPv4 address", ip)
	}
	if ones, bits := mask.Size(); bits != 32 || ones == 0 {
		mask = ip4.DefaultMask()
	}
	if mask == nil {
		mask = net.CIDRMask(24, 32)
	}
	bcast := make(net.IP, 4)
	for i := range bcast {
		bcast[i] = ip4[i] | ^mask[i]
	}
	return &net.IPNet{IP: ip4, Mask: mask}, bcast, nil
}
