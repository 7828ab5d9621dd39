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
}

// String returns the address as ParseAddr reads it.
func (a Addr) String() string {
	return a.Protocol + "://" + net.JoinHostPort(a.Host, strconv.Itoa(a.Port)) + a.System
}

// ParseAddr reads a BMC address: ipmi://HOST[:PORT] or
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
	if u.RawQuery != "" || u.Fragment != "" {
		return bad("no query or fragment allowed")
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
