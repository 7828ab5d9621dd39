package main

// Tests of what is the same in every command: short flags, durations,
// key flags, address checks, one-line errors, --json's last line.

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/ring/report"
)

// walk calls fn for every command of the tree.
func walk(c *cobra.Command, fn func(*cobra.Command)) {
	fn(c)
	for _, s := range c.Commands() {
		walk(s, fn)
	}
}

// TestShortFlagsHaveOneMeaning: a short flag names the same long flag in
// every command that has it.
func TestShortFlagsHaveOneMeaning(t *testing.T) {
	meaning := map[string]string{}
	where := map[string]string{}
	walk(newRootCmd(), func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if f.Shorthand == "" {
				return
			}
			if m, ok := meaning[f.Shorthand]; ok {
				assert.Equal(t, m, f.Name, "-%s is --%s in %q but --%s in %q", f.Shorthand, m, where[f.Shorthand], f.Name, c.CommandPath())
				return
			}
			meaning[f.Shorthand], where[f.Shorthand] = f.Name, c.CommandPath()
		})
	})
	assert.Equal(t, "nodes", meaning["n"], "-n is --nodes (herd lab up, herd deploy)")
}

// TestKeyFlagIsKeyFileEverywhere: every command that takes a key takes it
// as --key-file FILE; none takes the key itself on the command line.
func TestKeyFlagIsKeyFileEverywhere(t *testing.T) {
	n := 0
	walk(newRootCmd(), func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if strings.Contains(f.Name, "key") {
				assert.Equal(t, "key-file", f.Name, "%s --%s", c.CommandPath(), f.Name)
				n++
			}
		})
	})
	assert.GreaterOrEqual(t, n, 7, "send, recv, deploy, pxe serve, list, logs, set")
}

func TestNetHasNoShortFlag(t *testing.T) {
	e := newServerEnv(t)
	code, _, stderr := runHerd(t, append([]string{"pxe", "serve", "-n", "10.0.1", "--key-file", e.keyFile}, e.args()...)...)
	assert.Equal(t, ExitUsage, code)
	assert.Contains(t, stderr, "unknown shorthand flag: 'n'")
	// herd deploy -n is --nodes: a network base is no number.
	code, _, stderr = runHerd(t, append([]string{"deploy", "-n", "10.0.1"}, e.args()...)...)
	assert.Equal(t, ExitUsage, code)
	assert.Contains(t, stderr, `invalid argument "10.0.1" for "-n, --nodes"`)
}

func TestParseSecondsDuration(t *testing.T) {
	for in, want := range map[string]struct {
		d    time.Duration
		bare bool
	}{
		"5m": {5 * time.Minute, false}, "90s": {90 * time.Second, false}, "300": {300 * time.Second, true},
		" 2m30s ": {150 * time.Second, false}, "0": {0, true},
	} {
		d, bare, err := parseSecondsDuration(in)
		require.NoError(t, err, in)
		assert.Equal(t, want.d, d, in)
		assert.Equal(t, want.bare, bare, in)
	}
	for _, bad := range []string{"", "-1", "-5m", "5 minutes", "1e9", "99999999999"} {
		_, _, err := parseSecondsDuration(bad)
		assert.Error(t, err, "%q", bad)
	}
	assert.Equal(t, 2, wholeSeconds(1500*time.Millisecond))
	assert.Equal(t, "5m", shortDuration(5*time.Minute))
	assert.Equal(t, "1h30m", shortDuration(90*time.Minute))
}

// TestAgentTimeoutIsADuration: --agent-timeout takes a duration; a bare
// number still works, as seconds, with a warning.
func TestAgentTimeoutIsADuration(t *testing.T) {
	e := newServerEnv(t)
	image := filepath.Join(e.top, "golden.img")
	require.NoError(t, os.WriteFile(image, []byte("image"), 0o644))
	for _, tc := range []struct {
		flag, want string
		warn       bool
	}{
		{"2m", " herd.timeout=120 ", false},
		{"90", " herd.timeout=90 ", true},
	} {
		t.Run(tc.flag, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			d := e.startDeploy(t, ctx, "--macs", "52:54:00:00:00:01", "--wait", "1s", "--image", image, "--agent-timeout", tc.flag)
			assert.Contains(t, bootScript(t, e.base, "52:54:00:00:00:01"), tc.want)
			assert.Equal(t, ExitFailed, d.wait(t, ctx))
			const warning = "WARN --agent-timeout 90: a bare number of seconds is deprecated; write a duration, like 1m30s"
			if tc.warn {
				assert.Contains(t, d.stderr.String(), warning)
			} else {
				assert.NotContains(t, d.stderr.String(), "deprecated")
			}
		})
	}
	code, _, stderr := runHerd(t, append([]string{"pxe", "serve", "--key-file", e.keyFile, "--agent-timeout", "soon"}, e.args()...)...)
	assert.Equal(t, ExitUsage, code)
	assert.Contains(t, stderr, `invalid argument "soon" for "--agent-timeout" flag: "soon": want a duration like 5m or 90s`)
}

// TestBadAddressesAreUsageErrors: a malformed address or port exits 2
// before anything listens or connects.
func TestBadAddressesAreUsageErrors(t *testing.T) {
	e := newServerEnv(t)
	root := t.TempDir()
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"recv port":         {[]string{"recv", "--insecure", "--root", root, "--listen", ":99999"}, `--listen ":99999": port 99999: want 0 to 65535`},
		"recv no port":      {[]string{"recv", "--insecure", "--root", root, "--listen", "127.0.0.1"}, `--listen "127.0.0.1": want ADDR:PORT or :PORT`},
		"recv bad host":     {[]string{"recv", "--insecure", "--root", root, "--listen", "a b:9998"}, `neither an IP address nor a host name`},
		"recv bad service":  {[]string{"recv", "--insecure", "--root", root, "--listen", ":nosuchservice"}, `not a number from 0 to 65535`},
		"pxe http port":     {append([]string{"pxe", "serve", "--key-file", e.keyFile}, append(e.args(), "--http-port", "70000")...), "--http-port 70000: want a port from 1 to 65535"},
		"pxe tftp port":     {append([]string{"pxe", "serve", "--key-file", e.keyFile}, append(e.args(), "--tftp-port", "-1")...), "--tftp-port -1"},
		"deploy agent port": {append([]string{"deploy", "--key-file", e.keyFile, "--image", e.keyFile, "--macs", "52:54:00:00:00:01"}, append(e.args(), "--agent-port", "0")...), "--agent-port 0"},
		"pxe list server":   {[]string{"pxe", "list", "--server", "http://127.0.0.1:99999", "--key-file", e.keyFile}, "port 99999"},
		"pxe set server":    {[]string{"pxe", "set", "--server", "ftp://127.0.0.1:8080", "--key-file", e.keyFile, "52:54:00:00:00:01", "new"}, "want http://HOST:PORT"},
		"pxe menu server":   {[]string{"pxe", "menu", "--server", "10.0.0.1:99999"}, "port 99999"},
		"send to port":      {keyed("send", "--to", "127.0.0.1:99999", "--in", e.keyFile, "--out", "/x"), "want 1-65535"},
		"lab subnet":        {[]string{"lab", "up", "--subnet", "10.99.0.0/99", "--name", "nolab"}, "--subnet"},
	} {
		t.Run(name, func(t *testing.T) {
			code, _, stderr := runHerd(t, tc.args...)
			assert.Equal(t, ExitUsage, code, stderr)
			assert.Contains(t, stderr, tc.want)
			assert.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %s", stderr)
		})
	}
}

// TestUnreachableErrorSaysEachThingOnce: the error a user reads names the
// address and the cause once.
func TestUnreachableErrorSaysEachThingOnce(t *testing.T) {
	src := filepath.Join(t.TempDir(), "img")
	writeRandom(t, src, 1<<10, 1)
	addr := fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1)[0])
	code, _, stderr := runHerd(t, keyed("send", "--to", addr, "--in", src, "--out", "/img", "--connect-timeout", "500ms")...)
	assert.Equal(t, ExitFailed, code)
	last := lastLine(stderr)
	assert.Equal(t, "herd: ring: first node unreachable: connect "+addr+": connection refused", last)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// lastEvent parses the last line of out, which must be a --json event.
func lastEvent(t *testing.T, out string) *report.Event {
	t.Helper()
	ev, err := report.Parse([]byte(lastLine(out)))
	require.NoError(t, err, "last line of %q", out)
	require.NotNil(t, ev.OK, "last line has a verdict: %s", lastLine(out))
	return ev
}

// TestSendJSONEndsWithSummaryWhenNothingWasSent: with --json the last line
// is the summary, ok=false with every node and its error, also when the
// first node is unreachable or the source unreadable.
func TestSendJSONEndsWithSummaryWhenNothingWasSent(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "img")
	writeRandom(t, src, 1<<10, 1)
	ports := freePorts(t, 2)
	a, b := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])

	code, stdout, _ := runHerd(t, keyed("send", "--json", "--to", a+","+b, "--in", src, "--out", "/img", "--connect-timeout", "500ms")...)
	assert.Equal(t, ExitFailed, code)
	ev := lastEvent(t, stdout)
	assert.Equal(t, report.Summary, ev.Event)
	assert.False(t, *ev.OK)
	assert.Equal(t, "ring: first node unreachable: connect "+a+": connection refused", ev.Error)
	require.Len(t, ev.Nodes, 2)
	assert.Equal(t, a, ev.Nodes[0].Addr)
	assert.Equal(t, "unreachable: connect "+a+": connection refused", ev.Nodes[0].Error)
	assert.Equal(t, b, ev.Nodes[1].Addr)
	assert.NotEmpty(t, ev.Nodes[1].Error)

	code, stdout, _ = runHerd(t, keyed("send", "--json", "--to", a+","+b, "--in", filepath.Join(dir, "missing"), "--out", "/img")...)
	assert.Equal(t, ExitUsage, code)
	ev = lastEvent(t, stdout)
	assert.False(t, *ev.OK)
	assert.Contains(t, ev.Error, "missing: no such file or directory")
	require.Len(t, ev.Nodes, 2)
	assert.Equal(t, "failed", ev.Nodes[1].State)
	assert.Contains(t, ev.Nodes[1].Error, "not sent: ")
}

// TestRecvJSONEndsWithSummaryWhenNothingListened: recv --json whose port
// is taken ends with an ok=false summary naming why.
func TestRecvJSONEndsWithSummaryWhenNothingListened(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	code, stdout, stderr := runHerd(t, "recv", "--json", "--insecure", "--root", t.TempDir(), "--listen", l.Addr().String())
	assert.Equal(t, ExitFailed, code, stderr)
	ev := lastEvent(t, stdout)
	assert.Equal(t, report.Summary, ev.Event)
	assert.False(t, *ev.OK)
	assert.Contains(t, ev.Error, "address already in use")
	assert.Equal(t, "herd: listen tcp "+l.Addr().String()+": bind: address already in use", lastLine(stderr))
}

// TestDeployJSONEndsWithItsLineWhenTheServicesFail: deploy --json whose
// HTTP port is taken ends with an ok=false deploy line naming why.
func TestDeployJSONEndsWithItsLineWhenTheServicesFail(t *testing.T) {
	e := newServerEnv(t)
	l, err := net.Listen("tcp", fmt.Sprintf(":%d", e.port))
	require.NoError(t, err)
	defer l.Close()
	code, stdout, stderr := runHerd(t, append([]string{"deploy", "--json", "--key-file", e.keyFile, "--image", e.keyFile, "--macs", "52:54:00:00:00:01"}, e.args()...)...)
	assert.Equal(t, ExitFailed, code, stderr)
	ev := lastEvent(t, stdout)
	assert.Equal(t, report.Deploy, ev.Event)
	assert.False(t, *ev.OK)
	assert.Contains(t, ev.Error, "address already in use")
	assert.Equal(t, 1, strings.Count(stdout, "\n"), "one line: %s", stdout)
}

// TestLogFormatJSON: --log-format json makes every stderr line a JSON
// object with time, level and msg (and the session where it is known),
// the final error included; stdout keeps the report.
func TestLogFormatJSON(t *testing.T) {
	e := newServerEnv(t)
	code, stdout, stderr := runHerd(t, append([]string{"--log-format", "json", "deploy", "--key-file", e.keyFile, "--image", e.keyFile,
		"--macs", "52:54:00:00:00:01", "--wait", "1s", "--linger", "0s", "--session", "rack9", "--agent-timeout", "60"}, e.args()...)...)
	assert.Equal(t, ExitFailed, code, stderr)
	assert.Regexp(t, `52:54:00:00:00:01\s+KO\s+new\s+did not register`, stdout)
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	require.GreaterOrEqual(t, len(lines), 4, stderr)
	levels := map[string]int{}
	for _, l := range lines {
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &rec), "not JSON: %s", l)
		ts, _ := rec["time"].(string)
		_, err := time.Parse(time.RFC3339Nano, ts)
		require.NoError(t, err, "time in %s", l)
		require.NotEmpty(t, rec["msg"], l)
		levels[rec["level"].(string)]++
		if strings.HasPrefix(rec["msg"].(string), "deploy: waiting") {
			assert.Equal(t, "rack9", rec["session"], l)
		}
	}
	assert.Equal(t, 1, levels["WARN"], "the deprecated --agent-timeout 60: %s", stderr)
	assert.Equal(t, 1, levels["ERROR"], "the final error: %s", stderr)
	assert.GreaterOrEqual(t, levels["INFO"], 2)
	assert.Contains(t, lines[len(lines)-1], `"msg":"no machine registered within 1s"`)
}

// TestLogFormatText: the text format keeps one readable line with date,
// time and level; --log-level warn keeps only warnings and errors.
func TestLogFormatText(t *testing.T) {
	e := newServerEnv(t)
	args := append([]string{"deploy", "--key-file", e.keyFile, "--image", e.keyFile, "--macs", "52:54:00:00:00:01", "--wait", "1s", "--linger", "0s", "--agent-timeout", "60"}, e.args()...)
	code, _, stderr := runHerd(t, args...)
	assert.Equal(t, ExitFailed, code, stderr)
	assert.Regexp(t, `(?m)^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO deploy: waiting up to 1s for 1 machine\(s\) to register session=herd$`, stderr)
	assert.Regexp(t, `(?m)^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d WARN --agent-timeout 60: a bare number of seconds is deprecated; write a duration, like 1m$`, stderr)
	assert.Equal(t, "herd: no machine registered within 1s", lastLine(stderr))

	code, _, stderr = runHerd(t, append([]string{"--log-level", "warn"}, args...)...)
	assert.Equal(t, ExitFailed, code, stderr)
	assert.NotContains(t, stderr, " INFO ")
	assert.Contains(t, stderr, " WARN --agent-timeout 60")

	for _, bad := range [][]string{{"--log-format", "xml"}, {"--log-level", "loud"}} {
		code, _, stderr = runHerd(t, append(bad, "key", "show-id", e.keyFile)...)
		assert.Equal(t, ExitUsage, code, stderr)
		assert.Contains(t, stderr, bad[0])
	}
}

func TestPrintfAtLevelsAndMAC(t *testing.T) {
	var buf strings.Builder
	l, err := logFlags{format: "json", level: "debug"}.newLogger(&buf)
	require.NoError(t, err)
	info := printfAt(l.With("session", "s1"), slog.LevelInfo)
	info("deploy: %s registered from %s", "52:54:00:AB:00:01", "10.0.0.5")
	info("deploy: warning: --allow-unknown: anyone can join")
	info("chain 52:54:00:00:00:01 then 52:54:00:00:00:02")
	var recs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var r map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &r), line)
		recs = append(recs, r)
	}
	require.Len(t, recs, 3)
	assert.Equal(t, "INFO", recs[0]["level"])
	assert.Equal(t, "52:54:00:ab:00:01", recs[0]["mac"])
	assert.Equal(t, "s1", recs[0]["session"])
	assert.Equal(t, "WARN", recs[1]["level"])
	assert.NotContains(t, recs[1], "mac")
	assert.NotContains(t, recs[2], "mac", "two machines: no one mac")
}
