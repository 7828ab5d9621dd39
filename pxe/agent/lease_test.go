package agent

import (
	"net"
	"testing"
)

func TestLeaseAddr(t *testing.T) {
	ipn, bcast, err := leaseAddr(net.IPv4(10, 79, 0, 100), net.CIDRMask(24, 32))
	if err != nil || ipn.String() != "10.79.0.100/24" || bcast.String() != "10.79.0.255" {
		t.Fatalf("%v %v %v", ipn, bcast, err)
	}
	// A malformed or missing mask from a stranger's DHCP answer: the
	// class mask, no panic.
	for _, m := range []net.IPMask{nil, {255, 255}, {255, 0, 255, 0}, make(net.IPMask, 16), {0, 0, 0, 0}} {
		ipn, _, err := leaseAddr(net.IPv4(10, 0, 0, 5), m)
		if err != nil || ipn.Mask.String() != "ff000000" {
			t.Errorf("mask %v: %v %v", m, ipn, err)
		}
	}
	for _, ip := range []net.IP{nil, net.IPv4zero, net.IPv4bcast, net.ParseIP("::1"), net.IPv4(127, 0, 0, 1), net.IPv4(224, 0, 0, 1), {1, 2}} {
		if _, _, err := leaseAddr(ip, net.CIDRMask(24, 32)); err == nil {
			t.Errorf("address %v accepted", ip)
		}
	}
}

func FuzzLeaseAddr(f *testing.F) {
	f.Add([]byte{10, 0, 0, 1}, []byte{255, 255, 255, 0})
	f.Add([]byte{10, 0, 0, 1}, []byte{255})
	f.Fuzz(func(t *testing.T, ip, mask []byte) {
		ipn, bcast, err := leaseAddr(net.IP(ip), net.IPMask(mask))
		if err != nil {
			return
		}
		if len(ipn.IP) != 4 || len(ipn.Mask) != 4 || len(bcast) != 4 {
			t.Fatalf("%v %v", ipn, bcast)
		}
	})
}
