package qemu

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/herd-cluster/herd/internal/ipmitool"
	"github.com/herd-cluster/herd/internal/sh"
)

// The BMC's programs (Debian openipmi and ipmitool).
const (
	IPMISim  = "ipmi_sim"
	IPMITool = "ipmitool"
)

// ErrBMC means the emulated BMC did not start or ended, or ipmitool
// reported a failure.
var ErrBMC = errors.New("qemu: emulated BMC")

// BMCConfig is the emulated BMC of one VM.
type BMCConfig struct {
	// Addr is where the BMC answers IPMI over LAN (UDP): an IP address
	// and a port, e.g. "127.0.0.1:9623"; in the VM's Netns when set.
	Addr string
	// VMPort is the TCP port on 127.0.0.1 (in the VM's Netns: its
	// loopback must be up) where the BMC waits for QEMU's in-band link,
	// the guest's KCS interface; 0 means Addr's port + 1.
	VMPort int
	// User and Password are the BMC's one user, an administrator:
	// 1–15 and 1–19 printable ASCII characters without spaces or
	// quotes (ipmi_sim keeps no more than that and cuts the rest).
	User, Password string
	// Dir holds the BMC's files (a test's TempDir): its config,
	// ipmi_sim's state and log, and console.log, the serial console of
	// every power-on appended. It is created if missing.
	Dir string
	// PowerOn starts the VM at once; else it is off until an IPMI power
	// on (or power cycle).
	PowerOn bool
}

// BMCVM is a VM whose power is controlled by an emulated BMC, OpenIPMI's
// ipmi_sim, reached over IPMI-over-LAN (ipmitool -I lanplus -C 3). The
// VM has the BMC as its IPMI device (ipmi-bmc-extern, isa-ipmi-kcs).
//
// ipmi_sim takes chassis requests through its chassis_control program,
// which hands them to this process: power on starts QEMU (with Args of
// the VM's Config and the boot device set through IPMI), power off
// kills it, reset is a QMP system_reset, soft off an ACPI power button,
// and the boot device is kept for the next power on. (ipmi_sim's own
// startcmd cannot serve: once chassis_control is set, which the boot
// device needs, ipmi_sim sends power requests there too.) QEMU is thus
// this process's child, killed if it dies, as ipmi_sim is. UEFI
// variables live on across power-ons, as a machine's NVRAM does.
//
// ipmi_sim speaks RMCP+ with cipher suites 0 to 3 (0 takes any
// password) but cannot list them: an ipmitool without -C asks, waits
// -N × -R seconds for the answer, then uses suite 3.
//
// Its methods are safe for concurrent use.
type BMCVM struct {
	cfg      Config // the VM, with the BMC's devices
	bmc      BMCConfig
	ctx      context.Context
	sim      *exec.Cmd
	con      *console
	logs     []*os.File // console.log, ipmi_sim.log
	req, ans *os.File   // the control program's FIFOs
	served   chan struct{}
	done     chan struct{}

	mu     sync.Mutex
	vm     *VM
	starts int
	boot   string
	ended  bool
	simErr error
}

// Files of a BMC in BMCConfig.Dir.
const (
	bmcLanConf = "lan.conf"
	bmcEmu     = "bmc.emu"
	bmcControl = "bmc-control"
	bmcReq     = "bmc-ctl.req"
	bmcAns     = "bmc-ctl.ans"
	bmcState   = "state"
	bmcSimLog  = "ipmi_sim.log"
	bmcConsole = "console.log"
)

// bmcPlan is what StartBMC writes and runs, computed without side
// effects.
type bmcPlan struct {
	vm                    Config // with the IPMI devices and SocketDir
	port, vmPort          int
	lanConf, emu, control string
}

// planBMC checks c and b and lays out the BMC's files.
func planBMC(c Config, b BMCConfig) (bmcPlan, error) {
	var p bmcPlan
	bad := func(format string, a ...any) (bmcPlan, error) {
		return bmcPlan{}, fmt.Errorf("%w: %s: BMC: %s", ErrConfig, c.Name, fmt.Sprintf(format, a...))
	}
	if strings.ContainsAny(c.Name, `"'`) {
		return bad("name %q has a quote", c.Name)
	}
	host, port, err := net.SplitHostPort(b.Addr)
	if err != nil {
		return bad("address %q: want IP:port", b.Addr)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.Zone() != "" {
		return bad("address %q: %q is not an IP address", b.Addr, host)
	}
	p.port, err = strconv.Atoi(port)
	if err != nil || p.port < 1 || p.port > 65535 {
		return bad("address %q: bad port", b.Addr)
	}
	p.vmPort = b.VMPort
	if p.vmPort == 0 {
		p.vmPort = p.port + 1
	}
	if p.vmPort < 1 || p.vmPort > 65535 {
		return bad("VM port %d", p.vmPort)
	}
	if !bmcWord(b.User, 15) {
		return bad("user %q: want 1-15 printable ASCII characters, no space or quote", b.User)
	}
	if !bmcWord(b.Password, 19) {
		return bad("password: want 1-19 printable ASCII characters, no space or quote")
	}
	if b.Dir == "" || !filepath.IsAbs(b.Dir) || strings.ContainsAny(b.Dir, `"'\`) || strings.ContainsFunc(b.Dir, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return bad("dir %q: want an absolute path without quotes, backslashes or control characters", b.Dir)
	}
	if len(b.Dir) > 512 {
		return bad("dir %q is too long for ipmi_sim's config lines", b.Dir)
	}

	p.vm = c
	if p.vm.SocketDir == "" {
		p.vm.SocketDir = b.Dir
	}
	p.vm.Extra = append(append([]string(nil), c.Extra...),
		"-chardev", "socket,id=herdbmc,host=127.0.0.1,port="+strconv.Itoa(p.vmPort)+",reconnect=1",
		"-device", "ipmi-bmc-extern,chardev=herdbmc,id=bmc0",
		"-device", "isa-ipmi-kcs,bmc=bmc0")
	if _, _, err := Args(p.vm); err != nil {
		return bmcPlan{}, err
	}

	h := fnv.New128a()
	h.Write([]byte(c.Name))
	control := filepath.Join(b.Dir, bmcControl)
	// ipmi_sim needs a GUID for RMCP+ (lanplus) sessions: without one
	// it refuses every lanplus login. The chassis_control program runs
	// through sh -c, hence the shell quotes inside the config's.
	p.lanConf = fmt.Sprintf(`# ipmi_sim config of the BMC of VM %[1]s, written by herd's qemu.StartBMC.
name "%[1]s"
set_working_mc 0x20
startlan 1
  addr %[2]s %[3]d
  priv_limit admin
  allowed_auths_callback md2 md5 straight
  allowed_auths_user md2 md5 straight
  allowed_auths_operator md2 md5 straight
  allowed_auths_admin md2 md5 straight
  guid %[4]x
endlan
serial 15 127.0.0.1 %[5]d codec VM
chassis_control "%[6]s"
user 2 true "%[7]s" "%[8]s" admin 10 md2 md5 straight
`, c.Name, ip, p.port, h.Sum(nil), p.vmPort, sh.Quote(control), b.User, b.Password)
	p.emu = `# ipmi_sim commands of the BMC, written by herd's qemu.StartBMC: one
# management controller at 0x20, the BMC, with a SEL.
mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x01 1 0 0x9f 0 0x0001
sel_enable 0x20 1000 0x0a
mc_enable 0x20
`
	p.control = `#!/bin/sh
# chassis_control program of the BMC of VM ` + c.Name + `, written by herd's
# qemu.StartBMC. ipmi_sim runs it for each chassis request:
#	bmc-control get power | set power 1 | set reset 1 | set boot pxe | ...
# and reads "power:1" or "boot:pxe" from it, or its exit status. It hands
# the request to the Go process that owns the VM through two FIFOs and
# waits for the answer that carries its own number.
dir=` + sh.Quote(b.Dir) + `
id=$$
printf '%s %s\n' "$id" "$*" >"$dir/` + bmcReq + `" || exit 1
while read -r rid status answer; do
	[ "$rid" = "$id" ] || continue
	[ -z "$answer" ] || printf '%s\n' "$answer"
	[ "$status" = ok ]
	exit
done <"$dir/` + bmcAns + `"
exit 1
`
	return p, nil
}

// bmcWord reports whether s is 1 to max printable ASCII characters
// without spaces or quotes, which ipmi_sim's config takes verbatim.
func bmcWord(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' || s[i] == '"' || s[i] == '\'' {
			return false
		}
	}
	return true
}

// bootConfig returns the VM's config for a power on with the BMC's boot
// device: "pxe" boots from the NIC (if it has one), "default" (ipmitool
// bootdev disk) from the disk; anything else keeps c's choice.
func bootConfig(c Config, boot string) Config {
	switch boot {
	case "pxe":
		if c.Tap != "" {
			c.NetBoot = true
		}
	case "default":
		c.NetBoot = false
	}
	return c
}

// StartBMC starts ipmi_sim as the BMC of the VM c (in c.Netns when set,
// where Addr is) and returns once it listens. The VM is off until an
// IPMI power on, unless b.PowerOn. The caller must call Kill (a test
// registers it with t.Cleanup right away); cancelling ctx or the death
// of the calling process ends the BMC and the VM as well.
func StartBMC(ctx context.Context, c Config, b BMCConfig) (*BMCVM, error) {
	p, err := planBMC(c, b)
	if err != nil {
		return nil, err
	}
	for _, bin := range []string{IPMISim, Binary} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("%w: %s: %v (Debian openipmi, qemu-system-x86)", ErrBMC, c.Name, err)
		}
	}
	fail := func(err error) (*BMCVM, error) {
		return nil, fmt.Errorf("%w: %s: %v", ErrBMC, c.Name, err)
	}
	if err := os.MkdirAll(filepath.Join(b.Dir, bmcState), 0o700); err != nil {
		return fail(err)
	}
	for _, f := range []struct {
		name, text string
		mode       os.FileMode
	}{{bmcLanConf, p.lanConf, 0o600}, {bmcEmu, p.emu, 0o644}, {bmcControl, p.control, 0o700}} {
		if err := os.WriteFile(filepath.Join(b.Dir, f.name), []byte(f.text), f.mode); err != nil {
			return fail(err)
		}
	}
	if firmwares[c.Firmware].vars != "" {
		os.Remove(VarsPath(p.vm)) // the first power on starts from pristine variables
	}

	v := &BMCVM{cfg: p.vm, bmc: b, ctx: ctx, boot: "none", served: make(chan struct{}), done: make(chan struct{})}
	var files []*os.File
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	for _, name := range []string{bmcReq, bmcAns} {
		path := filepath.Join(b.Dir, name)
		os.Remove(path)
		if err := syscall.Mkfifo(path, 0o600); err != nil {
			closeAll()
			return fail(fmt.Errorf("mkfifo %s: %w", path, err))
		}
		// Read and write: opening never blocks, and the FIFO never
		// sees end of file while this process holds it.
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			closeAll()
			return fail(err)
		}
		files = append(files, f)
	}
	v.req, v.ans = files[0], files[1]
	for _, name := range []string{bmcConsole, bmcSimLog} {
		f, err := os.OpenFile(filepath.Join(b.Dir, name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			closeAll()
			return fail(err)
		}
		files = append(files, f)
		v.logs = append(v.logs, f)
	}
	v.con = newConsole(v.logs[0])

	args := []string{"-n", "-c", filepath.Join(b.Dir, bmcLanConf), "-f", filepath.Join(b.Dir, bmcEmu), "-s", filepath.Join(b.Dir, bmcState)}
	name, argv := IPMISim, args
	if c.Netns != "" {
		name, argv = "ip", append([]string{"netns", "exec", c.Netns, IPMISim}, args...)
	}
	cmd := exec.CommandContext(ctx, name, argv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.Stdout, cmd.Stderr = v.logs[1], v.logs[1]
	if err := cmd.Start(); err != nil {
		closeAll()
		return fail(err)
	}
	v.sim = cmd
	go v.serve()
	go v.waitSim()

	if err := v.waitListening(p.port, p.vmPort, 10*time.Second); err != nil {
		v.Kill()
		return nil, err
	}
	if b.PowerOn {
		if err := v.powerOn(); err != nil {
			v.Kill()
			return nil, err
		}
	}
	return v, nil
}

// waitListening waits until ipmi_sim listens on its LAN port (UDP) and
// its VM port (TCP), seen in its own network namespace.
func (v *BMCVM) waitListening(port, vmPort int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	proc := "/proc/" + strconv.Itoa(v.sim.Process.Pid) + "/net/"
	for {
		udp := procListens(readFiles(proc+"udp", proc+"udp6"), port, false)
		tcp := procListens(readFiles(proc+"tcp", proc+"tcp6"), vmPort, true)
		if udp && tcp {
			return nil
		}
		select {
		case <-v.done:
			log, _ := os.ReadFile(filepath.Join(v.bmc.Dir, bmcSimLog))
			return fmt.Errorf("%w: %s: %s exited at start: %v: %s", ErrBMC, v.cfg.Name, IPMISim, v.simExit(), firstLine(string(log)))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %s: %s not listening on UDP %d and TCP %d after %s", ErrBMC, v.cfg.Name, IPMISim, port, vmPort, timeout)
		}
	}
}

func readFiles(paths ...string) string {
	var b strings.Builder
	for _, p := range paths {
		t, _ := os.ReadFile(p)
		b.Write(t)
	}
	return b.String()
}

// procListens reports whether a /proc/net/{udp,tcp}[6] table has a
// socket bound to local port (for TCP: listening).
func procListens(table string, port int, tcp bool) bool {
	for _, line := range strings.Split(table, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		_, hexPort, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(hexPort, 16, 16)
		if err != nil || int(n) != port {
			continue
		}
		if !tcp || f[3] == "0A" {
			return true
		}
	}
	return false
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// waitSim tears everything down once ipmi_sim ends, however it ends: a
// VM without its BMC is powered off.
func (v *BMCVM) waitSim() {
	err := v.sim.Wait()
	// Control programs ipmi_sim left behind, if it crashed.
	syscall.Kill(-v.sim.Process.Pid, syscall.SIGKILL)
	v.mu.Lock()
	v.ended, v.simErr = true, err
	vm := v.vm
	v.mu.Unlock()
	if vm != nil {
		vm.Kill()
	}
	v.req.Close()
	v.ans.Close()
	<-v.served
	for _, f := range v.logs {
		f.Close()
	}
	if firmwares[v.cfg.Firmware].vars != "" {
		os.Remove(VarsPath(v.cfg))
	}
	close(v.done)
}

func (v *BMCVM) simExit() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.simErr
}

// controlRequest is one request of ipmi_sim's chassis_control program:
// "get power", "set power 1", "set boot pxe", "set identify 15 0".
type controlRequest struct {
	ID, Op, Param, Value string
}

// parseControl reads a request line of the control program: its
// number, then its arguments.
func parseControl(line string) (controlRequest, error) {
	f := strings.Fields(line)
	if len(f) == 0 || strings.Trim(f[0], "0123456789") != "" {
		return controlRequest{}, fmt.Errorf("bad control request %q", line)
	}
	r := controlRequest{ID: f[0]}
	if len(f) >= 3 {
		r.Op, r.Param, r.Value = f[1], f[2], strings.Join(f[3:], " ")
	}
	switch {
	case r.Param == "" || strings.Trim(r.Param, "abcdefghijklmnopqrstuvwxyz") != "":
	case r.Op == "get" && r.Value == "":
		return r, nil
	case r.Op == "set" && r.Value != "":
		return r, nil
	}
	return controlRequest{ID: r.ID}, fmt.Errorf("bad control request %q", line)
}

// serve answers the control program's requests until the FIFOs close.
func (v *BMCVM) serve() {
	defer close(v.served)
	sc := bufio.NewScanner(v.req)
	for sc.Scan() {
		r, err := parseControl(sc.Text())
		answer := ""
		if err == nil {
			answer, err = v.control(r)
		}
		if r.ID == "" {
			continue
		}
		reply := r.ID + " ok " + answer
		if err != nil {
			reply = r.ID + " err " + strings.ReplaceAll(err.Error(), "\n", " ")
		}
		v.ans.Write([]byte(reply + "\n"))
	}
}

// bootDevices are the boot devices ipmi_sim names.
var bootDevices = map[string]bool{"none": true, "pxe": true, "default": true, "cdrom": true, "bios": true}

// control does one chassis request and returns what ipmi_sim reads.
func (v *BMCVM) control(r controlRequest) (string, error) {
	switch r.Op + " " + r.Param {
	case "get power":
		if v.Running() {
			return "power:1", nil
		}
		return "power:0", nil
	case "get boot":
		return "boot:" + v.BootDevice(), nil
	case "set power":
		if r.Value == "0" {
			v.powerOff()
			return "", nil
		}
		return "", v.powerOn()
	case "set reset":
		vm := v.current()
		if vm == nil {
			return "", errors.New("powered off")
		}
		return "", vm.Reset()
	case "set shutdown":
		if vm := v.current(); vm != nil {
			m, err := vm.Monitor(5 * time.Second)
			if err != nil {
				return "", err
			}
			defer m.Close()
			_, err = m.Execute("system_powerdown")
			return "", err
		}
		return "", nil
	case "set boot":
		if !bootDevices[r.Value] {
			return "", fmt.Errorf("boot device %q", r.Value)
		}
		v.mu.Lock()
		v.boot = r.Value
		v.mu.Unlock()
		return "", nil
	case "set identify":
		return "", nil
	}
	return "", fmt.Errorf("unknown request %s %s", r.Op, r.Param)
}

// current returns the running VM, or nil.
func (v *BMCVM) current() *VM {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.vm == nil {
		return nil
	}
	select {
	case <-v.vm.Done():
		return nil
	default:
		return v.vm
	}
}

// powerOn starts QEMU unless it runs.
func (v *BMCVM) powerOn() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.ended {
		return fmt.Errorf("%w: %s: BMC ended", ErrBMC, v.cfg.Name)
	}
	if v.vm != nil {
		select {
		case <-v.vm.Done():
		default:
			return nil
		}
	}
	c := bootConfig(v.cfg, v.boot)
	// A line of the harness's own, so a test can tell the boots apart.
	from := "disk"
	if c.NetBoot {
		from = "network"
	}
	fmt.Fprintf(v.con, "\nherd-bmc: power on %d, boot from %s\n", v.starts+1, from)
	vm, err := start(v.ctx, c, v.con, true)
	if err != nil {
		return err
	}
	v.vm = vm
	v.starts++
	return nil
}

// powerOff kills QEMU at once, as a machine loses its power.
func (v *BMCVM) powerOff() {
	if vm := v.current(); vm != nil {
		vm.Kill()
	}
}

// Name returns the VM's name.
func (v *BMCVM) Name() string { return v.cfg.Name }

// Addr returns the BMC's IPMI-over-LAN address (BMCConfig.Addr).
func (v *BMCVM) Addr() string { return v.bmc.Addr }

// Console returns the serial console of every power-on so far,
// appended, as console.log in BMCConfig.Dir has it; each power-on
// starts with a line "herd-bmc: power on N, boot from network|disk".
func (v *BMCVM) Console() string { return v.con.String() }

// ExpectString waits until s appears on the console after the end of
// the previous match, across power-ons, and returns the console text
// from the previous match to the end of this one, as VM.ExpectString.
// It fails with ErrTimeout, or ErrExited once the BMC has ended (Kill)
// and s is not there: a VM that is off may still be powered on.
func (v *BMCVM) ExpectString(s string, timeout time.Duration) (string, error) {
	return v.con.expect(s, timeout, v.done, v.cfg.Name)
}

// Count returns how many times s appears on the console so far.
func (v *BMCVM) Count(s string) int { return v.con.count(s) }

// Starts returns how many times QEMU was started (power on, cycle).
func (v *BMCVM) Starts() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.starts
}

// Running reports whether QEMU runs: the chassis power is on.
func (v *BMCVM) Running() bool { return v.current() != nil }

// BootDevice returns the boot device last set through IPMI: "none"
// (the VM's Config decides), "pxe", "default" (ipmitool's bootdev
// disk), "cdrom" or "bios". It applies from the next power on and
// stays until changed: ipmi_sim does not pass on whether it was meant
// for one boot only.
func (v *BMCVM) BootDevice() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.boot
}

// QEMUPid returns the pid of the running QEMU process (0 when off).
func (v *BMCVM) QEMUPid() int {
	if vm := v.current(); vm != nil && vm.cmd.Process != nil {
		return vm.cmd.Process.Pid
	}
	return 0
}

// SimPid returns the pid of ipmi_sim.
func (v *BMCVM) SimPid() int { return v.sim.Process.Pid }

// Done is closed when the BMC has ended and its VM is off.
func (v *BMCVM) Done() <-chan struct{} { return v.done }

// Kill ends ipmi_sim and the VM at once and waits for both. It may be
// called more than once.
func (v *BMCVM) Kill() {
	select {
	case <-v.done:
		return
	default:
	}
	v.mu.Lock()
	v.ended = true
	v.mu.Unlock()
	syscall.Kill(-v.sim.Process.Pid, syscall.SIGKILL)
	<-v.done
}

// IPMITool runs ipmitool against the BMC as its user, over RMCP+
// (lanplus) with cipher suite 3, in the VM's Netns when set, and
// returns its standard output. The password goes through the
// environment, not the command line. It fails with ErrBMC when ipmitool
// exits non-zero or reports a failure on its standard error (a line
// with "failed", or one that starts with "Error" or "Unable"): ipmitool
// exits 0 after some failed requests ("chassis bootdev floppy" among
// them). Other messages there ("SEL has no entries") are no failure.
func (v *BMCVM) IPMITool(ctx context.Context, args ...string) (string, error) {
	host, port, _ := net.SplitHostPort(v.bmc.Addr)
	argv := append([]string{"-I", "lanplus", "-C", "3", "-H", host, "-p", port, "-U", v.bmc.User, "-E", "-N", "2", "-R", "2"}, args...)
	name := IPMITool
	if v.cfg.Netns != "" {
		name, argv = "ip", append([]string{"netns", "exec", v.cfg.Netns, IPMITool}, argv...)
	}
	cmd := exec.CommandContext(ctx, name, argv...)
	cmd.Env = append(os.Environ(), "IPMI_PASSWORD="+v.bmc.Password)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil || ipmitool.Failed(stderr.String()) {
		return stdout.String(), fmt.Errorf("%w: %s: ipmitool %s: %v: %s", ErrBMC, v.cfg.Name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// FreeBMCAddr returns 127.0.0.1:PORT, a free UDP port for a BMCConfig's
// Addr whose next port (the default VMPort) is free for TCP, in this
// process's network namespace.
func FreeBMCAddr() (string, error) {
	for i := 0; i < 20; i++ {
		u, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		port := u.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+1))
		u.Close()
		if err == nil {
			l.Close()
			return "127.0.0.1:" + strconv.Itoa(port), nil
		}
	}
	return "", fmt.Errorf("%w: no free port pair on 127.0.0.1", ErrBMC)
}
