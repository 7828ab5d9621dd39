//go:build !linux

package pxe

import (
	"errors"
	"net"
)

// ListenDHCP is only implemented on Linux.
func ListenDHCP(iface string, port int) (net.PacketConn, error) {
	return nil, errors.New("pxe: DHCP needs Linux (SO_BINDTODEVICE)")
}
