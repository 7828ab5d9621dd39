// Package inventory reads the file that lists the machines herd
// provisions: per machine its name, MAC, and how to reach its BMC.
//
//	# /etc/herd/inventory.yaml
//	credentials: bmc.cred        # default for every machine's BMC
//	machines:
//	  - name: node01
//	    mac: 52:54:00:12:34:01
//	    bmc: ipmi://10.0.1.101
//	    firmware: uefi            # bios (default) or uefi: the BMC's boot override
//	  - name: node02
//	    mac: 52:54:00:12:34:02
//	    bmc: redfish://10.0.1.102
//	    credentials: node02.cred  # relative to the inventory's folder
//	    disk: size>=100G          # which disk the agent writes (see --disk)
//	    ip: 10.0.0.102
//	    group: rack1
//
// Every error names the line. Names and MACs are unique; a BMC address,
// a disk rule and a MAC are checked when the file is read, credentials
// files when they are used (bmc.LoadCredentials).
package inventory

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/herd-cluster/herd/blockdev/disksel"
	"github.com/herd-cluster/herd/bmc"
	"github.com/herd-cluster/herd/pxe/state"
)

// MaxFile bounds an inventory file.
const MaxFile = 16 << 20

// ErrInventory is wrapped by every error of an inventory that cannot be
// used.
var ErrInventory = errors.New("inventory")

// Machine is one machine of the inventory.
type Machine struct {
	Name string
	MAC  string // normalized: lower case, colons
	IP   string
	Disk string // a --disk rule
	// BMC is its BMC's address (BMC.Protocol empty: none), reached with
	// the credentials file Credentials (an absolute path).
	BMC         bmc.Addr
	Credentials string
	// Firmware is "bios" or "uefi".
	Firmware string
	Group    string
	// Line is where it starts in the file.
	Line int
}

// HasBMC reports whether the machine's BMC is known.
func (m Machine) HasBMC() bool { return m.BMC.Protocol != "" }

// Inventory is a parsed inventory file.
type Inventory struct {
	Machines []Machine
	// Path is the file it came from.
	Path string
}

// Load reads the inventory file at path.
func Load(path string) (*Inventory, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInventory, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFile+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInventory, path, err)
	}
	if len(data) > MaxFile {
		return nil, fmt.Errorf("%w: %s: larger than %d bytes", ErrInventory, path, MaxFile)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInventory, err)
	}
	inv, err := Parse(data, filepath.Dir(abs))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	inv.Path = path
	return inv, nil
}

// Parse reads an inventory's text; relative credentials paths are taken
// from dir.
func Parse(data []byte, dir string) (*Inventory, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInventory, err)
	}
	inv := &Inventory{}
	if doc.Kind == 0 {
		return nil, fmt.Errorf("%w: empty file", ErrInventory)
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return nil, lineErr(top, "want a mapping with machines:")
	}
	var defCreds string
	var list *yaml.Node
	err := eachKey(top, func(k, v *yaml.Node) error {
		switch k.Value {
		case "credentials":
			s, err := scalar(v)
			defCreds = s
			return err
		case "machines":
			if v.Kind != yaml.SequenceNode {
				return lineErr(v, "machines: want a list")
			}
			list = v
			return nil
		}
		return lineErr(k, fmt.Sprintf("unknown key %q (want machines, credentials)", k.Value))
	})
	if err != nil {
		return nil, err
	}
	if list == nil || len(list.Content) == 0 {
		return nil, fmt.Errorf("%w: no machines", ErrInventory)
	}
	names, macs := map[string]int{}, map[string]int{}
	for _, n := range list.Content {
		m, err := machine(n, defCreds, dir)
		if err != nil {
			return nil, err
		}
		if prev, ok := names[m.Name]; ok {
			return nil, lineErr(n, fmt.Sprintf("name %s already on line %d", m.Name, prev))
		}
		if prev, ok := macs[m.MAC]; ok {
			return nil, lineErr(n, fmt.Sprintf("mac %s already on line %d", m.MAC, prev))
		}
		names[m.Name], macs[m.MAC] = m.Line, m.Line
		inv.Machines = append(inv.Machines, m)
	}
	return inv, nil
}

// machine reads one entry of machines:.
func machine(n *yaml.Node, defCreds, dir string) (Machine, error) {
	m := Machine{Line: n.Line, Firmware: "bios"}
	if n.Kind != yaml.MappingNode {
		return m, lineErr(n, "a machine is a mapping (name:, mac:, …)")
	}
	var bmcAddr, creds string
	err := eachKey(n, func(k, v *yaml.Node) error {
		s, err := scalar(v)
		if err != nil {
			return err
		}
		switch k.Value {
		case "name":
			if !validName(s) {
				return lineErr(v, fmt.Sprintf("name %q: letters, digits, '-', '_' and '.', at most 63", s))
			}
			m.Name = s
		case "mac":
			mac, err := state.NormalizeMAC(s)
			if err != nil {
				return lineErr(v, fmt.Sprintf("mac %q: %v", s, err))
			}
			m.MAC = mac
		case "ip":
			a, err := netip.ParseAddr(s)
			if err != nil || !a.Is4() {
				return lineErr(v, fmt.Sprintf("ip %q: want an IPv4 address", s))
			}
			m.IP = a.String()
		case "disk":
			if _, err := disksel.Parse(s); err != nil {
				return lineErr(v, err.Error())
			}
			m.Disk = s
		case "bmc":
			a, err := bmc.ParseAddr(s)
			if err != nil {
				return lineErr(v, err.Error())
			}
			m.BMC, bmcAddr = a, s
		case "credentials":
			creds = s
		case "firmware":
			if s != "bios" && s != "uefi" {
				return lineErr(v, fmt.Sprintf("firmware %q: want bios or uefi", s))
			}
			m.Firmware = s
		case "group":
			if !validName(s) {
				return lineErr(v, fmt.Sprintf("group %q: letters, digits, '-', '_' and '.', at most 63", s))
			}
			m.Group = s
		default:
			return lineErr(k, fmt.Sprintf("unknown key %q (want name, mac, ip, disk, bmc, credentials, firmware, group)", k.Value))
		}
		return nil
	})
	if err != nil {
		return m, err
	}
	switch {
	case m.Name == "":
		return m, lineErr(n, "machine without a name")
	case m.MAC == "":
		return m, lineErr(n, "machine "+m.Name+" without a mac")
	}
	if creds == "" {
		creds = defCreds
	}
	if bmcAddr != "" && creds == "" {
		return m, lineErr(n, "machine "+m.Name+" has a bmc but no credentials file (credentials:)")
	}
	if creds != "" {
		if !filepath.IsAbs(creds) {
			creds = filepath.Join(dir, creds)
		}
		m.Credentials = creds
	}
	return m, nil
}

// eachKey calls f with every key and value of the mapping n; a key given
// twice is an error.
func eachKey(n *yaml.Node, f func(k, v *yaml.Node) error) error {
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return lineErr(k, "a key must be a word")
		}
		if prev, ok := seen[k.Value]; ok {
			return lineErr(k, fmt.Sprintf("%s already set on line %d", k.Value, prev))
		}
		seen[k.Value] = k.Line
		if err := f(k, v); err != nil {
			return err
		}
	}
	return nil
}

// scalar returns a scalar value as written.
func scalar(v *yaml.Node) (string, error) {
	if v.Kind == yaml.AliasNode {
		return "", lineErr(v, "aliases are not allowed")
	}
	if v.Kind != yaml.ScalarNode {
		return "", lineErr(v, "want a single value")
	}
	if len(v.Value) > 1024 || strings.ContainsAny(v.Value, "\x00\n") {
		return "", lineErr(v, "value too long or with a newline")
	}
	return strings.TrimSpace(v.Value), nil
}

func lineErr(n *yaml.Node, msg string) error {
	return fmt.Errorf("%w: line %d: %s", ErrInventory, n.Line, msg)
}

// validName is a host name label or the like.
func validName(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[0] == '.' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// Select returns the machines named (by name or MAC), in the order
// given; none named: all. An unknown name is an error naming it.
func (inv *Inventory) Select(names []string) ([]Machine, error) {
	if len(names) == 0 {
		return append([]Machine(nil), inv.Machines...), nil
	}
	var out []Machine
	seen := map[string]bool{}
	for _, n := range names {
		m, ok := inv.Lookup(n)
		if !ok {
			return nil, fmt.Errorf("%w: no machine %q in %s", ErrInventory, n, inv.Path)
		}
		if !seen[m.MAC] {
			seen[m.MAC] = true
			out = append(out, m)
		}
	}
	return out, nil
}

// Lookup finds a machine by name or MAC.
func (inv *Inventory) Lookup(nameOrMAC string) (Machine, bool) {
	mac, _ := state.NormalizeMAC(nameOrMAC)
	for _, m := range inv.Machines {
		if m.Name == nameOrMAC || (mac != "" && m.MAC == mac) {
			return m, true
		}
	}
	return Machine{}, false
}
