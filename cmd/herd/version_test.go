package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMakeVersion(t *testing.T) {
	bi := &debug.BuildInfo{
		GoVersion: "go1.99.1",
		Main:      debug.Module{Path: "github.com/herd-cluster/herd", Version: "(devel)"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.time", Value: "2026-12-01T10:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	v := makeVersion(bi, "", "", "")
	assert.Equal(t, versionInfo{
		Version: "devel", Commit: "0123456789abcdef0123456789abcdef01234567-dirty", CommitTime: "2026-12-01T10:00:00Z",
		GoVersion: "go1.99.1", Platform: runtime.GOOS + "/" + runtime.GOARCH,
	}, v)
	assert.Equal(t, "devel (commit 0123456789abcdef0123456789abcdef01234567-dirty, 2026-12-01T10:00:00Z, go1.99.1 "+runtime.GOOS+"/"+runtime.GOARCH+")", v.String())

	bi.Settings[3].Value = "false"
	bi.Main.Version = "v1.4.0"
	v = makeVersion(bi, "", "", "")
	assert.Equal(t, "v1.4.0", v.Version, "go install …@v1.4.0 records the module version")
	assert.Equal(t, "0123456789abcdef0123456789abcdef01234567", v.Commit, "clean tree: no -dirty")

	v = makeVersion(bi, "v2.0.0-3-gabcdef0", "abcdef0123-dirty", "2026-12-02T00:00:00Z")
	assert.Equal(t, "v2.0.0-3-gabcdef0", v.Version, "link-time values win")
	assert.Equal(t, "abcdef0123-dirty", v.Commit)
	assert.Equal(t, "2026-12-02T00:00:00Z", v.CommitTime)

	v = makeVersion(nil, "", "", "")
	assert.Equal(t, "devel", v.Version)
	assert.Equal(t, "unknown", v.Commit)
	assert.Equal(t, "", v.CommitTime)
	assert.Equal(t, runtime.Version(), v.GoVersion)
	b, err := json.Marshal(v)
	require.NoError(t, err)
	assert.NotContains(t, string(b), "commit_time", "no commit time, no field")
}

func TestVersionCommand(t *testing.T) {
	code, stdout, stderr := runHerd(t, "version", "--json")
	require.Equal(t, ExitOK, code, stderr)
	var v versionInfo
	require.NoError(t, json.Unmarshal([]byte(stdout), &v))
	assert.Equal(t, 1, strings.Count(stdout, "\n"), "one JSON object on one line")
	assert.Equal(t, currentVersion(), v)

	code, line, _ := runHerd(t, "--version")
	require.Equal(t, ExitOK, code)
	code, line2, _ := runHerd(t, "version")
	require.Equal(t, ExitOK, code)
	assert.Equal(t, "herd "+v.String()+"\n", line)
	assert.Equal(t, line, line2, "herd --version and herd version print the same line")

	code, _, stderr = runHerd(t, "version", "extra")
	assert.Equal(t, ExitUsage, code, stderr)
	code, _, stderr = runHerd(t, "version", "--jsn")
	assert.Equal(t, ExitUsage, code, stderr)
}

// TestVersionOfBuiltBinary builds herd as the Makefile does (link-time
// values) and, when the toolchain can see this checkout's git directory,
// as plain go build with VCS stamping, and reads both back.
func TestVersionOfBuiltBinary(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "herd")
	ld := "-X main.version=v9.8.7-1-gfeedbee -X main.commit=feedbeefeedbeefeedbeefeedbeefeedbeefeedb -X main.commitTime=2026-11-30T08:00:00Z"
	out, err := exec.Command("go", "build", "-ldflags", ld, "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	out, err = exec.Command(bin, "version", "--json").Output()
	require.NoError(t, err)
	var v versionInfo
	require.NoError(t, json.Unmarshal(out, &v))
	assert.Equal(t, "v9.8.7-1-gfeedbee", v.Version)
	assert.Equal(t, "feedbeefeedbeefeedbeefeedbeefeedbeefeedb", v.Commit)
	assert.Equal(t, "2026-11-30T08:00:00Z", v.CommitTime)
	assert.Equal(t, runtime.Version(), v.GoVersion)
	out, err = exec.Command(bin, "--version").Output()
	require.NoError(t, err)
	assert.Equal(t, "herd v9.8.7-1-gfeedbee (commit feedbeefeedbeefeedbeefeedbeefeedbeefeedb, 2026-11-30T08:00:00Z, "+runtime.Version()+" "+runtime.GOOS+"/"+runtime.GOARCH+")\n", string(out))

	t.Run("vcs", func(t *testing.T) {
		// Go stamps VCS data only from a .git directory at or above the
		// module (not from a git worktree's .git file).
		top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
		if err != nil {
			t.Skip("not a git checkout: no VCS data to read back")
		}
		if fi, err := os.Stat(filepath.Join(strings.TrimSpace(string(top)), ".git")); err != nil || !fi.IsDir() {
			t.Skip("a git worktree: the Go toolchain records no VCS data here (the Makefile passes it at link time)")
		}
		head, err := exec.Command("git", "rev-parse", "HEAD").Output()
		require.NoError(t, err)
		status, err := exec.Command("git", "status", "--porcelain").Output()
		require.NoError(t, err)
		want := strings.TrimSpace(string(head))
		if len(status) > 0 {
			want += "-dirty"
		}
		bin := filepath.Join(dir, "herd-vcs")
		cmd := exec.Command("go", "build", "-buildvcs=true", "-o", bin, ".")
		cmd.Env = append(os.Environ(), "GOFLAGS=")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		out, err = exec.Command(bin, "version", "--json").Output()
		require.NoError(t, err)
		var v versionInfo
		require.NoError(t, json.Unmarshal(out, &v))
		assert.Equal(t, want, v.Commit)
		assert.NotEmpty(t, v.CommitTime)
	})
}
