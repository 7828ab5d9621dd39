package blockdev

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A receiver's confinement: destinations are taken inside Root and must
// stay there after their links are resolved, must match Allow, and a
// block device is allowed only when a pattern names it.
func TestConfinement(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	require.NoError(t, os.MkdirAll(filepath.Join(root, "images"), 0o755))
	require.NoError(t, os.Symlink("/etc", filepath.Join(root, "images", "escape")))

	c, err := NewConfinement(root, nil)
	require.NoError(t, err)
	real, device, err := c.Target("/images/a.img")
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(c.Root, "images/a.img"), real)
	assert.False(t, device, "never a device under --root alone")
	real, _, err = c.Target("../../images/b.img")
	require.NoError(t, err, "a relative destination is taken inside the root")
	assert.Equal(t, filepath.Join(c.Root, "images/b.img"), real)
	_, _, err = c.Target("/images/escape/passwd")
	assert.ErrorIs(t, err, ErrNotAllowed)
	assert.ErrorContains(t, err, "outside --root")
	assert.Contains(t, c.String(), "under --root "+c.Root)

	c, err = NewConfinement("", []string{"/dev/sd?", dir + "/out/**"})
	require.NoError(t, err)
	_, device, err = c.Target("/dev/sda")
	require.NoError(t, err)
	assert.True(t, device, "a pattern names it")
	_, device, err = c.Target(dir + "/out/x.img")
	require.NoError(t, err)
	assert.False(t, device, "below a directory pattern: never a device")
	_, _, err = c.Target("/etc/passwd")
	assert.ErrorIs(t, err, ErrNotAllowed)
	assert.ErrorContains(t, err, "refused by this node's --allow")
	_, _, err = c.Target("dev/sda")
	assert.ErrorContains(t, err, "not an absolute path")

	var none Confinement
	assert.True(t, none.AllowsNothing())
	assert.Equal(t, "nothing", none.String())
	_, _, err = none.Target("/tmp/x")
	assert.ErrorIs(t, err, ErrNotAllowed)

	_, err = NewConfinement(filepath.Join(dir, "missing"), nil)
	assert.ErrorContains(t, err, "root ")
	f := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(f, nil, 0o644))
	_, err = NewConfinement(f, nil)
	assert.ErrorContains(t, err, "is not a directory")
	_, err = NewConfinement("", []string{"relative/*"})
	assert.ErrorContains(t, err, "allow: ")
}
