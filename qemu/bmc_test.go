package qemu

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBMCPlanFiles(t *testing.T) {
	p, err := planBMC(Config{Name: "n1", Extra: []string{"-smp", "2"}},
		BMCConfig{Addr: "127.0.0.1:9623", User: "admin", Password: "pa$$w0rd!", Dir: "/tmp/bmc dir"})
	require.NoError(t, err)
	assert.Equal(t, 9623, p.port)
	assert.Equal(t, 9624, p.vmPort, "the VM port defaults to the LAN port + 1")
	for _, line := range []string{
		`name "n1"`,
		"set_working_mc 0x20",
		"startlan 1\n  addr 127.0.0.1 9623\n  priv_limit admin\n",
		"  guid ", // without it ipmi_sim refuses lanplus logins
		"endlan\nserial 15 127.0.0.1 9624 codec VM\n",
		`chassis_control "'/tmp/bmc dir/bmc-control'"`,
		`user 2 true "admin" "pa$$w0rd!" admin 10 md2 md5 straight`,
	} {
		assert.Contains(t, p.lanConf, line)
	}
	assert.NotContains(t, p.lanConf, "none", "no login without a password")
	assert.NotContains(t, p.lanConf, "startcmd", "chassis_control takes the power requests")
	assert.Contains(t, p.emu, "mc_setbmc 0x20\nmc_add 0x20 ")
	assert.Contains(t, p.emu, "mc_enable 0x20\n")
	assert.Contains(t, p.control, "dir='/tmp/bmc dir'\n")

	args, sock, err := Args(p.vm)
	require.NoError(t, err)
	line := strings.Join(args, " ")
	assert.Contains(t, line, "-smp 2 -chardev socket,id=herdbmc,host=127.0.0.1,port=9624,reconnect=1 -device ipmi-bmc-extern,chardev=herdbmc,id=bmc0 -device isa-ipmi-kcs,bmc=bmc0")
	assert.Equal(t, "/tmp/bmc dir/herd-qmp-n1.sock", sock, "QMP beside the BMC's files")

	p2, err := planBMC(Config{Name: "n1", SocketDir: "/run/x"}, BMCConfig{Addr: "[::1]:623", VMPort: 7000, User: "u", Password: "p", Dir: "/d"})
	require.NoError(t, err)
	assert.Contains(t, p2.lanConf, "addr ::1 623\n")
	assert.Contains(t, p2.lanConf, "serial 15 127.0.0.1 7000 codec VM\n")
	assert.Equal(t, "/run/x", p2.vm.SocketDir)
}

func TestBMCPlanRefusesBadConfigs(t *testing.T) {
	good := BMCConfig{Addr: "127.0.0.1:9623", User: "admin", Password: "secret", Dir: "/tmp/b"}
	for name, change := range map[string]func(*BMCConfig, *Config){
		"address without port":   func(b *BMCConfig, _ *Config) { b.Addr = "127.0.0.1" },
		"host name":              func(b *BMCConfig, _ *Config) { b.Addr = "bmc1:623" },
		"port 0":                 func(b *BMCConfig, _ *Config) { b.Addr = "127.0.0.1:0" },
		"port too big":           func(b *BMCConfig, _ *Config) { b.Addr = "127.0.0.1:70000" },
		"VM port past the range": func(b *BMCConfig, _ *Config) { b.Addr = "127.0.0.1:65535" },
		"no user":                func(b *BMCConfig, _ *Config) { b.User = "" },
		"user with a quote":      func(b *BMCConfig, _ *Config) { b.User = `ad"min` },
		"user with a newline":    func(b *BMCConfig, _ *Config) { b.User = "ad\nmin" },
		"user with a space":      func(b *BMCConfig, _ *Config) { b.User = "ad min" },
		"user too long":          func(b *BMCConfig, _ *Config) { b.User = strings.Repeat("u", 16) },
		"password with a quote":  func(b *BMCConfig, _ *Config) { b.Password = "se'cret" },
		"password too long":      func(b *BMCConfig, _ *Config) { b.Password = strings.Repeat("p", 20) },
		"password not ASCII":     func(b *BMCConfig, _ *Config) { b.Password = "sécret" },
		"no dir":                 func(b *BMCConfig, _ *Config) { b.Dir = "" },
		"relative dir":           func(b *BMCConfig, _ *Config) { b.Dir = "bmc" },
		"dir with a quote":       func(b *BMCConfig, _ *Config) { b.Dir = `/tmp/a"b` },
		"dir with a newline":     func(b *BMCConfig, _ *Config) { b.Dir = "/tmp/a\nb" },
		"VM name with a quote":   func(_ *BMCConfig, c *Config) { c.Name = `n"1` },
		"bad VM config":          func(_ *BMCConfig, c *Config) { c.Firmware = "coreboot" },
	} {
		b, c := good, Config{Name: "n1"}
		change(&b, &c)
		_, err := planBMC(c, b)
		assert.ErrorIs(t, err, ErrConfig, name)
	}
	_, err := planBMC(Config{Name: "n1"}, good)
	assert.NoError(t, err)
	_, err = planBMC(Config{Name: "n1"}, BMCConfig{Addr: "127.0.0.1:9623", User: strings.Repeat("u", 15), Password: strings.Repeat("p", 19), Dir: "/b"})
	assert.NoError(t, err, "the longest user and password ipmi_sim keeps")
}

func TestBootConfig(t *testing.T) {
	c := Config{Name: "n", Tap: "t", Disk: "/d"}
	assert.True(t, bootConfig(c, "pxe").NetBoot)
	assert.False(t, bootConfig(Config{Name: "n", Tap: "t", NetBoot: true}, "default").NetBoot, "bootdev disk")
	assert.True(t, bootConfig(Config{Name: "n", Tap: "t", NetBoot: true}, "none").NetBoot, "no override: the config decides")
	assert.False(t, bootConfig(Config{Name: "n"}, "pxe").NetBoot, "no NIC to boot from")
}

func TestParseControl(t *testing.T) {
	r, err := parseControl("123 get power")
	require.NoError(t, err)
	assert.Equal(t, controlRequest{ID: "123", Op: "get", Param: "power"}, r)
	r, err = parseControl("7 set identify 15 0\n")
	require.NoError(t, err)
	assert.Equal(t, controlRequest{ID: "7", Op: "set", Param: "identify", Value: "15 0"}, r)
	r, err = parseControl("8 set power")
	assert.Error(t, err)
	assert.Equal(t, "8", r.ID, "a bad request still gets its answer")
	for _, bad := range []string{"", "get power", "x1 get power", "1 put power 1", "1 get power 1"} {
		_, err := parseControl(bad)
		assert.Error(t, err, bad)
	}
}

func FuzzParseControl(f *testing.F) {
	for _, s := range []string{"1 get power", "22 set power 1", "3 set boot pxe", "4 set identify 15 0", "5 get", "", " "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := parseControl(s)
		if err == nil && (r.ID == "" || r.Param == "" || (r.Op == "set") != (r.Value != "")) {
			t.Fatalf("accepted %q as %+v", s, r)
		}
	})
}

func TestProcListens(t *testing.T) {
	udp := `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
 1257: 0100007F:2597 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 81245 2 0000000000000000 0
`
	tcp := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:2598 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 81246 1 0000000000000000 100 0 0 10 0
   1: 0100007F:D2A4 0100007F:2598 01 00000000:00000000 00:00000000 00000000     0        0 81300 1 0000000000000000 20 4 30 10 -1
`
	assert.True(t, procListens(udp, 9623, false))
	assert.False(t, procListens(udp, 9624, false))
	assert.True(t, procListens(tcp, 9624, true))
	assert.False(t, procListens(tcp, 53924, true), "a connected socket does not listen")
	assert.False(t, procListens("", 9623, false))
}

// bmcTools skips a test when the BMC's programs are missing.
func bmcTools(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts ipmi_sim and QEMU: skipped with -short")
	}
	for _, bin := range []string{IPMISim, IPMITool, Binary} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s is not installed (Debian openipmi, ipmitool, qemu-system-x86)", bin)
		}
	}
}

// gone reports whether process pid has ended (and been reaped).
func gone(pid int) bool {
	return syscall.Kill(pid, 0) == syscall.ESRCH
}

// leftovers lists the processes whose command line names dir.
func leftovers(dir string) []string {
	var found []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), dir) {
			found = append(found, p+": "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return found
}

// linked reports whether process pid's network namespace has a TCP
// connection to 127.0.0.1:port (QEMU's BMC link to ipmi_sim).
func linked(pid, port int) bool {
	tcp, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/net/tcp")
	want := fmt.Sprintf("0100007F:%04X", port)
	for _, line := range strings.Split(string(tcp), "\n") {
		f := strings.Fields(line)
		if len(f) > 3 && f[2] == want && f[3] == "01" {
			return true
		}
	}
	return false
}

func startTestBMC(t *testing.T, powerOn bool) (*BMCVM, BMCConfig) {
	t.Helper()
	addr, err := FreeBMCAddr()
	require.NoError(t, err)
	b := BMCConfig{Addr: addr, User: "herd", Password: "s3cr3t!", Dir: t.TempDir(), PowerOn: powerOn}
	vm, err := StartBMC(context.Background(), Config{Name: "herdbmc" + strconv.Itoa(os.Getpid()), MemoryMB: 64}, b)
	require.NoError(t, err)
	t.Cleanup(vm.Kill)
	return vm, b
}

// TestBMCPowerCycle drives an empty VM (SeaBIOS only, no disk, no NIC)
// through its BMC with ipmitool: off at start, power on, boot device,
// reset, power cycle, power off, and Kill leaves no process behind.
func TestBMCPowerCycle(t *testing.T) {
	bmcTools(t)
	ctx := context.Background()
	b, cfg := startTestBMC(t, false)
	ipmi := func(args ...string) string {
		t.Helper()
		out, err := b.IPMITool(ctx, args...)
		require.NoError(t, err)
		return out
	}
	sim := b.SimPid()

	assert.Contains(t, ipmi("chassis", "power", "status"), "Chassis Power is off")
	assert.False(t, b.Running())
	assert.Zero(t, b.Starts())
	time.Sleep(300 * time.Millisecond)
	assert.Empty(t, b.Console(), "no QEMU before power on")

	host, port, _ := net.SplitHostPort(cfg.Addr)
	err := exec.Command(IPMITool, "-I", "lanplus", "-C", "3", "-H", host, "-p", port, "-U", cfg.User, "-P", "wrong", "-N", "1", "-R", "1", "chassis", "power", "status").Run()
	assert.Error(t, err, "a wrong password is refused")

	t0 := time.Now()
	ipmi("chassis", "power", "on")
	assert.True(t, b.Running())
	assert.Equal(t, 1, b.Starts())
	assert.Contains(t, ipmi("chassis", "power", "status"), "Chassis Power is on")
	_, err = b.ExpectString("SeaBIOS", 30*time.Second)
	require.NoError(t, err, "console:\n%s", b.Console())
	t.Logf("power on → SeaBIOS banner: %s", time.Since(t0).Round(time.Millisecond))
	first := b.QEMUPid()
	require.NotZero(t, first)
	_, vmPort, _ := net.SplitHostPort(cfg.Addr)
	n, _ := strconv.Atoi(vmPort)
	assert.Eventually(t, func() bool { return linked(first, n+1) }, 10*time.Second, 50*time.Millisecond,
		"QEMU's ipmi-bmc-extern is not connected to ipmi_sim")

	ipmi("chassis", "bootdev", "pxe")
	assert.Contains(t, ipmi("chassis", "bootparam", "get", "5"), "Force PXE")
	assert.Equal(t, "pxe", b.BootDevice())
	ipmi("chassis", "bootdev", "disk", "options=persistent")
	assert.Contains(t, ipmi("chassis", "bootparam", "get", "5"), "Force Boot from default Hard-Drive")
	assert.Equal(t, "default", b.BootDevice())
	_, err = b.IPMITool(ctx, "chassis", "bootdev", "floppy")
	assert.ErrorIs(t, err, ErrBMC, "ipmi_sim has no floppy; ipmitool exits 0 all the same")

	ipmi("chassis", "power", "reset")
	_, err = b.ExpectString("SeaBIOS", 30*time.Second)
	require.NoError(t, err, "no banner after reset; console:\n%s", b.Console())
	assert.Equal(t, 1, b.Starts(), "a reset keeps the QEMU process")
	assert.Equal(t, first, b.QEMUPid())

	ipmi("chassis", "power", "cycle")
	require.Eventually(t, func() bool { return b.Starts() == 2 && b.Running() }, 15*time.Second, 50*time.Millisecond, "no second start after a power cycle")
	_, err = b.ExpectString("SeaBIOS", 30*time.Second)
	require.NoError(t, err, "no banner after power cycle; console:\n%s", b.Console())
	assert.True(t, gone(first), "the first QEMU ended with the power cycle")
	second := b.QEMUPid()
	assert.NotEqual(t, first, second)
	assert.GreaterOrEqual(t, b.Count("SeaBIOS"), 3)

	ipmi("chassis", "power", "off")
	assert.False(t, b.Running())
	assert.True(t, gone(second), "QEMU ended with power off")
	assert.Contains(t, ipmi("chassis", "power", "status"), "Chassis Power is off")
	log, err := os.ReadFile(filepath.Join(cfg.Dir, "console.log"))
	require.NoError(t, err)
	assert.Equal(t, b.Console(), string(log))

	b.Kill()
	b.Kill()
	assert.True(t, gone(sim), "ipmi_sim ended")
	assert.Empty(t, leftovers(cfg.Dir))
	_, err = b.ExpectString("never", 5*time.Second)
	assert.ErrorIs(t, err, ErrExited)
}

// TestBMCPowerOnAtStart starts a BMC whose VM is on at once, and Kill
// ends both while the VM runs.
func TestBMCPowerOnAtStart(t *testing.T) {
	bmcTools(t)
	b, cfg := startTestBMC(t, true)
	assert.True(t, b.Running())
	assert.Equal(t, 1, b.Starts())
	_, err := b.ExpectString("SeaBIOS", 30*time.Second)
	require.NoError(t, err, "console:\n%s", b.Console())
	out, err := b.IPMITool(context.Background(), "chassis", "power", "status")
	require.NoError(t, err)
	assert.Contains(t, out, "Chassis Power is on")

	qemu, sim := b.QEMUPid(), b.SimPid()
	b.Kill()
	assert.True(t, gone(qemu), "QEMU ended with Kill")
	assert.True(t, gone(sim), "ipmi_sim ended with Kill")
	assert.Empty(t, leftovers(cfg.Dir))
	assert.False(t, b.Running())
}

// TestBMCBadStart reports ipmi_sim's own complaint when it cannot start:
// here its LAN port is taken.
func TestBMCBadStart(t *testing.T) {
	bmcTools(t)
	u, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	defer u.Close()
	dir := t.TempDir()
	_, err = StartBMC(context.Background(), Config{Name: "herdbmcbad"}, BMCConfig{Addr: u.LocalAddr().String(), User: "u", Password: "p", Dir: dir})
	assert.ErrorIs(t, err, ErrBMC)
	t.Log(err)
	assert.Empty(t, leftovers(dir))
}
