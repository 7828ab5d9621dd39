package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/bmc/bmctest"
)

// bmcLab is an inventory of three machines: node01 and node02 behind
// Redfish BMCs (node02's with a wrong password in its credentials
// file), node03 without a BMC.
type bmcLab struct {
	dir, inv   string
	bmc1, bmc2 *bmctest.Redfish
}

func newBMCLab(t *testing.T) *bmcLab {
	t.Helper()
	l := &bmcLab{dir: t.TempDir()}
	l.bmc1 = &bmctest.Redfish{User: "admin", Password: "pw1", Power: "Off"}
	l.bmc2 = &bmctest.Redfish{User: "admin", Password: "pw2", Power: "On"}
	a1, c1 := l.bmc1.Start(t, filepath.Join(l.dir), "pw1")
	d2 := filepath.Join(l.dir, "2")
	require.NoError(t, os.Mkdir(d2, 0o755))
	a2, c2 := l.bmc2.Start(t, d2, "not pw2")
	l.inv = filepath.Join(l.dir, "inventory.yaml")
	require.NoError(t, os.WriteFile(l.inv, []byte(fmt.Sprintf(`machines:
  - name: node01
    mac: 52:54:00:00:01:01
    bmc: %s
    credentials: %s
    firmware: uefi
  - name: node02
    mac: 52:54:00:00:01:02
    bmc: %s
    credentials: %s
  - name: node03
    mac: 52:54:00:00:01:03
`, a1, c1, a2, c2)), 0o644))
	return l
}

func TestPower(t *testing.T) {
	l := newBMCLab(t)
	code, out, stderr := runHerd(t, "power", "status", "node01", "--inventory", l.inv)
	assert.Equal(t, ExitOK, code, stderr)
	assert.Regexp(t, `^node01\s+off\n$`, out)

	code, out, _ = runHerd(t, "power", "pxe-once", "node01", "52:54:00:00:01:02", "--inventory", l.inv)
	assert.Equal(t, ExitPartial, code)
	assert.Regexp(t, `node01\s+set\n`, out)
	assert.Regexp(t, `node02\s+KO\s+bmc: redfish://127\.0\.0\.1:\d+: GET /redfish/v1/Systems: 401 Unauthorized: The authentication credentials`, out)
	l.bmc1.Lock()
	assert.Equal(t, [3]string{"Pxe", "Once", "UEFI"}, [3]string{l.bmc1.Target, l.bmc1.Enabled, l.bmc1.Mode})
	l.bmc1.Unlock()

	code, out, _ = runHerd(t, "power", "cycle", "node01", "--inventory", l.inv)
	assert.Equal(t, ExitOK, code, out)
	code, out, _ = runHerd(t, "power", "disk", "node01", "--inventory", l.inv)
	assert.Equal(t, ExitOK, code, out)
	code, out, _ = runHerd(t, "power", "off", "node02", "--inventory", l.inv)
	assert.Equal(t, ExitFailed, code, out)
	l.bmc1.Lock()
	assert.Equal(t, []string{"On"}, l.bmc1.Resets, "a cycle of a machine that is off powers it on")
	assert.Equal(t, [2]string{"Hdd", "Continuous"}, [2]string{l.bmc1.Target, l.bmc1.Enabled})
	l.bmc1.Unlock()

	// Hostlists name several machines.
	code, out, _ = runHerd(t, "power", "status", "node[01-02]", "--inventory", l.inv)
	assert.Equal(t, ExitPartial, code, out)
	assert.Regexp(t, `^node01\s+on\nnode02\s+KO\s+bmc: .*401 Unauthorized`, out)

	// One BMC without an inventory.
	code, out, stderr = runHerd(t, "power", "status", "--bmc", "redfish://127.0.0.1:1", "--credentials", filepath.Join(l.dir, "redfish.cred"))
	assert.Equal(t, ExitFailed, code, stderr)
	assert.Contains(t, out, "connection refused")
}

// Usage errors are found before any BMC is asked anything.
func TestPowerUsage(t *testing.T) {
	l := newBMCLab(t)
	open := filepath.Join(l.dir, "open.cred")
	require.NoError(t, os.WriteFile(open, []byte("user=a\npassword=b\n"), 0o644))
	for name, args := range map[string][]string{
		"unknown action":     {"reboot", "node01", "--inventory", l.inv},
		"no machines":        {"status", "--inventory", l.inv},
		"names and all":      {"status", "node01", "--all", "--inventory", l.inv},
		"no inventory":       {"status", "node01"},
		"unknown machine":    {"status", "node09", "--inventory", l.inv},
		"hostlist beyond":    {"status", "node[01-09]", "--inventory", l.inv},
		"bad hostlist":       {"status", "node[1-", "--inventory", l.inv},
		"machine no bmc":     {"on", "node01", "node03", "--inventory", l.inv},
		"all has no-bmc one": {"on", "--all", "--inventory", l.inv},
		"bad bmc":            {"on", "--bmc", "http://x", "--credentials", open},
		"bmc no credentials": {"on", "--bmc", "ipmi://x"},
		"bmc and inventory":  {"on", "--bmc", "ipmi://x", "--credentials", open, "--inventory", l.inv},
		"credentials open":   {"on", "--bmc", "ipmi://x", "--credentials", open},
		"firmware":           {"on", "--bmc", "ipmi://x", "--credentials", open, "--firmware", "efi"},
	} {
		t.Run(name, func(t *testing.T) {
			code, _, stderr := runHerd(t, append([]string{"power"}, args...)...)
			assert.Equal(t, ExitUsage, code, stderr)
		})
	}
	l.bmc1.Lock()
	defer l.bmc1.Unlock()
	assert.Empty(t, l.bmc1.Requests)
}

// herd deploy --inventory --bmc powers every machine to PXE boot at the
// start; one whose BMC refuses is ko with the BMC's reason and is not
// waited for.
func TestDeployBMC(t *testing.T) {
	l := newBMCLab(t)
	e := newServerEnv(t)
	image := filepath.Join(e.top, "golden.img")
	require.NoError(t, os.WriteFile(image, []byte("image"), 0o644))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d := e.startDeploy(t, ctx, "--inventory", l.inv, "--machines", "node[01-02]", "--bmc", "--image", image, "--wait", "3s")
	assert.Equal(t, ExitFailed, d.wait(t, ctx), d.stderr.String())
	assert.Regexp(t, `52:54:00:00:01:01\s+KO\s+new\s+did not register`, d.stdout.String())
	assert.Regexp(t, `52:54:00:00:01:02\s+KO\s+failed\s+power: boot from pxe: bmc: .*401 Unauthorized`, d.stdout.String())
	assert.Contains(t, d.stderr.String(), "waiting up to 3s for 1 machine(s)")
	l.bmc1.Lock()
	defer l.bmc1.Unlock()
	assert.Equal(t, [4]string{"Pxe", "Once", "UEFI", "On"}, [4]string{l.bmc1.Target, l.bmc1.Enabled, l.bmc1.Mode, l.bmc1.Power})
	assert.Equal(t, []string{"On"}, l.bmc1.Resets)
}

func TestDeployBMCUsage(t *testing.T) {
	l := newBMCLab(t)
	e := newServerEnv(t)
	for name, args := range map[string][]string{
		"bmc without inventory": {"--macs", "52:54:00:00:00:01", "--bmc"},
		"bmc and power-cmd":     {"--inventory", l.inv, "--machines", "node01", "--bmc", "--power-cmd", "true"},
		"machine without bmc":   {"--inventory", l.inv, "--bmc"},
		"macs and inventory":    {"--inventory", l.inv, "--macs", "52:54:00:00:00:01"},
		"machines alone":        {"--machines", "node01", "--macs", "52:54:00:00:00:01"},
		"unknown machine":       {"--inventory", l.inv, "--machines", "node09"},
		"hostlist beyond":       {"--inventory", l.inv, "--machines", "node[01-04]"},
		"bad hostlist":          {"--inventory", l.inv, "--machines", "node[02-01]"},
		"bad inventory":         {"--inventory", e.keyFile},
	} {
		t.Run(name, func(t *testing.T) {
			all := append(append([]string{"deploy", "--key-file", e.keyFile}, e.args()...), "--image", e.keyFile)
			code, _, stderr := runHerd(t, append(all, args...)...)
			assert.Equal(t, ExitUsage, code, stderr)
		})
	}
	l.bmc1.Lock()
	defer l.bmc1.Unlock()
	assert.Empty(t, l.bmc1.Requests)
}

// TestMachinesHostlist: --machines of herd deploy and herd pxe serve is a
// hostlist of the inventory's names.
func TestMachinesHostlist(t *testing.T) {
	l := newBMCLab(t)
	p := pxeFlags{inventory: l.inv, machines: "node[02-03],node01"}
	macs, err := p.macList()
	require.NoError(t, err)
	assert.Equal(t, []string{"52:54:00:00:01:02", "52:54:00:00:01:03", "52:54:00:00:01:01"}, macs)

	p = pxeFlags{inventory: l.inv, machines: "node[3-1]"}
	_, err = p.macList()
	var ue usageError
	require.ErrorAs(t, err, &ue)
	assert.Contains(t, err.Error(), "--machines: inventory: bad hostlist: \"node[3-1]\": range 3-1 goes down")
}
