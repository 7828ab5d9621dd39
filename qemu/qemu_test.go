package qemu

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestArgsDirectKernel(t *testing.T) {
	args, sock, err := Args(Config{Name: "n1", Tap: "tap0", MAC: "52:54:00:00:00:01", Disk: "/tmp/d.img",
		Kernel: "/k", Initrd: "/i", Append: "console=ttyS0 herd.server=1.2.3.4:80", SocketDir: "/run/x"})
	require.NoError(t, err)
	line := strings.Join(args, " ")
	assert.Equal(t, "/run/x/herd-qmp-n1.sock", sock)
	assert.Contains(t, line, "-accel tcg")
	assert.Contains(t, line, "-m 300")
	assert.Contains(t, line, "-qmp unix:/run/x/herd-qmp-n1.sock,server=on,wait=off")
	assert.Contains(t, line, "-netdev tap,id=n0,ifname=tap0,script=no,downscript=no -device virtio-net-pci,netdev=n0,mac=52:54:00:00:00:01")
	assert.Contains(t, line, "-drive file=/tmp/d.img,format=raw,if=none,id=d0,cache=unsafe -device virtio-blk-pci,drive=d0")
	assert.Contains(t, line, "-kernel /k -initrd /i")
	assert.Equal(t, "console=ttyS0 herd.server=1.2.3.4:80", args[len(args)-1], "append stays one argument")
	assert.NotContains(t, line, "-no-reboot")
	assert.NotContains(t, line, "enable-kvm")
}

func TestArgsBootChoice(t *testing.T) {
	args, _, err := Args(Config{Name: "n", Tap: "t", NetBoot: true, NoReboot: true, MemoryMB: 128})
	require.NoError(t, err)
	line := strings.Join(args, " ")
	assert.Contains(t, line, "-boot order=nc")
	assert.Contains(t, line, "-no-reboot")
	assert.Contains(t, line, "-m 128")
	assert.Contains(t, line, "mac="+MACFor("n"))

	args, _, err = Args(Config{Name: "n", Disk: "d"})
	require.NoError(t, err)
	assert.Contains(t, strings.Join(args, " "), "-nic none")
	assert.Contains(t, strings.Join(args, " "), "-boot c")
}

// TestArgsMachines checks the machines of the hardware matrix: the
// firmware's flash and per-VM variables, Secure Boot's SMM, the disk
// behind its controller, and the boot order by bootindex under UEFI.
func TestArgsMachines(t *testing.T) {
	args, _, err := Args(Config{Name: "sb", Tap: "t", NetBoot: true, Disk: "/d", DiskBus: "nvme", Firmware: "secureboot", SocketDir: "/run/x"})
	require.NoError(t, err)
	line := strings.Join(args, " ")
	assert.Contains(t, line, "-global driver=cfi.pflash01,property=secure,value=on -machine q35,smm=on")
	assert.Contains(t, line, "-drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.ms.fd")
	assert.Contains(t, line, "-drive if=pflash,format=raw,unit=1,file=/run/x/herd-vars-sb.fd")
	assert.Contains(t, line, "-device virtio-net-pci,netdev=n0,mac="+MACFor("sb")+",romfile=,bootindex=1")
	assert.Contains(t, line, "-device nvme,drive=d0,serial=herd-sb,bootindex=2")
	assert.NotContains(t, line, "-boot")

	args, _, err = Args(Config{Name: "u", Tap: "t", NIC: "e1000e", Disk: "/d", DiskBus: "megasas", Firmware: "uefi"})
	require.NoError(t, err)
	line = strings.Join(args, " ")
	assert.Contains(t, line, "-machine q35 ")
	assert.NotContains(t, line, "smm")
	assert.Contains(t, line, "-device e1000e,netdev=n0,mac="+MACFor("u")+",bootindex=2", "iPXE's ROM drives the e1000e")
	assert.Contains(t, line, "-device megasas,id=raid -device scsi-hd,drive=d0,bus=raid.0,bootindex=1", "not net-booting: the disk first")

	args, _, err = Args(Config{Name: "two", Tap: "t2", NetBoot: true, Firmware: "uefi", Before: []NIC{{Tap: "t1", MAC: "52:54:00:00:00:01"}}})
	require.NoError(t, err)
	line = strings.Join(args, " ")
	assert.Contains(t, line, "-netdev tap,id=b0,ifname=t1,script=no,downscript=no -device virtio-net-pci,netdev=b0,mac=52:54:00:00:00:01,romfile= -netdev tap,id=n0,ifname=t2", "the extra NIC comes first and cannot boot")
	_, _, err = Args(Config{Name: "two", Before: []NIC{{Tap: "t1", MAC: "zz"}}})
	assert.ErrorIs(t, err, ErrConfig)

	args, _, err = Args(Config{Name: "h", Tap: "t", Disk: "/d", Firmware: "uefi", HTTPBoot: true})
	require.NoError(t, err)
	line = strings.Join(args, " ")
	assert.Contains(t, line, "-fw_cfg name=opt/org.tianocore/IPv4PXESupport,string=n -fw_cfg name=opt/org.tianocore/IPv6PXESupport,string=n")

	args, _, err = Args(Config{Name: "b", Disk: "/d", DiskBus: "ahci"})
	require.NoError(t, err)
	line = strings.Join(args, " ")
	assert.Contains(t, line, "-device ich9-ahci,id=sata -device ide-hd,drive=d0,bus=sata.0 ")
	assert.NotContains(t, line, "pflash")
}

func TestArgsRefusesBadConfigs(t *testing.T) {
	for name, c := range map[string]Config{
		"no name":          {},
		"name with space":  {Name: "a b"},
		"initrd no kernel": {Name: "a", Initrd: "/i"},
		"netboot no tap":   {Name: "a", NetBoot: true},
		"comma in disk":    {Name: "a", Disk: "/x,format=qcow2"},
		"bad mac":          {Name: "a", Tap: "t", MAC: "zz"},
		"bad firmware":     {Name: "a", Firmware: "coreboot"},
		"bad NIC model":    {Name: "a", Tap: "t", NIC: "ne2k,x=1"},
		"bad disk bus":     {Name: "a", Disk: "d", DiskBus: "floppy"},
		"HTTP boot BIOS":   {Name: "a", Tap: "t", HTTPBoot: true},
	} {
		_, _, err := Args(c)
		assert.ErrorIs(t, err, ErrConfig, name)
	}
}

func TestMACForIsStableAndDistinct(t *testing.T) {
	assert.Equal(t, MACFor("node1"), MACFor("node1"))
	assert.NotEqual(t, MACFor("node1"), MACFor("node2"))
	assert.True(t, strings.HasPrefix(MACFor("x"), "52:54:00:"))
	assert.Len(t, MACFor("x"), 17)
}

func TestParseQMP(t *testing.T) {
	m, err := ParseQMP([]byte(`{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": ["oob"]}}`))
	require.NoError(t, err)
	assert.NotNil(t, m.Greeting)
	m, err = ParseQMP([]byte(`{"return": {}}`))
	require.NoError(t, err)
	assert.Equal(t, "{}", string(m.Return))
	m, err = ParseQMP([]byte(`{"error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}}`))
	require.NoError(t, err)
	assert.Equal(t, "CommandNotFound", m.Error.Class)
	m, err = ParseQMP([]byte(`{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "RESET", "data": {"guest": false}}`))
	require.NoError(t, err)
	assert.Equal(t, "RESET", m.Event)
	_, err = ParseQMP([]byte(`{"hello": 1}`))
	assert.ErrorIs(t, err, ErrQMP)
	_, err = ParseQMP([]byte(`not json`))
	assert.ErrorIs(t, err, ErrQMP)
}

func FuzzParseQMP(f *testing.F) {
	for _, s := range []string{
		`{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": ["oob"]}}`,
		`{"return": {}}`, `{"return": [1,2]}`, `{"error": {"class": "GenericError", "desc": "x"}}`,
		`{"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-reset"}}`, `{}`, `[`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseQMP(b)
		if err == nil && m.Greeting == nil && m.Return == nil && m.Error == nil && m.Event == "" {
			t.Fatalf("accepted an empty message %q", b)
		}
	})
}

// TestVMConsoleResetQuit boots an empty VM (SeaBIOS only, no disk, no
// NIC): its banner is on the captured console, a QMP reset shows the
// banner again and a QMP quit ends QEMU cleanly.
func TestVMConsoleResetQuit(t *testing.T) {
	if testing.Short() {
		t.Skip("starts QEMU: skipped with -short")
	}
	if _, err := exec.LookPath(Binary); err != nil {
		t.Skip(Binary + " is not installed (Debian qemu-system-x86)")
	}
	vm, err := Start(context.Background(), Config{Name: "herdqemutest" + strings.ReplaceAll(t.Name(), "/", "") + strconv.Itoa(os.Getpid()), MemoryMB: 64, SocketDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(vm.Kill)

	_, err = vm.ExpectString("SeaBIOS", 30*time.Second)
	require.NoError(t, err, "console:\n%s", vm.Console())
	require.NoError(t, vm.Reset())
	_, err = vm.ExpectString("SeaBIOS", 30*time.Second)
	require.NoError(t, err, "no second banner after reset; console:\n%s", vm.Console())
	assert.GreaterOrEqual(t, vm.Count("SeaBIOS"), 2)

	_, err = vm.ExpectString("this never appears", 200*time.Millisecond)
	assert.ErrorIs(t, err, ErrTimeout)

	require.NoError(t, vm.Quit())
	select {
	case <-vm.Done():
	default:
		t.Fatal("QEMU still running after quit")
	}
	_, err = vm.ExpectString("this never appears", 5*time.Second)
	assert.True(t, errors.Is(err, ErrExited), "want ErrExited, got %v", err)
}
