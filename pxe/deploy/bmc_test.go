package deploy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/bmc/bmctest"
	"github.com/herd-cluster/herd/inventory"
	"github.com/herd-cluster/herd/pxe/state"
)

// BMCPower through a Redfish BMC: PXE once and power on at the start;
// disk from now on and a power cycle once local. A machine without a
// BMC, or with unusable credentials, is refused before anything is sent.
func TestBMCPower(t *testing.T) {
	dir := t.TempDir()
	f := &bmctest.Redfish{User: "admin", Password: "pw", Power: "Off"}
	addr, cred := f.Start(t, dir, "pw")
	inv, err := inventory.Parse([]byte("machines:\n  - name: node01\n    mac: 52:54:00:00:00:01\n    firmware: uefi\n    bmc: "+addr+"\n    credentials: "+cred+"\n"), dir)
	require.NoError(t, err)
	bp, err := NewBMCPower(inv.Machines)
	require.NoError(t, err)
	ctx := context.Background()

	require.NoError(t, bp.Start(ctx, "52:54:00:00:00:01"))
	f.Lock()
	assert.Equal(t, [4]string{"Pxe", "Once", "UEFI", "On"}, [4]string{f.Target, f.Enabled, f.Mode, f.Power})
	f.Unlock()
	require.NoError(t, bp.Local(ctx, state.Machine{MAC: "52:54:00:00:00:01"}))
	f.Lock()
	assert.Equal(t, [3]string{"Hdd", "Continuous", "UEFI"}, [3]string{f.Target, f.Enabled, f.Mode})
	assert.Equal(t, []string{"On", "ForceRestart"}, f.Resets)
	f.Unlock()
	assert.ErrorContains(t, bp.Start(ctx, "52:54:00:00:00:02"), "no BMC known")

	_, err = NewBMCPower([]inventory.Machine{{Name: "node02", MAC: "52:54:00:00:00:02"}})
	assert.ErrorContains(t, err, "node02 has no bmc")
	open := filepath.Join(dir, "open.cred")
	require.NoError(t, os.WriteFile(open, []byte("user=a\npassword=b\n"), 0o644))
	m := inv.Machines[0]
	m.Credentials = open
	f.Lock()
	before := len(f.Requests)
	f.Unlock()
	_, err = NewBMCPower([]inventory.Machine{m})
	require.Error(t, err)
	assert.True(t, strings.Contains(err.Error(), "node01") && strings.Contains(err.Error(), "chmod 600"), err.Error())
	f.Lock()
	assert.Equal(t, before, len(f.Requests), "nothing sent")
	f.Unlock()
}
