package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writeConfig writes text as a config file and returns its path.
func writeConfig(t testing.TB, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "herd.yaml")
	require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
	return p
}

// flagsAfterConfig runs herd args with a probe command's RunE in place of
// the real one: it returns the exit code, stderr and the command's flag
// values as the command would see them.
func flagsAfterConfig(t *testing.T, args []string, names ...string) (int, string, map[string]string) {
	t.Helper()
	root := newRootCmd()
	got := map[string]string{}
	walkCommands(root, func(c *cobra.Command) {
		if c.RunE == nil {
			return
		}
		c.RunE = func(c *cobra.Command, _ []string) error {
			for _, n := range names {
				if f := c.Flags().Lookup(n); f != nil {
					got[n] = f.Value.String()
				}
			}
			return nil
		}
	})
	var stdout, stderr bytes.Buffer
	root.SetArgs(args)
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	code := exitCode(root.ExecuteContext(context.Background()), &stderr)
	return code, stderr.String(), got
}

// noDefaultConfig makes the default config file one that does not exist,
// whatever this machine has in /etc/herd.
func noDefaultConfig(t *testing.T) {
	t.Helper()
	old := defaultConfigPath
	defaultConfigPath = filepath.Join(t.TempDir(), "none.yaml")
	t.Cleanup(func() { defaultConfigPath = old })
	t.Setenv(configEnv, "")
}

const sampleConfig = `# site settings
key-file: /etc/herd/key
session: rack1
agent-timeout: 10m
allow: [/dev/sda, /dev/sdb]
verbose: true
pxe serve:
  session: pxe-rack1
  http-port: 8081
send:
  chunk-size: 1M
`

func TestConfigValuesApplyAndCommandLineOverrides(t *testing.T) {
	noDefaultConfig(t)
	cfg := writeConfig(t, sampleConfig)
	names := []string{"key-file", "session", "agent-timeout", "http-port", "allow", "verbose", "chunk-size"}

	// Top level for herd deploy; the section for herd pxe serve.
	code, stderr, got := flagsAfterConfig(t, []string{"--config", cfg, "deploy"}, names...)
	require.Equal(t, ExitOK, code, stderr)
	assert.Equal(t, map[string]string{"key-file": "/etc/herd/key", "session": "rack1", "agent-timeout": "10m0s", "http-port": "8080"}, got)

	code, stderr, got = flagsAfterConfig(t, []string{"pxe", "serve", "--config", cfg}, names...)
	require.Equal(t, ExitOK, code, stderr)
	assert.Equal(t, "pxe-rack1", got["session"], "the section overrides the top level")
	assert.Equal(t, "8081", got["http-port"])

	// The command line wins over both.
	code, stderr, got = flagsAfterConfig(t, []string{"--config", cfg, "pxe", "serve", "--session", "cli", "--agent-timeout", "1m"}, names...)
	require.Equal(t, ExitOK, code, stderr)
	assert.Equal(t, "cli", got["session"])
	assert.Equal(t, "1m0s", got["agent-timeout"])
	assert.Equal(t, "8081", got["http-port"])

	// A list fills a flag that takes several values; a key of other
	// commands only (session, agent-timeout for recv) is ignored.
	code, stderr, got = flagsAfterConfig(t, []string{"--config", cfg, "recv"}, names...)
	require.Equal(t, ExitOK, code, stderr)
	assert.Equal(t, map[string]string{"key-file": "/etc/herd/key", "allow": "[/dev/sda,/dev/sdb]", "verbose": "true"}, got)
	code, stderr, got = flagsAfterConfig(t, []string{"--config", cfg, "recv", "--allow", "/dev/vda"}, names...)
	require.Equal(t, ExitOK, code, stderr)
	assert.Equal(t, "[/dev/vda]", got["allow"])

	// HERD_CONFIG names it too; herd send takes it from there.
	t.Setenv(configEnv, cfg)
	code, stderr, got = flagsAfterConfig(t, []string{"send"}, names...)
	require.Equal(t, ExitOK, code, stderr)
	assert.Equal(t, "1M", got["chunk-size"])
	assert.Equal(t, "/etc/herd/key", got["key-file"])
}

func TestConfigDefaultFile(t *testing.T) {
	noDefaultConfig(t)
	// Missing: fine.
	code, stderr, got := flagsAfterConfig(t, []string{"pxe", "serve"}, "session")
	require.Equal(t, ExitOK, code, stderr)
	assert.Equal(t, "herd", got["session"])
	// Present: read.
	defaultConfigPath = writeConfig(t, "session: site\n")
	code, stderr, got = flagsAfterConfig(t, []string{"pxe", "serve"}, "session")
	require.Equal(t, ExitOK, code, stderr)
	assert.Equal(t, "site", got["session"])
}

func TestConfigExplicitMissingFileIsAnError(t *testing.T) {
	noDefaultConfig(t)
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	code, stderr, _ := flagsAfterConfig(t, []string{"--config", missing, "pxe", "serve"})
	assert.Equal(t, ExitUsage, code)
	assert.Contains(t, stderr, missing)
	assert.Contains(t, stderr, "no such file")
	t.Setenv(configEnv, missing)
	code, _, _ = flagsAfterConfig(t, []string{"pxe", "serve"})
	assert.Equal(t, ExitUsage, code)
}

// TestConfigErrorsNameTheLine: every error says the file and the line.
func TestConfigErrorsNameTheLine(t *testing.T) {
	noDefaultConfig(t)
	for name, tc := range map[string]struct {
		text, want string
	}{
		"unknown key":        {"session: a\nno-such-flag: 1\n", ":2: unknown key \"no-such-flag\""},
		"refused value":      {"session: a\n\nhttp-port: eighty\n", ":3: --http-port: \"eighty\" for \"--http-port\" flag: strconv.ParseInt"},
		"refused duration":   {"agent-timeout: soon\n", ":1: --agent-timeout: \"soon\""},
		"bad yaml":           {"session: a\n  b: [\n", ":2: not YAML"},
		"tab":                {"session: a\n\tlease: 1h\n", ":2: not YAML"},
		"not a mapping":      {"- a\n- b\n", ":1: want a mapping"},
		"dolly config":       {"infile /dev/sda\noutfile /dev/sda\n", ":1: want a mapping of flag names to values"},
		"list for one value": {"pxe serve:\n  session: [a, b]\n", ":2: --session: takes one value, not a list"},
		"unknown section":    {"nosuch cmd:\n  session: a\n", ":1: unknown key \"nosuch cmd\""},
		"section no flag":    {"recv:\n  session: a\n", ":2: herd recv has no --session flag"},
		"duplicate":          {"session: a\nlease: 1h\nsession: b\n", ":3: session given twice (first on line 1)"},
		"no value":           {"session:\n", ":1: session has no value"},
		"dashes":             {"--session: a\n", ":1: \"--session\": write the flag's name without dashes"},
		"config in config":   {"config: other.yaml\n", ":1: --config cannot be set in a config file"},
		"nested list":        {"allow: [[a]]\n", ":1: allow: a list of plain values"},
		"mapping in section": {"recv:\n  allow:\n    a: b\n", ":3: recv: allow: want a value or a list"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := writeConfig(t, tc.text)
			code, stderr, _ := flagsAfterConfig(t, []string{"--config", cfg, "pxe", "serve"})
			assert.Equal(t, ExitUsage, code, stderr)
			assert.Contains(t, stderr, "herd: "+cfg+tc.want)
			assert.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %s", stderr)
		})
	}
}

// TestConfigRealRun: a value from the file reaches a real command: herd
// recv's --listen from a config is checked like the flag.
func TestConfigRealRun(t *testing.T) {
	noDefaultConfig(t)
	cfg := writeConfig(t, "recv:\n  listen: \":99999\"\n  insecure: true\n  root: "+t.TempDir()+"\n")
	code, _, stderr := runHerd(t, "--config", cfg, "recv")
	assert.Equal(t, ExitUsage, code)
	assert.Contains(t, stderr, `--listen ":99999": port 99999`)
}

// TestSendDollyFlag: herd send's Dolly config is -f/--dolly; --config
// still works on herd send, with a deprecation notice.
func TestSendDollyFlag(t *testing.T) {
	noDefaultConfig(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "dolly.cfg")
	require.NoError(t, os.WriteFile(cfg, []byte("infile /etc/hostname\noutfile /x\nserver s\nfirstclient a\nlastclient a\nclients 2\n127.0.0.1:1\nendconfig\n"), 0o644))
	for _, flag := range []string{"-f", "--dolly", "--config"} {
		code, _, stderr := runHerd(t, "send", flag, cfg)
		assert.Equal(t, ExitUsage, code, flag)
		assert.Contains(t, stderr, cfg+":8: 'clients 2' on line 6 but only 1 client lines", flag)
		if flag == "--config" {
			assert.Contains(t, stderr, "WARN --config is deprecated: use -f/--dolly")
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{sampleConfig, "", "session: a\n", "- a\n", "a: [b, c]\nx:\n  y: z\n", "a: &x 1\nb: *x\n", "{a: {b: {c: d}}}", "session: a\nsession: b\n", "pxe serve:\n  allow: []\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := parseConfig("f.yaml", data)
		if err != nil {
			var ce *configError
			require.ErrorAs(t, err, &ce)
			require.True(t, strings.HasPrefix(err.Error(), "f.yaml:"), err.Error())
			return
		}
		for _, v := range cfg.Top {
			require.Positive(t, v.Line)
		}
		for _, s := range cfg.Sections {
			for _, v := range s.Values {
				require.Positive(t, v.Line)
			}
		}
		// Applying it never panics: an error names the file.
		c := newRootCmd()
		cmd, _, _ := c.Find([]string{"pxe", "serve"})
		if err := applyConfig(c, cmd, cfg); err != nil {
			require.True(t, strings.HasPrefix(err.Error(), "f.yaml:"), err.Error())
		}
	})
}

// TestConfigDocSample: the example of docs/config.md is a valid config
// for every command it names.
func TestConfigDocSample(t *testing.T) {
	noDefaultConfig(t)
	doc, err := os.ReadFile("../../docs/config.md")
	require.NoError(t, err)
	text := string(doc)
	i := strings.Index(text, "```yaml\n# /etc/herd/herd.yaml")
	require.GreaterOrEqual(t, i, 0, "the example")
	body := text[i+len("```yaml\n"):]
	body = body[:strings.Index(body, "```")]
	cfg := writeConfig(t, body)
	t.Setenv(configEnv, cfg) // herd send's --config is its Dolly config
	for _, c := range [][]string{{"deploy"}, {"pxe", "serve"}, {"recv"}, {"send"}, {"pxe", "list"}} {
		code, stderr, got := flagsAfterConfig(t, c, "session", "image", "known-only", "allow", "key-file")
		require.Equal(t, ExitOK, code, "%v: %s", c, stderr)
		assert.Equal(t, "/etc/herd/key", got["key-file"], "%v", c)
	}
}

// TestConfigPackagedSample: the /etc/herd/herd.yaml the package installs
// is valid as shipped (all commented out) and with every setting
// uncommented, for every command it names.
func TestConfigPackagedSample(t *testing.T) {
	noDefaultConfig(t)
	raw, err := os.ReadFile("../../packaging/herd.yaml")
	require.NoError(t, err)
	// The header (up to the first empty line) is prose; every commented
	// line after it is a setting.
	var on []string
	header := true
	for _, l := range strings.Split(string(raw), "\n") {
		if l == "" {
			header = false
		}
		if rest, ok := strings.CutPrefix(l, "# "); ok && !header {
			l = rest
		}
		on = append(on, l)
	}
	for name, body := range map[string]string{"as shipped": string(raw), "uncommented": strings.Join(on, "\n")} {
		cfg := writeConfig(t, body)
		t.Setenv(configEnv, cfg)
		for _, c := range [][]string{{"deploy"}, {"pxe", "serve"}, {"recv"}, {"send"}} {
			code, stderr, got := flagsAfterConfig(t, c, "key-file")
			require.Equal(t, ExitOK, code, "%s, %v: %s", name, c, stderr)
			if name == "uncommented" {
				assert.Equal(t, "/etc/herd/key", got["key-file"], "%v", c)
			}
		}
	}
}

// herd version and herd gen read no config file: they work whatever the
// site's file holds (packaging runs them), while other commands refuse it.
func TestVersionAndGenIgnoreABrokenConfig(t *testing.T) {
	noDefaultConfig(t)
	t.Setenv(configEnv, writeConfig(t, "nosuch: 1\n"))
	var out, errb bytes.Buffer
	require.Equal(t, ExitOK, run(context.Background(), []string{"version", "--json"}, nil, &out, &errb), errb.String())
	require.Equal(t, ExitOK, run(context.Background(), []string{"gen", "man", t.TempDir()}, nil, &out, &errb), errb.String())
	errb.Reset()
	assert.Equal(t, ExitUsage, run(context.Background(), []string{"key", "show-id", "/nonexistent"}, nil, &out, &errb))
	assert.Contains(t, errb.String(), `unknown key "nosuch"`)
}
