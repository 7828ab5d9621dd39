// Package ra sends IPv6 router advertisements on one interface. iPXE
// waits for IPv6 configuration as well as for DHCPv4 before it boots: on
// a network without a router that advertises, every PXE boot waits about
// 16 seconds in "Configuring". An advertisement that carries a prefix
// (and no default route: router lifetime 0) ends that wait at once.
//
// Usage:
//
//	adv, err := ra.Listen("br0", netip.MustParsePrefix("fd68:6572:6400::/64"))
//	if err != nil { ... }
//	go adv.Serve(ctx) // every 2 s and in answer to router solicitations
//
// Public but small: only the PXE server uses it.
package ra

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

// DefaultPrefix is the unique local prefix advertised when none is given.
var DefaultPrefix = netip.MustParsePrefix("fd68:6572:6400::/64")

// Errors.
var (
	ErrShort  = errors.New("ra: message too short")
	ErrType   = errors.New("ra: not a router advertisement")
	ErrOption = errors.New("ra: malformed option")
	ErrPrefix = errors.New("ra: prefix must be an IPv6 /64")
)

// ICMPv6 types and option codes used here.
const (
	typeRS          = 133
	typeRA          = 134
	optSourceLLAddr = 1
	optPrefixInfo   = 3
)

// Advert is the content of one router advertisement.
type Advert struct {
	HopLimit       uint8
	RouterLifetime time.Duration // 0: not a default router
	SourceMAC      net.HardwareAddr
	Prefix         netip.Prefix
	ValidLifetime  time.Duration
	PreferredLife  time.Duration
	OnLink, Auto   bool
}

// Marshal encodes a as an ICMPv6 message (checksum left zero: the
// kernel fills it in on ICMPv6 sockets).
func (a Advert) Marshal() ([]byte, error) {
	if !a.Prefix.Addr().Is6() || a.Prefix.Bits() != 64 {
		return nil, fmt.Errorf("%w: %v", ErrPrefix, a.Prefix)
	}
	b := make([]byte, 16, 16+8+32)
	b[0] = typeRA
	b[4] = a.HopLimit
	binary.BigEndian.PutUint16(b[6:], uint16(a.RouterLifetime/time.Second))
	if len(a.SourceMAC) == 6 {
		b = append(b, optSourceLLAddr, 1)
		b = append(b, a.SourceMAC...)
	}
	p := make([]byte, 32)
	p[0], p[1], p[2] = optPrefixInfo, 4, uint8(a.Prefix.Bits())
	if a.OnLink {
		p[3] |= 0x80
	}
	if a.Auto {
		p[3] |= 0x40
	}
	binary.BigEndian.PutUint32(p[4:], uint32(a.ValidLifetime/time.Second))
	binary.BigEndian.PutUint32(p[8:], uint32(a.PreferredLife/time.Second))
	addr := a.Prefix.Masked().Addr().As16()
	copy(p[16:], addr[:])
	return append(b, p...), nil
}

// Parse decodes a router advertisement made by Marshal (or any RA with
// a source link-layer and a prefix information option); unknown options
// are skipped.
func Parse(b []byte) (Advert, error) {
	var a Advert
	if len(b) < 16 {
		return a, fmt.Errorf("%w: %d bytes", ErrShort, len(b))
	}
	if b[0] != typeRA || b[1] != 0 {
		return a, fmt.Errorf("%w: type %d code %d", ErrType, b[0], b[1])
	}
	a.HopLimit = b[4]
	a.RouterLifetime = time.Duration(binary.BigEndian.Uint16(b[6:])) * time.Second
	for o := b[16:]; len(o) > 0; {
		if len(o) < 2 || o[1] == 0 || int(o[1])*8 > len(o) {
			return a, fmt.Errorf("%w at offset %d", ErrOption, len(b)-len(o))
		}
		n := int(o[1]) * 8
		switch o[0] {
		case optSourceLLAddr:
			if n >= 8 {
				a.SourceMAC = net.HardwareAddr(append([]byte(nil), o[2:8]...))
			}
		case optPrefixInfo:
			if n != 32 || o[2] > 128 {
				return a, fmt.Errorf("%w: prefix information of %d bytes, /%d", ErrOption, n, o[2])
			}
			a.OnLink, a.Auto = o[3]&0x80 != 0, o[3]&0x40 != 0
			a.ValidLifetime = time.Duration(binary.BigEndian.Uint32(o[4:])) * time.Second
			a.PreferredLife = time.Duration(binary.BigEndian.Uint32(o[8:])) * time.Second
			a.Prefix = netip.PrefixFrom(netip.AddrFrom16([16]byte(o[16:32])), int(o[2]))
		}
		o = o[n:]
	}
	return a, nil
}

// Advertiser sends advertisements on one interface.
type Advertiser struct {
	// Interval between unsolicited advertisements (default 2 s).
	Interval time.Duration
	// Logf receives errors (optional).
	Logf func(format string, args ...any)

	conn  *icmp.PacketConn
	ifi   *net.Interface
	msg   []byte
	group *net.IPAddr
}

// Listen opens an ICMPv6 socket for iface (in the calling thread's
// network namespace) that advertises prefix (DefaultPrefix when invalid).
func Listen(iface string, prefix netip.Prefix) (*Advertiser, error) {
	if !prefix.IsValid() {
		prefix = DefaultPrefix
	}
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("ra: interface %s: %w", iface, err)
	}
	msg, err := Advert{HopLimit: 64, SourceMAC: ifi.HardwareAddr, Prefix: prefix, OnLink: true, Auto: true,
		ValidLifetime: time.Hour, PreferredLife: 30 * time.Minute}.Marshal()
	if err != nil {
		return nil, err
	}
	c, err := icmp.ListenPacket("ip6:ipv6-icmp", "::")
	if err != nil {
		return nil, fmt.Errorf("ra: open ICMPv6 socket: %w", err)
	}
	p := c.IPv6PacketConn()
	allRouters := &net.IPAddr{IP: net.ParseIP("ff02::2")}
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeRouterSolicitation)
	for _, err := range []error{
		p.SetMulticastHopLimit(255), p.SetHopLimit(255), p.SetMulticastInterface(ifi),
		p.JoinGroup(ifi, allRouters), p.SetICMPFilter(&f), p.SetMulticastLoopback(false),
	} {
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("ra: set up ICMPv6 socket on %s: %w", iface, err)
		}
	}
	return &Advertiser{conn: c, ifi: ifi, msg: msg, group: &net.IPAddr{IP: net.ParseIP("ff02::1"), Zone: iface}}, nil
}

// Close closes the socket; Serve returns.
func (a *Advertiser) Close() error { return a.conn.Close() }

func (a *Advertiser) logf(format string, args ...any) {
	if a.Logf != nil {
		a.Logf(format, args...)
	}
}

// Serve advertises at every interval and after every router
// solicitation until ctx ends or the socket is closed.
func (a *Advertiser) Serve(ctx context.Context) error {
	iv := a.Interval
	if iv <= 0 {
		iv = 2 * time.Second
	}
	solicited := make(chan struct{}, 1)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, _, err := a.conn.ReadFrom(buf)
			if err != nil {
				return
			}
			if n > 0 && buf[0] == typeRS {
				select {
				case solicited <- struct{}{}:
				default:
				}
			}
		}
	}()
	t := time.NewTicker(iv)
	defer t.Stop()
	defer a.conn.Close()
	lastErr := ""
	for {
		if _, err := a.conn.WriteTo(a.msg, a.group); err != nil {
			// Typical until the link-local address is usable: keep trying.
			if err.Error() != lastErr {
				a.logf("ra: advertise on %s: %v", a.ifi.Name, err)
				lastErr = err.Error()
			}
		} else {
			lastErr = ""
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-solicited:
		}
	}
}
