package blockdev_test

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/blockdev"
	"github.com/herd-cluster/herd/internal/testenv"
)

func TestParseAllowListRefusesBadPatterns(t *testing.T) {
	for _, c := range []struct{ pat, why string }{
		{"", "empty"},
		{"   ", "empty"},
		{"dev/sda", "not an absolute path"},
		{"*.img", "not an absolute path"},
		{"/srv/../etc/**", "'..'"},
		{"/srv/images/..", "'..'"},
		{"/srv/**/x.img", "'**' may only be the last"},
		{"/srv/a**", "'**' may only be the last"},
		{"/srv/**/**", "'**' may only be the last"},
		{"/dev/sd[", "malformed glob"},
		{"/dev/sd[a-", "malformed glob"},
		{`/srv/x\`, "malformed glob"},
		{"/srv/\x00", "NUL byte"},
	} {
		_, err := blockdev.ParseAllowList([]string{"/ok/**", c.pat})
		require.Error(t, err, "%q", c.pat)
		assert.ErrorIs(t, err, blockdev.ErrBadAllowPattern, "%q", c.pat)
		assert.Contains(t, err.Error(), c.why, "%q", c.pat)
		assert.Contains(t, err.Error(), strings.Trim(fmt.Sprintf("%q", c.pat), `"`), "the error names the pattern")
	}
}

func TestAllowListMatch(t *testing.T) {
	for _, c := range []struct {
		pat string
		yes []string
		no  []string
	}{
		{"/dev/sda",
			[]string{"/dev/sda", "/dev//sda", "/dev/./sda", "/dev/sdb/../sda"},
			[]string{"/dev/sdb", "/dev/sda1", "/dev/sda/x", "/dev", "dev/sda", "", "/dev/sd?"}},
		{"/dev/sd?",
			[]string{"/dev/sda", "/dev/sdz", "/dev/sd?"},
			[]string{"/dev/sdaa", "/dev/sd", "/dev/sda/x", "/dev/sda1"}},
		{"/srv/images/*.img",
			[]string{"/srv/images/a.img", "/srv/images/.img", "/srv/images/x/../b.img"},
			[]string{"/srv/images/sub/a.img", "/srv/images/a.img.bak", "/srv/images/a.img/x", "/srv/images", "/srv/other/a.img"}},
		{"/srv/images/**",
			[]string{"/srv/images", "/srv/images/a", "/srv/images/a/b/c.img", "/srv/images/a/../b"},
			[]string{"/srv", "/srv/imagesX", "/srv/images-old/a", "/srv/images/../etc", "/srv/images/../../etc/passwd", "/etc/cron.d/evil"}},
		{"/srv/images/",
			[]string{"/srv/images", "/srv/images/a/b"},
			[]string{"/srv", "/srv/imagesX"}},
		{"/srv/*/img/**",
			[]string{"/srv/x/img", "/srv/x/img/a/b"},
			[]string{"/srv/x/y/img/a", "/srv/img/a"}},
		{"/",
			[]string{"/", "/etc/cron.d/evil", "/dev/sda"},
			[]string{"relative", ""}},
		{"/**",
			[]string{"/", "/etc/shadow"},
			nil},
		{`/srv/a\*b`,
			[]string{"/srv/a*b"},
			[]string{"/srv/axb"}},
	} {
		l, err := blockdev.ParseAllowList([]string{c.pat})
		require.NoError(t, err, c.pat)
		for _, p := range c.yes {
			assert.True(t, l.Match(p), "%s should allow %q", c.pat, p)
		}
		for _, p := range c.no {
			assert.False(t, l.Match(p), "%s should not allow %q", c.pat, p)
		}
	}
	var empty *blockdev.AllowList
	assert.False(t, empty.Match("/x"), "a nil list allows nothing")
	assert.False(t, empty.MatchDevice("/x"))
	assert.False(t, empty.AllowsDevice("/x"))

	// Block devices: only patterns that name paths, not directories.
	dl, err := blockdev.ParseAllowList([]string{"/dev/sda", "/dev/loop*", "/srv/images/**", "/run/x/"})
	require.NoError(t, err)
	for p, want := range map[string]bool{
		"/dev/sda": true, "/dev/loop3": true, "/dev/sdb": false,
		"/srv/images/node-sda": false, "/srv/images": false, "/run/x/disk": false,
	} {
		assert.Equal(t, want, dl.MatchDevice(p), "device %s", p)
		assert.True(t, !want || dl.Match(p), "a device match is a match: %s", p)
	}
	all, err := blockdev.ParseAllowList([]string{"/"})
	require.NoError(t, err)
	assert.True(t, all.Match("/dev/sda"))
	assert.False(t, all.MatchDevice("/dev/sda"), "'/' allows every file, no device")
	l, err := blockdev.ParseAllowList([]string{"/dev/sdb", " /srv/images/** "})
	require.NoError(t, err)
	assert.True(t, l.Match("/dev/sdb"))
	assert.True(t, l.Match("/srv/images/a"), "spaces around a pattern are ignored")
	assert.Equal(t, "/dev/sdb, /srv/images/**", l.String())
}

// tree makes dir/allowed (the allowed directory), dir/outside, and links
// inside allowed that try to leave it.
func tree(t *testing.T) (dir string, l *blockdev.AllowList) {
	t.Helper()
	dir = t.TempDir()
	// The temporary directory may itself be behind a link.
	dir, err := filepath.EvalSymlinks(dir)
	require.NoError(t, err)
	for _, d := range []string{"allowed/sub", "outside/deep"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "allowed/file"), nil, 0o644))
	links := map[string]string{
		"allowed/esc":    filepath.Join(dir, "outside"),      // absolute, out
		"allowed/rel":    "../outside/deep",                  // relative, out
		"allowed/dangle": filepath.Join(dir, "outside/new"),  // dangling, out
		"allowed/in":     "sub",                              // stays inside
		"allowed/loop1":  "loop2",                            // a loop
		"allowed/loop2":  "loop1",                            //
		"alias":          "allowed",                          // the admin's own link to the allowed dir
		"allowed/up":     filepath.Join(dir, "outside/deep"), // ".." after it goes to outside
	}
	for name, target := range links {
		require.NoError(t, os.Symlink(target, filepath.Join(dir, name)))
	}
	l, err = blockdev.ParseAllowList([]string{filepath.Join(dir, "allowed") + "/**"})
	require.NoError(t, err)
	return dir, l
}

func TestAllowListCheckResolvesLinks(t *testing.T) {
	dir, l := tree(t)
	ok := map[string]string{
		"allowed/new.img":          "allowed/new.img",
		"allowed/sub/a/b":          "allowed/sub/a/b",
		"allowed/in/x":             "allowed/sub/x",
		"allowed/missing/../in/x":  "allowed/sub/x",
		"allowed/esc/../allowed/x": "allowed/x",
		"allowed":                  "allowed",
	}
	for in, want := range ok {
		got, err := l.Check(dir + "/" + in) // not Join: it would clean the ".."
		require.NoError(t, err, in)
		assert.Equal(t, filepath.Join(dir, want), got, in)
	}
	refused := map[string]string{
		"allowed/esc/evil":         "outside/evil",
		"allowed/esc":              "outside",
		"allowed/rel/evil":         "outside/deep/evil",
		"allowed/dangle":           "outside/new",
		"allowed/up/../evil":       "outside/evil", // the kernel's "..": after the link
		"allowed/missing/../esc/x": "outside/x",
		"allowed/../outside/x":     "outside/x",
	}
	for in, real := range refused {
		_, err := l.Check(dir + "/" + in)
		require.Error(t, err, in)
		assert.ErrorIs(t, err, blockdev.ErrNotAllowed, in)
		assert.Contains(t, err.Error(), dir+"/"+in, "names the destination")
		assert.Contains(t, err.Error(), filepath.Join(dir, real), "names where it leads")
		assert.Contains(t, err.Error(), filepath.Join(dir, "allowed")+"/**", "names the allow list")
	}
	_, err := l.Check(filepath.Join(dir, "allowed/loop1/x"))
	assert.ErrorContains(t, err, "symbolic links")
	_, err = l.Check(filepath.Join(dir, "allowed/file/x"))
	assert.ErrorContains(t, err, "not a directory")
	_, err = l.Check("allowed/x")
	assert.ErrorIs(t, err, blockdev.ErrNotAllowed, "a relative destination")

	// The administrator's own link in a pattern is followed.
	al, err := blockdev.ParseAllowList([]string{filepath.Join(dir, "alias") + "/**", filepath.Join(dir, "alias/sub/*.img")})
	require.NoError(t, err)
	got, err := al.Check(filepath.Join(dir, "alias/x"))
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "allowed/x"), got)
	_, err = al.Check(filepath.Join(dir, "allowed/sub/a.img"))
	require.NoError(t, err)
	_, err = al.Check(filepath.Join(dir, "alias/esc/x"))
	assert.ErrorIs(t, err, blockdev.ErrNotAllowed, "the sender's link still does not widen it")
}

func TestResolvePath(t *testing.T) {
	dir, _ := tree(t)
	for in, want := range map[string]string{
		"allowed/in/../file":  "allowed/file",
		"allowed/rel/x/y":     "outside/deep/x/y",
		"allowed/./sub//a":    "allowed/sub/a",
		"allowed/no/such/../": "allowed/no",
	} {
		got, err := blockdev.ResolvePath(dir + "/" + in)
		require.NoError(t, err, in)
		assert.Equal(t, filepath.Join(dir, want), got, in)
	}
	got, err := blockdev.ResolvePath("/../../")
	require.NoError(t, err)
	assert.Equal(t, "/", got)
	_, err = blockdev.ResolvePath("rel")
	assert.Error(t, err)
}

// A block device reached through a link in an allowed directory is not
// allowed: only the real path counts (the old AllowDevices matched the
// link's own name too). A literal pattern naming the link is the
// administrator's choice and is followed.
func TestDeviceAllowedByRealPathOnly(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "d.img")
	require.NoError(t, os.WriteFile(img, make([]byte, 1<<20), 0o600))
	dev := testenv.AttachLoop(t, img)
	link := filepath.Join(dir, "disk")
	require.NoError(t, os.Symlink(dev, link))
	_, err := blockdev.OpenFileSink(link, 1024, blockdev.SinkOptions{AllowDevices: []string{dir + "/*"}})
	require.ErrorIs(t, err, blockdev.ErrNotAllowed)
	s, err := blockdev.OpenFileSink(link, 1024, blockdev.SinkOptions{AllowDevices: []string{link}})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	s, err = blockdev.OpenFileSink(link, 1024, blockdev.SinkOptions{AllowDevices: []string{"/dev/loop*"}})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	_, err = blockdev.OpenFileSink(dev, 1024, blockdev.SinkOptions{AllowDevices: []string{"/dev/**"}})
	require.ErrorIs(t, err, blockdev.ErrNotAllowed, "a directory pattern allows no device")
}

func FuzzAllowMatch(f *testing.F) {
	for _, s := range [][2]string{
		{"/srv/images/**", "/srv/images/a.img"},
		{"/srv/images/**", "/srv/images/../../etc/cron.d/evil"},
		{"/srv/images/", "/srv/imagesX"},
		{"/dev/sd?", "/dev/sda"},
		{"/dev/sd?", "/dev/sda/../../etc"},
		{"/srv/images/*.img", "/srv/images/sub/a.img"},
		{"/srv/*/img/**", "/srv/x/img/a"},
		{"/", "/etc/shadow"},
		{"/**", "relative"},
		{"/dev/sd[", "/dev/sda"},
		{"/srv/**/x", "/srv/a/x"},
		{`/srv/a\*`, "/srv/a*"},
		{"/a/../b", "/b"},
		{"", "/"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pat, p string) {
		l, err := blockdev.ParseAllowList([]string{pat})
		if err != nil {
			if !errors.Is(err, blockdev.ErrBadAllowPattern) {
				t.Fatalf("error %v does not wrap ErrBadAllowPattern", err)
			}
			return
		}
		g := strings.TrimSpace(pat)
		if !strings.HasPrefix(g, "/") || containsElem(g, "..") {
			t.Fatalf("accepted pattern %q is relative or holds '..'", pat)
		}
		m := l.Match(p)
		if !strings.HasPrefix(p, "/") {
			if m {
				t.Fatalf("%q matched relative path %q", pat, p)
			}
			return
		}
		clean := path.Clean(p)
		if m != l.Match(clean) {
			t.Fatalf("%q: Match(%q)=%v but Match(%q)=%v", pat, p, m, clean, !m)
		}
		tree := strings.HasSuffix(g, "/") || strings.HasSuffix(g, "/**")
		lit := path.Clean("/" + strings.TrimSuffix(g, "**"))
		if m && !strings.ContainsAny(lit, `*?[\`) {
			// A literal pattern never lets a path leave it, whatever
			// the '..' in the path.
			inside := clean == lit || tree && (lit == "/" || strings.HasPrefix(clean, lit+"/"))
			if !inside {
				t.Fatalf("%q matched %q (clean %q), outside %q", pat, p, clean, lit)
			}
		}
		if m && tree && clean != "/" && !l.Match(clean+"/x") {
			t.Fatalf("%q matched %q but not a path below it", pat, p)
		}
		if d := l.MatchDevice(p); d && (tree || !m) {
			t.Fatalf("%q: MatchDevice(%q) but tree=%v Match=%v", pat, p, tree, m)
		}
	})
}

func containsElem(p, e string) bool {
	for _, x := range strings.Split(p, "/") {
		if x == e {
			return true
		}
	}
	return false
}
