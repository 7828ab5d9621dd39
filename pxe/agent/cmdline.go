package agent

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/herd-cluster/herd/blockdev/disksel"
)

// ErrCmdline means the kernel command line does not hold valid orders.
var ErrCmdline = errors.New("agent: bad kernel command line")

// Defaults for orders the kernel command line leaves out; they match
// what pxe/bootcfg writes.
const (
	DefaultPort    = 9998
	DefaultMethod  = "raw"
	DefaultDisk    = disksel.Auto
	DefaultTimeout = 300 * time.Second
	DefaultRetries = 3
	DefaultSession = "herd"
	// AgentKeySize is the size of herd.agentkey (httpboot.KeySize).
	AgentKeySize = 32
)

// Config holds the agent's orders, read from the kernel command line.
type Config struct {
	// Server is the herd server's HTTP address, "IP:PORT" (herd.server).
	Server string
	// Session is the session name to join (herd.session).
	Session string
	// Port is where herd recv listens on this machine (herd.port).
	Port int
	// Method is the cloning method (herd.method): "raw" (herd recv
	// writes the image to Disk) or "files" (herd recv --files partitions
	// Disk and unpacks the golden files; needs mkfs tools, so a stage 2).
	Method string
	// BootMAC is the MAC of the NIC the machine PXE-booted from
	// (BOOTIF=01-aa-bb-cc-dd-ee-ff, as pxelinux writes it; herd's boot
	// files always set it), lower-case with colons; "" when not given.
	BootMAC string
	// Disk is the device the image is written to, or a rule that picks
	// it among the machine's disks (herd.disk; see blockdev/disksel).
	Disk string
	// AgentKey is this machine's agent key (herd.agentkey, 32 bytes in
	// hex), valid for one registration; nil when absent (the server
	// does not know this machine). The chain key is never on the kernel
	// line: it comes in the sealed answer to the registration.
	AgentKey []byte
	// Timeout is how long each attempt to reach the server lasts
	// (herd.timeout, seconds); within it the server is asked again
	// every couple of seconds.
	Timeout time.Duration
	// Retries is how many times the server is tried before the machine
	// reboots (herd.retries, at least 1).
	Retries int
	// Stage2 makes the agent first receive a stage 2 (an archive of a
	// root file system) through the chain into RAM and switch to it;
	// the stage 2's own init then runs herd agent again, which does the
	// duplication (herd.stage2=1).
	Stage2 bool
}

// ParseCmdline reads the agent's orders from a kernel command line such
// as the contents of /proc/cmdline:
//
//	herd.server=10.0.0.1:8080 herd.session=lab herd.port=9998 herd.method=raw
//	herd.disk=/dev/vda herd.agentkey=HEX herd.timeout=30 herd.retries=3 herd.stage2=1 console=ttyS0
//
// Parameters not starting with "herd." are ignored, as are unknown herd.
// ones; a later value of the same parameter wins, as with the kernel.
// herd.server is required; the rest take the Default values. herd.key
// (a session key on the kernel line, as older herds did) is refused.
func ParseCmdline(s string) (Config, error) {
	c := Config{Session: DefaultSession, Port: DefaultPort, Method: DefaultMethod, Disk: DefaultDisk, Timeout: DefaultTimeout, Retries: DefaultRetries}
	bad := func(k, v, why string) (Config, error) {
		return Config{}, fmt.Errorf("%w: %s=%q: %s", ErrCmdline, k, v, why)
	}
	for _, f := range strings.Fields(s) {
		k, v, _ := strings.Cut(f, "=")
		if k == "BOOTIF" {
			mac, err := net.ParseMAC(strings.ReplaceAll(strings.TrimPrefix(v, "01-"), "-", ":"))
			if err != nil || len(mac) != 6 || !strings.HasPrefix(v, "01-") {
				return bad(k, v, "want 01-aa-bb-cc-dd-ee-ff (an Ethernet MAC)")
			}
			c.BootMAC = mac.String()
			continue
		}
		if !strings.HasPrefix(k, "herd.") {
			continue
		}
		switch k {
		case "herd.server":
			host, port, err := net.SplitHostPort(v)
			if err != nil || net.ParseIP(host) == nil {
				return bad(k, v, "want IP:PORT")
			}
			if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
				return bad(k, v, "port out of range")
			}
			c.Server = v
		case "herd.session":
			if v == "" || !printable(v) {
				return bad(k, v, "want a non-empty printable name")
			}
			c.Session = v
		case "herd.port":
			p, err := strconv.Atoi(v)
			if err != nil || p < 1 || p > 65535 {
				return bad(k, v, "want a port 1-65535")
			}
			c.Port = p
		case "herd.method":
			if v == "" || strings.Trim(v, "abcdefghijklmnopqrstuvwxyz") != "" {
				return bad(k, v, "want a method name such as raw")
			}
			c.Method = v
		case "herd.disk":
			if _, err := disksel.Parse(v); err != nil || v == "" {
				return bad(k, v, "want a device path under /dev/ or a disk rule (auto, model=…, serial=…, size>=…, largest)")
			}
			c.Disk = v
		case "herd.agentkey":
			if v == "" {
				c.AgentKey = nil
				continue
			}
			key, err := hex.DecodeString(v)
			if err != nil || len(key) != AgentKeySize {
				return bad(k, v, fmt.Sprintf("want %d bytes in hex", AgentKeySize))
			}
			c.AgentKey = key
		case "herd.key":
			return Config{}, fmt.Errorf("%w: herd.key: a session key on the kernel line is not read (anyone who reads the boot configuration would have it); the server gives this agent herd.agentkey and the chain key in its answer (a herd server older than this agent?)", ErrCmdline)
		case "herd.timeout":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 86400 {
				return bad(k, v, "want seconds 1-86400")
			}
			c.Timeout = time.Duration(n) * time.Second
		case "herd.stage2":
			switch v {
			case "1", "yes", "true":
				c.Stage2 = true
			case "0", "no", "false", "":
				c.Stage2 = false
			default:
				return bad(k, v, "want 1 or 0")
			}
		case "herd.retries":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 1000 {
				return bad(k, v, "want a count 0-1000")
			}
			c.Retries = max(n, 1)
		}
	}
	if c.Server == "" {
		return Config{}, fmt.Errorf("%w: herd.server=IP:PORT is missing", ErrCmdline)
	}
	return c, nil
}

func printable(s string) bool {
	for _, r := range s {
		if r <= ' ' || r > '~' {
			return false
		}
	}
	return true
}
