package packaging

import (
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// repo is the repository's top folder, where the Makefile is.
const repo = ".."

// runOut runs a command and returns its combined output, failing the test
// with that output when it exits non-zero.
func runOut(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s %s:\n%s", name, strings.Join(args, " "), out)
	return string(out)
}

// wantCommit is the commit the Makefile stamps into herd: HEAD, with
// "-dirty" when tracked files differ from it; "" outside git.
func wantCommit(t *testing.T) string {
	head, err := exec.Command("git", "-C", repo, "rev-parse", "HEAD").Output()
	if err != nil {
		return ""
	}
	c := strings.TrimSpace(string(head))
	if exec.Command("git", "-C", repo, "diff", "--quiet", "HEAD", "--").Run() != nil {
		c += "-dirty"
	}
	return c
}

// makeVars keeps everything make writes inside dir: the binary, the
// generated pages and completions, the staging tree.
func makeVars(dir string) []string {
	return []string{
		"BIN=" + filepath.Join(dir, "herd"),
		"GEN=" + filepath.Join(dir, "gen"),
		"DEB_ROOT=" + filepath.Join(dir, "deb-root"),
	}
}

// TestDeb builds the package with make deb, reads it back with dpkg-deb,
// installs it into a throwaway root with dpkg, runs the installed herd,
// verifies the installed units with systemd-analyze, then removes and
// purges it.
func TestDeb(t *testing.T) {
	for _, tool := range []string{"dpkg", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed: the Debian package is neither built nor installed", tool)
		}
	}
	dir := t.TempDir()
	deb := filepath.Join(dir, "herd.deb")
	runOut(t, nil, "make", append([]string{"-C", repo, "--no-print-directory", "deb", "DEB=" + deb}, makeVars(dir)...)...)
	_, err := os.Stat(filepath.Join(dir, "deb-root"))
	assert.ErrorIs(t, err, fs.ErrNotExist, "make deb removes its staging tree")

	// What dpkg-deb reads back.
	version := strings.TrimSpace(runOut(t, nil, "sh", filepath.Join(repo, "packaging/debversion.sh")))
	field := func(name string) string {
		return strings.TrimSpace(runOut(t, nil, "dpkg-deb", "--field", deb, name))
	}
	assert.Equal(t, "herd", field("Package"))
	assert.Equal(t, version, field("Version"))
	arch := strings.TrimSpace(runOut(t, nil, "go", "env", "GOARCH"))
	assert.Equal(t, arch, field("Architecture"))
	assert.Contains(t, field("Depends"), "libc6")
	for _, p := range []string{"e2fsprogs", "fdisk", "ipxe", "pxelinux", "ipmitool", "nftables"} {
		assert.Contains(t, strings.Split(field("Recommends"), ", "), p)
	}
	assert.NotContains(t, field("Depends")+field("Recommends"), "qemu", "QEMU is for tests only")
	info := runOut(t, nil, "dpkg-deb", "--info", deb)
	assert.Contains(t, info, "conffiles")
	ctrl := t.TempDir()
	runOut(t, nil, "dpkg-deb", "--control", deb, ctrl)
	cf, err := os.ReadFile(filepath.Join(ctrl, "conffiles"))
	require.NoError(t, err)
	assert.Equal(t, "/etc/herd/herd.yaml\n", string(cf))

	contents := runOut(t, nil, "dpkg-deb", "--contents", deb)
	files := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(contents), "\n") {
		f := strings.Fields(l)
		require.GreaterOrEqual(t, len(f), 6, l)
		assert.Equal(t, "root/root", f[1], "owned by root: %s", l)
		files[strings.TrimPrefix(f[5], ".")] = true
	}
	shipped := []string{
		"/usr/bin/herd",
		"/usr/share/man/man1/herd.1.gz",
		"/usr/share/man/man1/herd-send.1.gz",
		"/usr/share/man/man1/herd-recv.1.gz",
		"/usr/share/man/man1/herd-pxe-serve.1.gz",
		"/usr/share/bash-completion/completions/herd",
		"/usr/share/zsh/vendor-completions/_herd",
		"/usr/share/fish/vendor_completions.d/herd.fish",
		"/usr/lib/systemd/system/herd-pxe.service",
		"/usr/lib/systemd/system/herd-recv@.service",
		"/usr/share/doc/herd/examples/recv.env",
		"/usr/share/doc/herd/examples/herd.yaml",
		"/etc/herd/herd.yaml",
	}
	for _, f := range shipped {
		assert.True(t, files[f], "the package holds %s", f)
	}

	// A throwaway root whose dpkg database knows this machine's libc6,
	// so the package's Depends are checked against it.
	root := t.TempDir()
	admin := filepath.Join(root, "var/lib/dpkg")
	for _, d := range []string{"info", "updates", "triggers"} {
		require.NoError(t, os.MkdirAll(filepath.Join(admin, d), 0o755))
	}
	status, err := exec.Command("dpkg-query", "-s", "libc6").Output()
	require.NoError(t, err, "dpkg-query -s libc6")
	require.NoError(t, os.WriteFile(filepath.Join(admin, "status"), append(status, '\n'), 0o644))
	for _, name := range []string{"libc6.list", "libc6:" + arch + ".list"} {
		require.NoError(t, os.WriteFile(filepath.Join(admin, "info", name), nil, 0o644))
	}
	dpkg := func(args ...string) string {
		t.Helper()
		base := []string{"--root=" + root, "--log=" + filepath.Join(dir, "dpkg.log")}
		if os.Geteuid() != 0 {
			base = append(base, "--force-not-root")
		}
		return runOut(t, nil, "dpkg", append(base, args...)...)
	}
	out := dpkg("-i", deb)
	assert.NotContains(t, out, "warning", "dpkg -i")
	assert.Equal(t, "install ok installed", strings.TrimSpace(runOut(t, nil, "dpkg-query", "--admindir="+admin, "-W", "-f=${Status}", "herd")))
	for _, f := range shipped {
		assert.FileExists(t, filepath.Join(root, f))
	}

	// The installed herd names its commit.
	herd := filepath.Join(root, "usr/bin/herd")
	line := runOut(t, nil, herd, "--version")
	var v struct{ Version, Commit string }
	require.NoError(t, json.Unmarshal([]byte(runOut(t, nil, herd, "version", "--json")), &v))
	if c := wantCommit(t); c != "" {
		assert.Equal(t, c, v.Commit)
		assert.Contains(t, line, "commit "+c)
	} else {
		t.Log("not a git checkout: the commit is not checked")
	}
	assert.NotEmpty(t, v.Version)

	// The man pages are found where man looks.
	if _, err := exec.LookPath("man"); err == nil {
		page := runOut(t, []string{"MANPATH=" + filepath.Join(root, "usr/share/man")}, "man", "-w", "herd-pxe-serve")
		assert.Equal(t, filepath.Join(root, "usr/share/man/man1/herd-pxe-serve.1.gz"), strings.TrimSpace(page))
	}

	// systemd-analyze verify on the installed units, their ExecStart
	// pointed at the installed binary and man at the installed pages
	// (Documentation=man:…). A template is verified through an instance.
	units := t.TempDir()
	for _, u := range []string{"herd-pxe.service", "herd-recv@.service"} {
		b, err := os.ReadFile(filepath.Join(root, "usr/lib/systemd/system", u))
		require.NoError(t, err)
		assert.Contains(t, string(b), "ExecStart=/usr/bin/herd ", "%s runs the packaged binary", u)
		b = []byte(strings.ReplaceAll(string(b), "/usr/bin/herd", herd))
		require.NoError(t, os.WriteFile(filepath.Join(units, u), b, 0o644))
	}
	require.NoError(t, os.Symlink("herd-recv@.service", filepath.Join(units, "herd-recv@sda.service")))
	verifyEnv := []string{"MANPATH=" + filepath.Join(root, "usr/share/man"), "SYSTEMD_LOG_LEVEL=notice"}
	for _, u := range []string{"herd-pxe.service", "herd-recv@sda.service"} {
		out := runOut(t, verifyEnv, "systemd-analyze", "verify", filepath.Join(units, u))
		assert.Empty(t, out, "systemd-analyze verify %s", u)
	}
	// The check has teeth: a unit whose binary is missing fails it.
	bad := filepath.Join(units, "herd-bad.service")
	require.NoError(t, os.WriteFile(bad, []byte("[Service]\nExecStart="+filepath.Join(root, "nope/herd")+" pxe serve\n"), 0o644))
	cmd := exec.Command("systemd-analyze", "verify", bad)
	cmd.Env = append(os.Environ(), verifyEnv...)
	o, err := cmd.CombinedOutput()
	assert.Error(t, err, "systemd-analyze verify of a unit without its binary: %s", o)

	// An edited conffile survives a reinstall; remove keeps it; purge
	// takes everything.
	conf := filepath.Join(root, "etc/herd/herd.yaml")
	require.NoError(t, os.WriteFile(conf, []byte("# this site's settings\n"), 0o644))
	dpkg("-i", deb)
	b, err := os.ReadFile(conf)
	require.NoError(t, err)
	assert.Equal(t, "# this site's settings\n", string(b), "dpkg keeps an edited conffile")

	dpkg("-r", "herd")
	assert.Equal(t, "deinstall ok config-files", strings.TrimSpace(runOut(t, nil, "dpkg-query", "--admindir="+admin, "-W", "-f=${Status}", "herd")))
	assert.NoFileExists(t, herd)
	assert.FileExists(t, conf, "remove keeps the conffile")
	dpkg("--purge", "herd")
	assert.NoFileExists(t, conf, "purge removes the conffile")
	var left []string
	require.NoError(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "var/lib/dpkg" {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			left = append(left, rel)
		}
		return nil
	}))
	assert.Empty(t, left, "files left after purge")
	q := exec.Command("dpkg-query", "--admindir="+admin, "-W", "-f=${Status}", "herd")
	o, _ = q.CombinedOutput()
	assert.NotContains(t, string(o), "installed", "herd is gone from the database")
}

// TestInstall runs make install into a DESTDIR with PREFIX=/usr/local and
// an existing /etc/herd/herd.yaml, which must be kept.
func TestInstall(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "dest")
	conf := filepath.Join(dest, "etc/herd/herd.yaml")
	require.NoError(t, os.MkdirAll(filepath.Dir(conf), 0o755))
	require.NoError(t, os.WriteFile(conf, []byte("mine: true\n"), 0o644))
	out := runOut(t, nil, "make", append([]string{"-C", repo, "--no-print-directory", "install", "DESTDIR=" + dest}, makeVars(dir)...)...)
	assert.Contains(t, out, "keeping "+conf)
	b, err := os.ReadFile(conf)
	require.NoError(t, err)
	assert.Equal(t, "mine: true\n", string(b), "make install never overwrites the site's config")

	for f, mode := range map[string]fs.FileMode{
		"usr/local/bin/herd":                                  0o755,
		"usr/local/share/man/man1/herd.1.gz":                  0o644,
		"usr/local/share/man/man1/herd-pxe-serve.1.gz":        0o644,
		"usr/local/share/bash-completion/completions/herd":    0o644,
		"usr/local/share/zsh/site-functions/_herd":            0o644,
		"usr/local/share/fish/vendor_completions.d/herd.fish": 0o644,
		"usr/local/lib/systemd/system/herd-pxe.service":       0o644,
		"usr/local/lib/systemd/system/herd-recv@.service":     0o644,
		"usr/local/share/doc/herd/examples/herd.yaml":         0o644,
		"usr/local/share/doc/herd/examples/recv.env":          0o644,
	} {
		fi, err := os.Stat(filepath.Join(dest, f))
		if assert.NoError(t, err, f) {
			assert.Equal(t, mode, fi.Mode().Perm(), f)
		}
	}
	unit, err := os.ReadFile(filepath.Join(dest, "usr/local/lib/systemd/system/herd-pxe.service"))
	require.NoError(t, err)
	assert.Contains(t, string(unit), "\nExecStart=/usr/local/bin/herd pxe serve\n", "the unit runs the binary where PREFIX put it")
	assert.NotContains(t, string(unit), "@BINDIR@")

	// The fresh sample is installed when there is none; uninstall leaves
	// /etc alone.
	require.NoError(t, os.Remove(conf))
	runOut(t, nil, "make", append([]string{"-C", repo, "--no-print-directory", "install", "DESTDIR=" + dest}, makeVars(dir)...)...)
	sample, err := os.ReadFile(filepath.Join(repo, "packaging/herd.yaml"))
	require.NoError(t, err)
	b, err = os.ReadFile(conf)
	require.NoError(t, err)
	assert.Equal(t, string(sample), string(b))
	runOut(t, nil, "make", append([]string{"-C", repo, "--no-print-directory", "uninstall", "DESTDIR=" + dest}, makeVars(dir)...)...)
	var left []string
	require.NoError(t, filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dest, p)
			left = append(left, rel)
		}
		return err
	}))
	assert.Equal(t, []string{"etc/herd/herd.yaml"}, left, "uninstall removes all but the config")
}
