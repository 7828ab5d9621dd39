package dollycfg

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func parseFile(t *testing.T, name string) *Config {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	require.NoError(t, err)
	cfg, err := Parse(name, data)
	require.NoError(t, err)
	return cfg
}

func TestSeedDollyConfigs(t *testing.T) {
	cfg := parseFile(t, "seed-stage2.cfg")
	assert.Equal(t, Dolly, cfg.Format)
	assert.Equal(t, []Item{{Src: "stage2.img", Dst: "/dev/ram3", Line: 1}}, cfg.Items)
	assert.Equal(t, "servernode", cfg.Server)
	require.Len(t, cfg.Clients, 3)
	assert.Equal(t, "12.12.12.2:9998", cfg.Clients[1].Addr())
	assert.Empty(t, cfg.Warnings)

	cfg = parseFile(t, "seed-disk.cfg")
	assert.Equal(t, "/dev/sda", cfg.Items[0].Dst)
	var hosts []string
	for _, c := range cfg.Clients {
		hosts = append(hosts, c.Host)
	}
	assert.Equal(t, []string{"node2", "node3", "node4", "node5"}, hosts)
}

func TestSeedDollyPlusConfig(t *testing.T) {
	cfg := parseFile(t, "seed-dollyplus.cfg")
	assert.Equal(t, DollyPlus, cfg.Format)
	assert.Equal(t, []Item{
		{Src: "/dev/hda1", Dst: "/tmp/dev/hda1", Line: 2},
		{Src: "/data/file.gz", Dst: "/data/file", Cook: true, Line: 3},
		{Src: "boot.tar.Z", Dst: "/boot", Cook: true, Line: 4},
	}, cfg.Items)
	assert.Equal(t, "max5.paris", cfg.Server)
	assert.Len(t, cfg.Clients, 3)
}

func TestCommentsPortsAndCompressed(t *testing.T) {
	cfg, err := Parse("x", []byte(`# golden image
compressed infile golden.img.gz
outfile /dev/vda
segsize 65536
fanout 2
server gold
   # indented comment
firstclient 10.0.0.1:9000
lastclient [fd00::2]
clients 2
10.0.0.1:9000
[fd00::2]
endconfig
`))
	require.NoError(t, err)
	assert.True(t, cfg.Items[0].Cook, "compressed infile to plain outfile is decompressed on the node")
	assert.Equal(t, 65536, cfg.SegSize)
	assert.Equal(t, "10.0.0.1:9000", cfg.Clients[0].Addr())
	assert.Equal(t, "[fd00::2]:9998", cfg.Clients[1].Addr())
	require.Len(t, cfg.Warnings, 1)
	assert.Contains(t, cfg.Warnings[0], "line 5: fanout 2")
}

func TestWarningsForMisnamedFirstAndLast(t *testing.T) {
	cfg, err := Parse("x", []byte("infile a\noutfile b\nserver s\nfirstclient n9\nlastclient n2\nclients 2\nn1\nn2\nendconfig\n"))
	require.NoError(t, err)
	require.Len(t, cfg.Warnings, 1)
	assert.Contains(t, cfg.Warnings[0], "line 4: firstclient n9")
}

func TestErrorsNameTheLine(t *testing.T) {
	hosts := "server s\nfirstclient a\nlastclient b\nclients 2\na\nb\nendconfig\n"
	cases := []struct {
		name, cfg string
		line      int
		msg       string
	}{
		{"empty", "# nothing\n", 0, "empty config"},
		{"no infile", "outfile b\n" + hosts, 1, "'outfile' without 'infile'"},
		{"no outfile", "infile a\n" + hosts, 1, "'infile' without 'outfile'"},
		{"two infiles", "infile a\ninfile c\noutfile b\n" + hosts, 2, "second 'infile'"},
		{"split", "infile a\noutfile b split 3\n" + hosts, 2, "'split' is not supported"},
		{"unknown first", "hello\n", 1, "expected 'infile PATH'"},
		{"iofiles count", "iofiles x\n", 1, "non-negative number"},
		{"iofiles short", "iofiles 2\na > b\nserver s\n", 3, "expected item 2 of 2"},
		{"iofiles long", "iofiles 1\na > b\nc > d\n" + hosts, 3, "more item lines"},
		{"triple", "iofiles 1\na >>> b\n" + hosts, 2, "'>>>' is not an operator"},
		{"no dst", "iofiles 1\na >\n" + hosts, 2, "needs a source and a destination"},
		{"missing server", "infile a\noutfile b\nfirstclient a\n", 3, "expected 'server'"},
		{"server arg", "infile a\noutfile b\nserver\n", 3, "expected 'server HOST'"},
		{"clients short", "infile a\noutfile b\nserver s\nfirstclient a\nlastclient b\nclients 3\na\nb\nendconfig\n", 9, "only 2 client lines"},
		{"clients long", "infile a\noutfile b\nserver s\nfirstclient a\nlastclient b\nclients 1\na\nb\nendconfig\n", 8, "expected 'endconfig' after 1 clients"},
		{"no endconfig", "infile a\noutfile b\nserver s\nfirstclient a\nlastclient b\nclients 1\na\n", 7, "missing 'endconfig'"},
		{"after end", "infile a\noutfile b\n" + hosts + "junk\n", 10, "text after 'endconfig'"},
		{"dup client", "infile a\noutfile b\nserver s\nfirstclient a\nlastclient a\nclients 2\na\na\nendconfig\n", 8, "listed twice (also on line 7)"},
		{"bad port", "infile a\noutfile b\nserver s\nfirstclient a\nlastclient a\nclients 1\na:99999\nendconfig\n", 7, "bad port"},
		{"zero clients", "infile a\noutfile b\nserver s\nfirstclient a\nlastclient a\nclients 0\nendconfig\n", 6, "nobody to clone to"},
		{"add", "infile a\noutfile b\nadd -giga\n" + hosts, 3, "'add'"},
		{"infile late", "infile a\noutfile b\nsegsize 10\ninfile c\n", 4, "must come before"},
		{"two per line", "infile a\noutfile b\nserver s\nfirstclient a\nlastclient a\nclients 1\na b\nendconfig\n", 7, "one client per line"},
		{"compress out", "infile a\ncompressed outfile b\n" + hosts, 2, "not supported"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("dolly.cfg", []byte(tc.cfg))
			require.Error(t, err)
			var pe *ParseError
			require.True(t, errors.As(err, &pe), "error %v is not a *ParseError", err)
			assert.True(t, errors.Is(err, ErrSyntax))
			assert.Equal(t, tc.line, pe.Line, "line of %q", err)
			assert.Contains(t, err.Error(), tc.msg)
			if tc.line > 0 {
				assert.True(t, strings.HasPrefix(err.Error(), "dolly.cfg:"), err.Error())
			}
		})
	}
}

func TestParseClient(t *testing.T) {
	for in, want := range map[string]string{
		"node1":          "node1:9998",
		"node1:1":        "node1:1",
		"10.1.2.3":       "10.1.2.3:9998",
		"[fd00::1]:7":    "[fd00::1]:7",
		"[fd00::1]":      "[fd00::1]:9998",
		"max6.paris":     "max6.paris:9998",
		"192.168.0.1:80": "192.168.0.1:80",
	} {
		c, err := ParseClient(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, c.Addr(), in)
	}
	for _, bad := range []string{"", ":9", "a:b", "a:0", "[::1", "a/b"} {
		_, err := ParseClient(bad)
		assert.Error(t, err, bad)
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"seed-stage2.cfg", "seed-disk.cfg", "seed-dollyplus.cfg"} {
		data, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("iofiles 1\na>>b\nserver s\nfirstclient a\nlastclient a\nclients 1\n[::1]:5\nendconfig"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz", data)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error is not a ParseError: %v", err)
			}
			return
		}
		if len(cfg.Items) == 0 || len(cfg.Clients) == 0 {
			t.Fatalf("accepted config without items or clients: %+v", cfg)
		}
		for _, c := range cfg.Clients {
			if _, err := ParseClient(c.Addr()); err != nil {
				t.Fatalf("client %q does not round-trip: %v", c.Addr(), err)
			}
		}
	})
}
