package desc

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// counterRand is a deterministic stand-in for crypto/rand.
type counterRand struct{ n byte }

func (c *counterRand) Read(b []byte) (int, error) {
	for i := range b {
		c.n++
		b[i] = c.n
	}
	return len(b), nil
}

func fixedRand() LayoutOption { return WithRand(&counterRand{}) }

// sparseImage creates a sparse file of size bytes in a test temp dir.
func sparseImage(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(size))
	require.NoError(t, f.Close())
	return p
}

// writeImage applies writes to the file at path.
func writeImage(t *testing.T, path string, writes []Write) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	for _, w := range writes {
		_, err := f.WriteAt(w.Bytes, w.Offset)
		require.NoError(t, err)
	}
}

func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed (Debian package %s): skipping", name, map[string]string{"sfdisk": "fdisk"}[name])
	}
	return p
}

// sfdiskTable is the part of `sfdisk --json` the tests compare.
type sfdiskTable struct {
	PartitionTable struct {
		Label      string `json:"label"`
		ID         string `json:"id"`
		SectorSize int64  `json:"sectorsize"`
		FirstLBA   int64  `json:"firstlba"`
		LastLBA    int64  `json:"lastlba"`
		Partitions []struct {
			Node     string `json:"node"`
			Start    int64  `json:"start"`
			Size     int64  `json:"size"`
			Type     string `json:"type"`
			UUID     string `json:"uuid"`
			Name     string `json:"name"`
			Attrs    string `json:"attrs"`
			Bootable bool   `json:"bootable"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

// sfdiskJSON runs `sfdisk --json` on an image and decodes its answer; it
// also requires `sfdisk --verify` to find no problem.
func sfdiskJSON(t *testing.T, img string) sfdiskTable {
	t.Helper()
	needTool(t, "sfdisk")
	out, err := exec.Command("sfdisk", "--json", img).CombinedOutput()
	require.NoError(t, err, "sfdisk --json: %s", out)
	var st sfdiskTable
	require.NoError(t, json.Unmarshal(out, &st), "%s", out)
	vout, err := exec.Command("sfdisk", "--verify", img).CombinedOutput()
	require.NoError(t, err, "sfdisk --verify: %s", vout)
	require.Contains(t, string(vout), "No errors detected", "sfdisk --verify: %s", vout)
	return st
}

// partNum returns the partition number at the end of an sfdisk node name.
func partNum(node string) int {
	i := len(node)
	for i > 0 && node[i-1] >= '0' && node[i-1] <= '9' {
		i--
	}
	n := 0
	for _, c := range node[i:] {
		n = n*10 + int(c-'0')
	}
	return n
}
