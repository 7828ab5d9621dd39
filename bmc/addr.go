package bmc

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Errors callers branch on.
var (
	// ErrAddr: a BMC address herd cannot use.
	ErrAddr = errors.New("bmc: bad address")
	// ErrCredentials: a credentials file herd cannot use.
	ErrCredentials = errors.New("bmc: bad credentials")
	// ErrBMC: the BMC refused or failed a request.
	ErrBMC = errors.New("bmc")
)

// Protocols of an Addr.
const (
	IPMI    = "ipmi"
	Redfish = "redfish"
)

// Addr is where a BMC listens.
type Addr struct {
	// Protocol is IPMI or Redfish.
	Protocol string
	// Host and Port (default 623 for IPMI, 443 for Redfish).
	Host string
	Port int
	// System is a Redfish system's path (/redfish/v1/Systems/ID);
	// empty: the one system the BMC has.
	System string
	// Cipher is the IPMI cipher suite (ipmi://HOST?cipher=3); 0:
	// ipmitool's choice (17 where the BMC offers it). Suite 0, no
	// authentication at all, is refused.
	Cipher int
}

// String returns the address as ParseAddr reads it.
func (a Addr) String() string {
	s := a.Protocol + "://" + net.JoinHostPort(a.Host, strconv.Itoa(a.Port)) + a.System
	if a.Cipher != 0 {
		s += "?cipher=" + strconv.Itoa(a.Cipher)
	}
	return s
}

// ParseAddr reads a BMC address: ipmi://HOST[:PORT][?cipher=N] or
// redfish://HOST[:PORT][/redfish/v1/Systems/ID]. https://… is read as
// redfish://….
func ParseAddr(s string) (Addr, error) {
	bad := func(why string) (Addr, error) { return Addr{}, fmt.Errorf("%w %q: %s", ErrAddr, s, why) }
	if len(s) > 512 {
		return bad("too long")
	}
	if !strings.Contains(s, "://") {
		return bad("want ipmi://HOST[:PORT] or redfish://HOST[:PORT]")
	}
	u, err := url.Parse(s)
	if err != nil {
		return bad(err.Error())
	}
	var a Addr
	switch u.Scheme {
	case "ipmi":
		a.Protocol, a.Port = IPMI, 623
	case "redfish", "https":
		a.Protocol, a.Port = Redfish, 443
	default:
		return bad("protocol " + u.Scheme + " (want ipmi or redfish)")
	}
	if u.User != nil {
		return bad("credentials belong in the credentials file, not in the address")
	}
	if u.Fragment != "" || strings.Contains(s, "#") {
		return bad("no fragment allowed")
	}
	if u.RawQuery != "" {
		k, v, _ := strings.Cut(u.RawQuery, "=")
		n, err := strconv.Atoi(v)
		switch {
		case u.Scheme != "ipmi" || k != "cipher":
			return bad("the only setting is ?cipher=N, of an IPMI address")
		case err != nil || n < 1 || n > 17 || strconv.Itoa(n) != v:
			return bad("cipher suite " + v + ": want 1 to 17 (0 would take any password)")
		}
		a.Cipher = n
	}
	a.Host = u.Hostname()
	if a.Host == "" || strings.HasPrefix(a.Host, "-") || strings.ContainsAny(a.Host, " \t\n/\\'\"") {
		return bad("no usable host")
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return bad("port " + p)
		}
		a.Port = n
	}
	switch path := strings.TrimSuffix(u.Path, "/"); {
	case path == "":
	case a.Protocol == IPMI:
		return bad("an IPMI address has no path")
	case strings.HasPrefix(path, "/redfish/v1/Systems/") && !strings.Contains(path[len("/redfish/v1/Systems/"):], "/") && !strings.Contains(path, ".."):
		a.System = path
	default:
		return bad("path must be /redfish/v1/Systems/ID")
	}
	return a, nil
}
