package bmc

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herd-cluster/herd/qemu"
)

// TestIPMIAgainstIPMISim drives a real IPMI-over-LAN BMC, OpenIPMI's
// ipmi_sim in front of an empty QEMU machine (SeaBIOS, no disk, no NIC),
// through ipmitool: power state, boot overrides (seen by the BMC: the
// device the machine is started with next), power on, cycle and off,
// and a wrong password.
func TestIPMIAgainstIPMISim(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ipmi_sim and QEMU: skipped with -short")
	}
	for _, bin := range []string{qemu.IPMISim, qemu.IPMITool, qemu.Binary} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s is not installed (Debian openipmi, ipmitool, qemu-system-x86)", bin)
		}
	}
	addr, err := qemu.FreeBMCAddr()
	if err != nil {
		t.Fatal(err)
	}
	vm, err := qemu.StartBMC(context.Background(), qemu.Config{Name: "herdbmcipmi" + strconv.Itoa(os.Getpid()), MemoryMB: 64},
		qemu.BMCConfig{Addr: addr, User: "herd", Password: "pa$$w0rd", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vm.Kill)
	// ipmi_sim cannot list its cipher suites: name one.
	a, err := ParseAddr("ipmi://" + addr + "?cipher=3")
	if err != nil {
		t.Fatal(err)
	}
	ctl, err := Open(a, Credentials{User: "herd", Password: "pa$$w0rd"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	state := func(want PowerState) {
		t.Helper()
		if st, err := ctl.State(ctx); err != nil || st != want {
			t.Fatalf("state = %v, %v; want %v", st, err, want)
		}
	}
	state(Off)
	if err := ctl.SetBoot(ctx, Boot{Device: PXE}); err != nil {
		t.Fatal(err)
	}
	if vm.BootDevice() != "pxe" {
		t.Fatalf("boot device %q", vm.BootDevice())
	}
	// A cycle of a machine that is off powers it on.
	if err := ctl.Power(ctx, PowerCycle); err != nil {
		t.Fatal(err)
	}
	if _, err := vm.ExpectString("SeaBIOS", time.Minute); err != nil {
		t.Fatal(err)
	}
	state(On)
	if vm.Starts() != 1 {
		t.Fatalf("started %d times", vm.Starts())
	}
	if err := ctl.SetBoot(ctx, Boot{Device: Disk, Persistent: true, EFI: true}); err != nil {
		t.Fatal(err)
	}
	if vm.BootDevice() != "default" {
		t.Fatalf("boot device %q, want default (the disk)", vm.BootDevice())
	}
	if err := ctl.Power(ctx, PowerCycle); err != nil {
		t.Fatal(err)
	}
	if _, err := vm.ExpectString("SeaBIOS", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := ctl.Power(ctx, PowerOff); err != nil {
		t.Fatal(err)
	}
	state(Off)
	if vm.Running() {
		t.Fatal("QEMU still runs after power off")
	}

	bad, _ := Open(a, Credentials{User: "herd", Password: "wrong"})
	_, err = bad.State(ctx)
	if !errors.Is(err, ErrBMC) || !strings.Contains(err.Error(), a.String()) {
		t.Fatalf("wrong password: err = %v", err)
	}
	t.Logf("wrong password: %v", err)
}
