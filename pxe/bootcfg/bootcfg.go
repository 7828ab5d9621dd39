// Package bootcfg generates the text herd hands to booting machines:
// pxelinux configuration files, iPXE scripts and the kernel command line
// the herd agent reads. It does no I/O.
//
// Usage:
//
//	p := bootcfg.Agent{Server: "10.0.0.1:8080", Session: "lab", Disk: "/dev/vda", AgentKey: hex.EncodeToString(agentKey)}
//	cfg := bootcfg.PXELinuxInstall("vmlinuz", "initrd.img", p.KernelArgs())
//	local := bootcfg.PXELinuxLocal()
//	name := bootcfg.PXELinuxFileName("52:54:00:12:34:56") // pxelinux.cfg/01-52-54-00-12-34-56
//
// Public: the boot configuration herd generates, for tools that write their
// own.
package bootcfg

import (
	"errors"
	"fmt"
	"net"
	"path"
	"strconv"
	"strings"

	"github.com/herd-cluster/herd/blockdev/disksel"
)

// ErrBadParam reports a kernel parameter value that would break the
// command line (spaces, quotes, control characters).
var ErrBadParam = errors.New("bootcfg: invalid kernel parameter")

// AgentKeyHexLen is the length of herd.agentkey's value: 32 bytes in hex.
const AgentKeyHexLen = 64

// Agent holds what the herd agent needs on its kernel command line. Zero
// fields take the defaults documented on each field.
type Agent struct {
	Server  string // herd HTTP server, IP:PORT (required)
	Session string // session name (default "herd")
	Port    int    // port the agent listens on for the chain (default 9998)
	Method  string // duplication method (default "raw")
	Disk    string // target disk: a path or a disksel rule (default "auto", the one obvious disk)
	// AgentKey is this machine's agent key in hex (httpboot.AgentKey:
	// 32 bytes, valid for one registration). A boot configuration never
	// carries any other key: the agent gets the chain key in the sealed
	// answer to its registration.
	AgentKey string
	Timeout  int    // seconds the agent waits for the server (default 300)
	Retries  int    // attempts before the agent reboots (default 3)
	Stage2   bool   // the agent first receives a stage 2 through the chain and continues from it
	Console  string // kernel console (default "ttyS0"; "-" for none)
	// BootMAC is the MAC the machine boots from, passed as BOOTIF (the
	// agent brings that NIC up first); empty leaves BOOTIF out.
	BootMAC string
	Extra   string // appended as is
}

// WithDefaults returns a copy of a with the defaults filled in.
func (a Agent) WithDefaults() Agent {
	if a.Session == "" {
		a.Session = "herd"
	}
	if a.Port == 0 {
		a.Port = 9998
	}
	if a.Method == "" {
		a.Method = "raw"
	}
	if a.Disk == "" {
		a.Disk = disksel.Auto
	}
	if a.Timeout == 0 {
		a.Timeout = 300
	}
	if a.Retries == 0 {
		a.Retries = 3
	}
	if a.Console == "" {
		a.Console = "ttyS0"
	}
	return a
}

// Validate checks that every value is safe on a kernel command line.
func (a Agent) Validate() error {
	a = a.WithDefaults()
	if _, _, err := net.SplitHostPort(a.Server); err != nil || a.Server == "" {
		return fmt.Errorf("%w: herd.server %q must be IP:PORT", ErrBadParam, a.Server)
	}
	for k, v := range map[string]string{"herd.server": a.Server, "herd.session": a.Session, "herd.method": a.Method, "herd.disk": a.Disk, "herd.agentkey": a.AgentKey, "console": a.Console} {
		if strings.ContainsFunc(v, func(r rune) bool { return r <= ' ' || r == '"' || r == '\'' || r == '\\' || r > '~' }) {
			return fmt.Errorf("%w: %s=%q", ErrBadParam, k, v)
		}
	}
	if _, err := disksel.Parse(a.Disk); err != nil {
		return fmt.Errorf("%w: herd.disk: %v", ErrBadParam, err)
	}
	if strings.ContainsAny(a.Extra, "\n\r") {
		return fmt.Errorf("%w: extra parameters contain a line break", ErrBadParam)
	}
	if a.AgentKey != "" && (len(a.AgentKey) != AgentKeyHexLen || strings.Trim(a.AgentKey, "0123456789abcdef") != "") {
		return fmt.Errorf("%w: herd.agentkey must be %d lower-case hex digits", ErrBadParam, AgentKeyHexLen)
	}
	if strings.Contains(a.Extra, "herd.key=") || strings.Contains(a.Extra, "herd.agentkey=") {
		return fmt.Errorf("%w: extra parameters must not carry a key (the agent gets its keys from the server)", ErrBadParam)
	}
	if hw, err := net.ParseMAC(a.BootMAC); a.BootMAC != "" && (err != nil || len(hw) != 6) {
		return fmt.Errorf("%w: boot MAC %q", ErrBadParam, a.BootMAC)
	}
	if a.Port < 1 || a.Port > 65535 || a.Timeout < 0 || a.Retries < 0 {
		return fmt.Errorf("%w: port %d, timeout %d, retries %d", ErrBadParam, a.Port, a.Timeout, a.Retries)
	}
	return nil
}

// KernelArgs returns the kernel command line for the agent, defaults
// filled in, in a fixed order.
func (a Agent) KernelArgs() string {
	a = a.WithDefaults()
	parts := []string{
		"herd.server=" + a.Server,
		"herd.session=" + a.Session,
		"herd.port=" + strconv.Itoa(a.Port),
		"herd.method=" + a.Method,
		"herd.disk=" + a.Disk,
	}
	if a.AgentKey != "" {
		parts = append(parts, "herd.agentkey="+a.AgentKey)
	}
	parts = append(parts, "herd.timeout="+strconv.Itoa(a.Timeout), "herd.retries="+strconv.Itoa(a.Retries))
	if hw, err := net.ParseMAC(a.BootMAC); err == nil && len(hw) == 6 {
		parts = append(parts, "BOOTIF=01-"+strings.ReplaceAll(hw.String(), ":", "-"))
	}
	if a.Stage2 {
		parts = append(parts, "herd.stage2=1")
	}
	if a.Console != "-" {
		parts = append(parts, "console="+a.Console)
	}
	if e := strings.TrimSpace(a.Extra); e != "" {
		parts = append(parts, e)
	}
	return strings.Join(parts, " ")
}

// PXELinuxFileName returns the per-machine pxelinux config name for mac,
// "pxelinux.cfg/01-aa-bb-cc-dd-ee-ff". It returns "" for an invalid MAC.
func PXELinuxFileName(mac string) string {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		return ""
	}
	return "pxelinux.cfg/01-" + strings.ReplaceAll(hw.String(), ":", "-")
}

// MACFromPXELinuxFileName is the inverse of PXELinuxFileName: it returns
// the colon-separated MAC and true for "pxelinux.cfg/01-aa-bb-…".
func MACFromPXELinuxFileName(name string) (string, bool) {
	rest, ok := strings.CutPrefix(strings.TrimPrefix(name, "/"), "pxelinux.cfg/01-")
	if !ok || len(rest) != 17 {
		return "", false
	}
	hw, err := net.ParseMAC(rest)
	if err != nil {
		return "", false
	}
	return hw.String(), true
}

// PXELinuxLocal returns a pxelinux config that boots the first local disk.
func PXELinuxLocal() string {
	return "DEFAULT local\nPROMPT 0\nTIMEOUT 0\n\nLABEL local\n  LOCALBOOT 0\n"
}

// PXELinuxInstall returns a pxelinux config that boots kernel with initrd
// and the given command line, without a prompt.
func PXELinuxInstall(kernel, initrd, args string) string {
	return fmt.Sprintf("DEFAULT herd\nPROMPT 0\nTIMEOUT 0\n\nLABEL herd\n  KERNEL %s\n  APPEND initrd=%s %s\n", kernel, initrd, args)
}

// Menu describes the seed document's pxelinux menu: labels local,
// kamethod, dolly, nfs and http beside herd's own label.
type Menu struct {
	Default string // label booted by default (default "local")
	Kernel  string // kernel path relative to the TFTP root
	Initrd  string // initrd path relative to the TFTP root
	Args    string // herd agent command line (Agent.KernelArgs)
	NFSURL  string // server:/directory for the nfs label (omitted when empty)
	HTTPURL string // server:/directory for the http label (omitted when empty)
	Timeout int    // tenths of a second before the default boots (default 50)
	Seed    bool   // include the seed's kamethod and dolly labels
}

// PXELinuxMenu returns a pxelinux config with a prompt and one label per
// method. The herd label boots the agent; local boots the disk.
func PXELinuxMenu(m Menu) string {
	if m.Default == "" {
		m.Default = "local"
	}
	if m.Timeout == 0 {
		m.Timeout = 50
	}
	var b strings.Builder
	fmt.Fprintf(&b, "DEFAULT %s\nPROMPT 1\nTIMEOUT %d\n\n", m.Default, m.Timeout)
	b.WriteString("LABEL local\n  LOCALBOOT 0\n\n")
	fmt.Fprintf(&b, "LABEL herd\n  KERNEL %s\n  APPEND initrd=%s %s\n", m.Kernel, m.Initrd, m.Args)
	if m.Seed {
		fmt.Fprintf(&b, "\nLABEL kamethod\n  KERNEL %s\n  APPEND initrd=%s automatic=method:ka,interface:eth0,network:dhcp %s\n", m.Kernel, m.Initrd, setParam(m.Args, "herd.method", "files"))
		fmt.Fprintf(&b, "\nLABEL dolly\n  KERNEL %s\n  APPEND initrd=%s automatic=method:dolly,dolly_timeout:100,interface:eth0,network:dhcp %s\n", m.Kernel, m.Initrd, m.Args)
	}
	if m.NFSURL != "" {
		srv, dir, _ := strings.Cut(m.NFSURL, ":")
		fmt.Fprintf(&b, "\nLABEL nfs\n  KERNEL %s\n  APPEND initrd=%s automatic=method:nfs,interface:eth0,network:dhcp,server:%s,directory:%s\n", m.Kernel, m.Initrd, srv, dir)
	}
	if m.HTTPURL != "" {
		srv, dir, _ := strings.Cut(m.HTTPURL, ":")
		fmt.Fprintf(&b, "\nLABEL http\n  KERNEL %s\n  APPEND initrd=%s automatic=method:http,interface:auto,network:dhcp,server:%s,directory:%s\n", m.Kernel, m.Initrd, srv, dir)
	}
	return b.String()
}

// IPXEChain returns the script handed to every iPXE client by DHCP: it
// chains to the per-machine script at base + "/ipxe/<mac>", where base is
// "http://IP:PORT".
func IPXEChain(base string) string {
	return "#!ipxe\nchain " + strings.TrimRight(base, "/") + "/ipxe/${net0/mac:hexhyp} || chain " + strings.TrimRight(base, "/") + "/ipxe/${mac:hexhyp}\n"
}

// IPXEInstall returns an iPXE script that boots kernelURL with initrdURL
// and args.
func IPXEInstall(kernelURL, initrdURL, args string) string {
	return fmt.Sprintf("#!ipxe\nkernel %s initrd=initrd.img %s\ninitrd --name initrd.img %s\nboot\n", kernelURL, args, initrdURL)
}

// IPXELocal returns an iPXE script that boots the first local disk, or
// leaves iPXE so the firmware tries its next boot device.
func IPXELocal() string {
	return "#!ipxe\nsanboot --no-describe --drive 0x80 || exit\n"
}

// setParam replaces the value of key=… in the command line args, or
// appends key=value when args has no such parameter.
func setParam(args, key, value string) string {
	fields := strings.Fields(args)
	for i, f := range fields {
		if strings.HasPrefix(f, key+"=") {
			fields[i] = key + "=" + value
			return strings.Join(fields, " ")
		}
	}
	return strings.Join(append(fields, key+"="+value), " ")
}

// GrubConfigPath is the file the GRUB netboot image (Debian's signed
// grubnetx64, the second stage after shim) reads first: its prefix is
// /grub on the TFTP server it came from.
const GrubConfigPath = "grub/grub.cfg"

// GrubMain returns grub/grub.cfg, the same for every machine: it reads
// the machine's own file, GrubFileName of its MAC, and, should that
// fail, leaves GRUB to the firmware.
func GrubMain() string {
	return "# generated by herd: each machine's orders are in grub/herd/MAC.cfg\n" +
		"set timeout=0\n" +
		"source $prefix/herd/${net_default_mac}.cfg\n" +
		"echo \"herd: no orders from the server for ${net_default_mac}; booting the next device\"\n" +
		"exit\n"
}

// GrubFileName returns the per-machine GRUB file for mac,
// "grub/herd/aa:bb:cc:dd:ee:ff.cfg", or "" for an invalid MAC.
func GrubFileName(mac string) string {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		return ""
	}
	return "grub/herd/" + hw.String() + ".cfg"
}

// MACFromGrubFileName is the inverse of GrubFileName.
func MACFromGrubFileName(name string) (string, bool) {
	rest, ok := strings.CutPrefix(strings.TrimPrefix(name, "/"), "grub/herd/")
	if !ok {
		return "", false
	}
	rest, ok = strings.CutSuffix(rest, ".cfg")
	if !ok || len(rest) != 17 {
		return "", false
	}
	hw, err := net.ParseMAC(rest)
	if err != nil || len(hw) != 6 {
		return "", false
	}
	return hw.String(), true
}

// GrubInstall returns a GRUB script that boots kernel and initrd (paths
// on the TFTP server GRUB came from) with args, each argument quoted so
// GRUB expands nothing in it. If they cannot be loaded it says so and
// reboots, so the machine asks the server again.
func GrubInstall(kernel, initrd, args string) string {
	var b strings.Builder
	b.WriteString("echo \"herd: loading the agent\"\n")
	b.WriteString("linux " + grubQuote("/"+strings.TrimPrefix(kernel, "/")))
	for _, a := range strings.Fields(args) {
		b.WriteString(" " + grubQuote(a))
	}
	b.WriteString("\ninitrd " + grubQuote("/"+strings.TrimPrefix(initrd, "/")) + "\nboot\n")
	b.WriteString("echo \"herd: could not boot the agent; rebooting in 10 s\"\nsleep 10\nreboot\n")
	return b.String()
}

// GrubLocalConfigs are the GRUB configurations GrubLocal looks for on
// the machine's disks, in order: those a distribution's EFI GRUB reads
// first (on the EFI system partition), then the one in /boot.
var GrubLocalConfigs = []string{
	"/EFI/debian/grub.cfg", "/EFI/ubuntu/grub.cfg",
	"/boot/grub/grub.cfg", "/grub/grub.cfg",
}

// GrubLocalLoaders are the EFI loaders GrubLocal chain-loads when no
// configuration was found: the removable-media path every UEFI firmware
// boots, then the shims distributions install.
var GrubLocalLoaders = []string{
	"/EFI/BOOT/BOOTX64.EFI",
	"/EFI/debian/shimx64.efi", "/EFI/ubuntu/shimx64.efi",
	"/EFI/redhat/shimx64.efi", "/EFI/rocky/shimx64.efi",
}

// GrubLocal returns a GRUB script that boots the machine's disk. It does
// not leave that to the firmware: after a raw clone the firmware has no
// boot entry for what was written, and GRUB 2.06's exit returns
// success, on which UEFI firmware stops at its menu. Instead it finds
// the first of GrubLocalConfigs on a local disk and runs it, as the
// disk's own GRUB would (under Secure Boot, the kernels it boots are
// verified as the agent's was: they must be signed by a key Debian's
// shim trusts); failing that, it chain-loads the first of
// GrubLocalLoaders (which under Secure Boot does not start: a shim
// cannot be loaded from GRUB there); failing that, it exits. To boot a
// clone whose kernel another vendor signed under Secure Boot, set the
// disk first in the firmware's boot order (through the BMC) instead.
func GrubLocal() string {
	var b strings.Builder
	b.WriteString("echo \"herd: booting from the disk\"\n")
	for _, c := range GrubLocalConfigs {
		fmt.Fprintf(&b, "if search --no-floppy --file --set=root %s; then\n", c)
		fmt.Fprintf(&b, "  echo \"herd: reading %s on ($root)\"\n", c)
		fmt.Fprintf(&b, "  set prefix=($root)%s\n  configfile ($root)%s\nfi\n", path.Dir(c), c)
	}
	for _, l := range GrubLocalLoaders {
		fmt.Fprintf(&b, "if search --no-floppy --file --set=root %s; then\n", l)
		fmt.Fprintf(&b, "  echo \"herd: starting %s on ($root)\"\n", l)
		fmt.Fprintf(&b, "  chainloader ($root)%s\n  boot\nfi\n", l)
	}
	b.WriteString("echo \"herd: nothing this GRUB can boot on this machine's disks; leaving it to the firmware\"\nexit\n")
	return b.String()
}

// grubQuote quotes s for GRUB's shell: inside single quotes nothing is
// expanded; a single quote itself is written as '\”.
func grubQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
