package bmc

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// An Opener reads each credentials file once; a bad one is
// ErrCredentials.
func TestOpenerReadsEachFileOnce(t *testing.T) {
	dir := t.TempDir()
	cred := filepath.Join(dir, "rack1.cred")
	require.NoError(t, os.WriteFile(cred, []byte("user=admin\npassword=pw\n"), 0o600))
	a, err := ParseAddr("ipmi://10.0.0.1?cipher=3")
	require.NoError(t, err)
	var op Opener
	_, err = op.Open(a, cred)
	require.NoError(t, err)
	require.NoError(t, os.Remove(cred))
	_, err = op.Open(a, cred)
	require.NoError(t, err, "the second machine of the rack uses what was read")
	_, err = op.Open(a, filepath.Join(dir, "missing.cred"))
	require.ErrorIs(t, err, ErrCredentials)
}
