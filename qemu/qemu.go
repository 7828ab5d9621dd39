package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Errors of this package.
var (
	// ErrConfig means the Config cannot start a VM.
	ErrConfig = errors.New("qemu: bad VM config")
	// ErrTimeout means an expected console line did not come in time.
	ErrTimeout = errors.New("qemu: timed out waiting for console output")
	// ErrExited means the VM stopped while a caller was waiting on it.
	ErrExited = errors.New("qemu: VM exited")
)

// Binary is the QEMU system emulator this package runs.
const Binary = "qemu-system-x86_64"

// Config describes one VM. Only software emulation (TCG) is used: KVM
// is not usable on the machines herd is tested on.
type Config struct {
	// Name labels the VM in errors and logs.
	Name string
	// Netns, when set, runs QEMU inside that named network namespace
	// (ip netns exec), where Tap must exist.
	Netns string
	// Tap is the tap device of the VM's NIC; empty means no NIC.
	Tap string
	// NIC is the NIC's QEMU model (default "virtio-net-pci"; "e1000e",
	// "vmxnet3", "rtl8139").
	NIC string
	// MAC is the NIC's address (default derived from Name).
	MAC string
	// Before are NICs placed before the main one on the PCI bus (the
	// guest kernel names them first: eth0, …), each on its own tap,
	// none of them bootable: a machine that boots from its second NIC.
	Before []NIC
	// Disk is an image file attached as a disk (raw format).
	Disk string
	// DiskBus is how the disk is attached: "virtio" (default), "nvme",
	// "ahci" (SATA on an ICH9 AHCI controller) or "megasas" (a SCSI
	// disk behind an LSI MegaRAID SAS controller).
	DiskBus string
	// Firmware is "bios" (SeaBIOS, the default), "uefi" (q35 with
	// OVMF) or "secureboot" (q35 with SMM and OVMF with Microsoft's
	// keys enrolled, Secure Boot enforced). UEFI variables live in a
	// copy per VM, in SocketDir.
	Firmware string
	// Kernel, Initrd and Append boot a kernel directly (-kernel).
	Kernel, Initrd, Append string
	// NetBoot boots from the NIC (QEMU's iPXE ROM) when Kernel is
	// empty; otherwise the disk is booted.
	NetBoot bool
	// HTTPBoot, under UEFI, turns OVMF's PXE off (fw_cfg), so that its
	// network boot is UEFI HTTP boot alone.
	HTTPBoot bool
	// MemoryMB is the guest memory (default 300).
	MemoryMB int
	// NoReboot makes QEMU exit instead of rebooting the guest.
	NoReboot bool
	// SocketDir holds the QMP socket (default os.TempDir()).
	SocketDir string
	// Extra arguments appended to QEMU's command line.
	Extra []string
}

// NIC is one more network card.
type NIC struct {
	// Tap is its tap device (required), MAC its address (required).
	Tap, MAC string
	// Model is its QEMU model (default "virtio-net-pci").
	Model string
}

// Args returns QEMU's arguments for c (without the binary) and the QMP
// socket path it will use.
func Args(c Config) (args []string, qmpPath string, err error) {
	if c.Name == "" || strings.ContainsAny(c.Name, "/, \t\n") {
		return nil, "", fmt.Errorf("%w: name %q", ErrConfig, c.Name)
	}
	if c.Initrd != "" && c.Kernel == "" || c.Append != "" && c.Kernel == "" {
		return nil, "", fmt.Errorf("%w: %s: initrd or append without a kernel", ErrConfig, c.Name)
	}
	if c.NetBoot && c.Tap == "" {
		return nil, "", fmt.Errorf("%w: %s: network boot without a tap", ErrConfig, c.Name)
	}
	for _, v := range []string{c.Tap, c.MAC, c.Disk, c.Kernel, c.Initrd} {
		if strings.ContainsAny(v, ",\n") {
			return nil, "", fmt.Errorf("%w: %s: %q contains a comma", ErrConfig, c.Name, v)
		}
	}
	mem := c.MemoryMB
	if mem == 0 {
		mem = 300
	}
	fw, ok := firmwares[c.Firmware]
	if !ok {
		return nil, "", fmt.Errorf("%w: %s: firmware %q (want bios, uefi or secureboot)", ErrConfig, c.Name, c.Firmware)
	}
	nic := c.NIC
	if nic == "" {
		nic = "virtio-net-pci"
	}
	if !nicModels[nic] {
		return nil, "", fmt.Errorf("%w: %s: NIC model %q", ErrConfig, c.Name, nic)
	}
	dir := c.SocketDir
	if dir == "" {
		dir = os.TempDir()
	}
	qmpPath = filepath.Join(dir, "herd-qmp-"+c.Name+".sock")
	args = []string{
		"-name", c.Name, "-accel", "tcg", "-m", strconv.Itoa(mem),
		"-nographic", "-serial", "stdio", "-monitor", "none",
		"-qmp", "unix:" + qmpPath + ",server=on,wait=off",
	}
	if c.NoReboot {
		args = append(args, "-no-reboot")
	}
	if c.HTTPBoot {
		if fw.code == "" {
			return nil, "", fmt.Errorf("%w: %s: HTTP boot needs UEFI firmware", ErrConfig, c.Name)
		}
		args = append(args, "-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=n",
			"-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=n")
	}
	if fw.code != "" {
		machine := "q35"
		if fw.secure {
			machine += ",smm=on"
			args = append(args, "-global", "driver=cfi.pflash01,property=secure,value=on")
		}
		args = append(args, "-machine", machine,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+fw.code,
			"-drive", "if=pflash,format=raw,unit=1,file="+VarsPath(c))
	}
	// Under UEFI the order is by bootindex; SeaBIOS follows -boot.
	netIndex, diskIndex := "", ""
	if fw.code != "" {
		netIndex, diskIndex = ",bootindex=2", ",bootindex=1"
		if c.NetBoot {
			netIndex, diskIndex = ",bootindex=1", ",bootindex=2"
		}
	}
	for i, n := range c.Before {
		model := n.Model
		if model == "" {
			model = "virtio-net-pci"
		}
		if _, err := net.ParseMAC(n.MAC); err != nil || n.Tap == "" || !nicModels[model] || strings.ContainsAny(n.Tap, ",\n") {
			return nil, "", fmt.Errorf("%w: %s: extra NIC %d: tap %q, mac %q, model %q", ErrConfig, c.Name, i, n.Tap, n.MAC, model)
		}
		id := "b" + strconv.Itoa(i)
		args = append(args, "-netdev", "tap,id="+id+",ifname="+n.Tap+",script=no,downscript=no",
			"-device", model+",netdev="+id+",mac="+n.MAC+",romfile=")
	}
	if c.Tap != "" {
		mac := c.MAC
		if mac == "" {
			mac = MACFor(c.Name)
		}
		if _, err := net.ParseMAC(mac); err != nil {
			return nil, "", fmt.Errorf("%w: %s: mac %q: %v", ErrConfig, c.Name, mac, err)
		}
		rom := ""
		if fw.code != "" && nic == "virtio-net-pci" {
			// OVMF drives virtio NICs itself, with a PXE client
			// that gives shim the file sizes it needs; QEMU's
			// iPXE ROM would take over and does not.
			rom = ",romfile="
		}
		args = append(args, "-netdev", "tap,id=n0,ifname="+c.Tap+",script=no,downscript=no",
			"-device", nic+",netdev=n0,mac="+mac+rom+netIndex)
	} else {
		args = append(args, "-nic", "none")
	}
	if c.Disk != "" {
		drive := "file=" + c.Disk + ",format=raw,if=none,id=d0,cache=unsafe"
		switch c.DiskBus {
		case "", "virtio":
			args = append(args, "-drive", drive, "-device", "virtio-blk-pci,drive=d0"+diskIndex)
		case "nvme":
			args = append(args, "-drive", drive, "-device", "nvme,drive=d0,serial=herd-"+c.Name+diskIndex)
		case "ahci":
			args = append(args, "-drive", drive, "-device", "ich9-ahci,id=sata", "-device", "ide-hd,drive=d0,bus=sata.0"+diskIndex)
		case "megasas":
			args = append(args, "-drive", drive, "-device", "megasas,id=raid", "-device", "scsi-hd,drive=d0,bus=raid.0"+diskIndex)
		default:
			return nil, "", fmt.Errorf("%w: %s: disk bus %q (want virtio, nvme, ahci or megasas)", ErrConfig, c.Name, c.DiskBus)
		}
	}
	switch {
	case c.Kernel != "":
		args = append(args, "-kernel", c.Kernel)
		if c.Initrd != "" {
			args = append(args, "-initrd", c.Initrd)
		}
		if c.Append != "" {
			args = append(args, "-append", c.Append)
		}
	case fw.code != "":
		// bootindex decides
	case c.NetBoot:
		args = append(args, "-boot", "order=nc")
	default:
		args = append(args, "-boot", "c")
	}
	return append(args, c.Extra...), qmpPath, nil
}

// firmware is where a firmware's files are (Debian's ovmf package).
type firmware struct {
	code, vars string
	secure     bool
}

var firmwares = map[string]firmware{
	"":           {},
	"bios":       {},
	"uefi":       {code: "/usr/share/OVMF/OVMF_CODE_4M.fd", vars: "/usr/share/OVMF/OVMF_VARS_4M.fd"},
	"secureboot": {code: "/usr/share/OVMF/OVMF_CODE_4M.ms.fd", vars: "/usr/share/OVMF/OVMF_VARS_4M.ms.fd", secure: true},
}

var nicModels = map[string]bool{"virtio-net-pci": true, "e1000e": true, "e1000": true, "vmxnet3": true, "rtl8139": true}

// VarsPath is the VM's own copy of the UEFI variables.
func VarsPath(c Config) string {
	dir := c.SocketDir
	if dir == "" {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "herd-vars-"+c.Name+".fd")
}

// FirmwareFiles returns the files firmware needs on this machine
// (none for BIOS); a test skips when one is missing.
func FirmwareFiles(fw string) []string {
	f := firmwares[fw]
	if f.code == "" {
		return nil
	}
	return []string{f.code, f.vars}
}

// MACFor derives a stable locally administered MAC (52:54:00:…) from a
// name, so the same VM name always gets the same address.
func MACFor(name string) string {
	var h uint32 = 2166136261
	for i := 0; i < len(name); i++ {
		h = (h ^ uint32(name[i])) * 16777619
	}
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", byte(h>>16), byte(h>>8), byte(h))
}

// VM is a running QEMU process with its serial console captured. Its
// methods are safe for concurrent use.
type VM struct {
	cfg     Config
	cmd     *exec.Cmd
	qmpPath string
	con     *console
	done    chan struct{}

	mu      sync.Mutex
	waitErr error
}

// Start launches the VM described by c. The caller must call Kill (a
// test registers it with t.Cleanup right away); ctx cancellation kills
// the VM as well. QEMU is also killed if the calling process dies.
func Start(ctx context.Context, c Config) (*VM, error) {
	return start(ctx, c, newConsole(nil), false)
}

// start is Start with QEMU's output written to con (a BMC's VM shares
// one console across its power-ons). With keepVars the UEFI variables
// outlive the process, as a machine's NVRAM its power cycles: they are
// copied from the firmware's only when missing, and left at exit.
func start(ctx context.Context, c Config, con *console, keepVars bool) (*VM, error) {
	args, qmpPath, err := Args(c)
	if err != nil {
		return nil, err
	}
	os.Remove(qmpPath)
	if fw := firmwares[c.Firmware]; fw.vars != "" && !(keepVars && exists(VarsPath(c))) {
		// Every VM starts from the firmware's pristine variables.
		vars, err := os.ReadFile(fw.vars)
		if err != nil {
			return nil, fmt.Errorf("qemu: %s: UEFI variables: %w (Debian ovmf)", c.Name, err)
		}
		if err := os.WriteFile(VarsPath(c), vars, 0o600); err != nil {
			return nil, fmt.Errorf("qemu: %s: %w", c.Name, err)
		}
	}
	name, argv := Binary, args
	if c.Netns != "" {
		name, argv = "ip", append([]string{"netns", "exec", c.Netns, Binary}, args...)
	}
	cmd := exec.CommandContext(ctx, name, argv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	v := &VM{cfg: c, cmd: cmd, qmpPath: qmpPath, con: con, done: make(chan struct{})}
	// One pipe for both (the same Writer): exec copies it into the
	// console, and Wait returns after the last byte is in.
	cmd.Stdout, cmd.Stderr = con, con
	cmd.Stdin = nil
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s for %s: %w", Binary, c.Name, err)
	}
	go func() {
		err := cmd.Wait()
		v.mu.Lock()
		v.waitErr = err
		v.mu.Unlock()
		// Files first: a caller that saw done may start the next
		// QEMU of this name (a BMC's power cycle).
		os.Remove(qmpPath)
		if firmwares[c.Firmware].vars != "" && !keepVars {
			os.Remove(VarsPath(c))
		}
		close(v.done)
	}()
	return v, nil
}

// Name returns the VM's name.
func (v *VM) Name() string { return v.cfg.Name }

// Console returns everything the VM printed on its serial console (and
// QEMU's own messages) so far.
func (v *VM) Console() string { return v.con.String() }

// ExpectString waits until s appears on the console after the end of
// the previous match (so consecutive calls follow the boot in order)
// and returns the console text from the previous match to the end of
// this one. It fails with ErrTimeout, or ErrExited if QEMU stops first.
func (v *VM) ExpectString(s string, timeout time.Duration) (string, error) {
	return v.con.expect(s, timeout, v.done, v.cfg.Name)
}

// Count returns how many times s appears on the console so far.
func (v *VM) Count(s string) int { return v.con.count(s) }

// Done is closed when QEMU has exited.
func (v *VM) Done() <-chan struct{} { return v.done }

// Wait waits for QEMU to exit, at most timeout, and returns its exit
// error (nil for a clean exit).
func (v *VM) Wait(timeout time.Duration) error {
	select {
	case <-v.done:
		v.mu.Lock()
		defer v.mu.Unlock()
		return v.waitErr
	case <-time.After(timeout):
		return fmt.Errorf("%w: %s still running after %s", ErrTimeout, v.cfg.Name, timeout)
	}
}

// Kill stops QEMU at once and waits for it. It may be called more than
// once and after QEMU exited on its own.
func (v *VM) Kill() {
	select {
	case <-v.done:
		return
	default:
	}
	if p := v.cmd.Process; p != nil {
		syscall.Kill(-p.Pid, syscall.SIGKILL)
		p.Kill()
	}
	<-v.done
}

// Monitor connects to the VM's QMP socket, retrying until timeout while
// QEMU creates it. The caller closes the Monitor.
func (v *VM) Monitor(timeout time.Duration) (*Monitor, error) {
	deadline := time.Now().Add(timeout)
	for {
		m, err := DialQMP(v.qmpPath)
		if err == nil {
			return m, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("qemu: monitor of %s: %w", v.cfg.Name, err)
		}
		select {
		case <-v.done:
			return nil, fmt.Errorf("%w: %s before its monitor answered", ErrExited, v.cfg.Name)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Reset asks QEMU for a hard reset through QMP (system_reset).
func (v *VM) Reset() error {
	m, err := v.Monitor(10 * time.Second)
	if err != nil {
		return err
	}
	defer m.Close()
	_, err = m.Execute("system_reset")
	return err
}

// Quit asks QEMU to exit through QMP and waits up to 10 s for it.
func (v *VM) Quit() error {
	m, err := v.Monitor(10 * time.Second)
	if err != nil {
		return err
	}
	defer m.Close()
	if _, err := m.Execute("quit"); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	v.Wait(10 * time.Second)
	return nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
