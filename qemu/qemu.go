package qemu

import (
	"bufio"
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
	// Tap is the tap device of the VM's virtio NIC; empty means no NIC.
	Tap string
	// MAC is the NIC's address (default derived from Name).
	MAC string
	// Disk is an image file attached as a virtio disk (raw format).
	Disk string
	// Kernel, Initrd and Append boot a kernel directly (-kernel).
	Kernel, Initrd, Append string
	// NetBoot boots from the NIC (QEMU's iPXE ROM) when Kernel is
	// empty; otherwise the disk is booted.
	NetBoot bool
	// MemoryMB is the guest memory (default 300).
	MemoryMB int
	// NoReboot makes QEMU exit instead of rebooting the guest.
	NoReboot bool
	// SocketDir holds the QMP socket (default os.TempDir()).
	SocketDir string
	// Extra arguments appended to QEMU's command line.
	Extra []string
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
	if c.Tap != "" {
		mac := c.MAC
		if mac == "" {
			mac = MACFor(c.Name)
		}
		if _, err := net.ParseMAC(mac); err != nil {
			return nil, "", fmt.Errorf("%w: %s: mac %q: %v", ErrConfig, c.Name, mac, err)
		}
		args = append(args, "-netdev", "tap,id=n0,ifname="+c.Tap+",script=no,downscript=no",
			"-device", "virtio-net-pci,netdev=n0,mac="+mac)
	} else {
		args = append(args, "-nic", "none")
	}
	if c.Disk != "" {
		args = append(args, "-drive", "file="+c.Disk+",format=raw,if=virtio,cache=unsafe")
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
	case c.NetBoot:
		args = append(args, "-boot", "order=nc")
	default:
		args = append(args, "-boot", "c")
	}
	return append(args, c.Extra...), qmpPath, nil
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

	mu      sync.Mutex
	console []byte
	cursor  int
	changed chan struct{} // closed and replaced on every console write
	done    chan struct{}
	waitErr error
}

// Start launches the VM described by c. The caller must call Kill (a
// test registers it with t.Cleanup right away); ctx cancellation kills
// the VM as well. QEMU is also killed if the calling process dies.
func Start(ctx context.Context, c Config) (*VM, error) {
	args, qmpPath, err := Args(c)
	if err != nil {
		return nil, err
	}
	os.Remove(qmpPath)
	name, argv := Binary, args
	if c.Netns != "" {
		name, argv = "ip", append([]string{"netns", "exec", c.Netns, Binary}, args...)
	}
	cmd := exec.CommandContext(ctx, name, argv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	v := &VM{cfg: c, cmd: cmd, qmpPath: qmpPath, changed: make(chan struct{}), done: make(chan struct{})}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.Stdin = nil
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s for %s: %w", Binary, c.Name, err)
	}
	go func() {
		br := bufio.NewReader(pr)
		buf := make([]byte, 4096)
		for {
			n, err := br.Read(buf)
			if n > 0 {
				v.mu.Lock()
				v.console = append(v.console, buf[:n]...)
				close(v.changed)
				v.changed = make(chan struct{})
				v.mu.Unlock()
			}
			if err != nil {
				return
			}
		}
	}()
	go func() {
		err := cmd.Wait()
		pw.Close()
		v.mu.Lock()
		v.waitErr = err
		v.mu.Unlock()
		close(v.done)
		os.Remove(qmpPath)
	}()
	return v, nil
}

// Name returns the VM's name.
func (v *VM) Name() string { return v.cfg.Name }

// Console returns everything the VM printed on its serial console (and
// QEMU's own messages) so far.
func (v *VM) Console() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return string(v.console)
}

// ExpectString waits until s appears on the console after the end of
// the previous match (so consecutive calls follow the boot in order)
// and returns the console text from the previous match to the end of
// this one. It fails with ErrTimeout, or ErrExited if QEMU stops first.
func (v *VM) ExpectString(s string, timeout time.Duration) (string, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		v.mu.Lock()
		i := strings.Index(string(v.console[v.cursor:]), s)
		if i >= 0 {
			from := v.cursor
			v.cursor += i + len(s)
			out := string(v.console[from:v.cursor])
			v.mu.Unlock()
			return out, nil
		}
		changed := v.changed
		v.mu.Unlock()
		select {
		case <-changed:
		case <-v.done:
			v.mu.Lock()
			found := strings.Contains(string(v.console[v.cursor:]), s)
			v.mu.Unlock()
			if found {
				continue
			}
			return "", fmt.Errorf("%w: %s while waiting for %q", ErrExited, v.cfg.Name, s)
		case <-deadline.C:
			return "", fmt.Errorf("%w: %s: %q not seen in %s", ErrTimeout, v.cfg.Name, s, timeout)
		}
	}
}

// Count returns how many times s appears on the console so far.
func (v *VM) Count(s string) int {
	return strings.Count(v.Console(), s)
}

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
