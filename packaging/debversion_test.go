package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// debVersion runs debversion.sh in dir with args.
func debVersion(t *testing.T, dir string, args ...string) string {
	t.Helper()
	script, err := filepath.Abs("debversion.sh")
	require.NoError(t, err)
	cmd := exec.Command("sh", append([]string{script}, args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	return strings.TrimSpace(string(out))
}

// validVersion checks v with dpkg's own rule when dpkg is there.
func validVersion(t *testing.T, v string) {
	t.Helper()
	assert.Regexp(t, `^[0-9][A-Za-z0-9.+~]*$`, v)
	if _, err := exec.LookPath("dpkg"); err == nil {
		out, err := exec.Command("dpkg", "--validate-version", v).CombinedOutput()
		assert.NoError(t, err, "dpkg --validate-version %q: %s", v, out)
	}
}

func TestDebVersion(t *testing.T) {
	// A repository with one commit, tagged v2.0.0.
	repo := t.TempDir()
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"}, args...)...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "GIT_COMMITTER_DATE=2026-11-30T08:09:10Z", "GIT_AUTHOR_DATE=2026-11-30T08:09:10Z")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "git %v: %s", args, out)
	}
	git("init", "-q")
	require.NoError(t, os.WriteFile(filepath.Join(repo, "f"), []byte("1"), 0o644))
	git("add", "f")
	git("commit", "-qm", "one")
	git("tag", "v2.0.0")

	for in, want := range map[string]string{
		"v1.2.0-5-gabc1234":       "1.2.0+git5.abc1234",
		"v1.2.0-5-gabc1234-dirty": "1.2.0+git5.abc1234+dirty",
		"1.3-rc1-12-g0123abc":     "1.3~rc1+git12.0123abc",
		"release_x-3-gdeadbee":    "0~release.x+git3.deadbee",
		"v2.0.0":                  "2.0.0",
		"v2.0.0-dirty":            "2.0.0+dirty",
		"abc1234":                 "0~git20261130080910.abc1234",
		"abc1234-dirty":           "0~git20261130080910.abc1234+dirty",
	} {
		got := debVersion(t, repo, in)
		assert.Equal(t, want, got, "describe %q", in)
		validVersion(t, got)
	}
	// Without an argument: git describe of the repository.
	assert.Equal(t, "2.0.0", debVersion(t, repo))
	require.NoError(t, os.WriteFile(filepath.Join(repo, "f"), []byte("2"), 0o644))
	assert.Equal(t, "2.0.0+dirty", debVersion(t, repo))
	// Outside git.
	assert.Equal(t, "0~unknown", debVersion(t, t.TempDir()))

	// Whatever a tag is called, the result is a valid Debian version.
	for _, in := range []string{"v 1;rm -rf", "-x-", "_-1-g00", "ü", "v1..2", "--dirty"} {
		got := debVersion(t, repo, in)
		validVersion(t, got)
	}
}
