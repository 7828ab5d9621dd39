package manpage

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"plain":           "plain",
		"--key-file":      `\-\-key\-file`,
		`C:\dir`:          `C:\edir`,
		".TH evil":        `\&.TH evil`,
		"'br":             `\&'br`,
		" lead":           `\& lead`,
		"a…b":             `a\[u2026]b`,
		"two\nlines":      "two lines",
		"bell\x07":        "bell",
		"é→x":             `\[u00E9]\[u2192]x`,
		"mid.dot 'quote'": "mid.dot 'quote'",
	} {
		assert.Equal(t, want, Escape(in), "Escape(%q)", in)
	}
}

// validRoffLine reports what is wrong with one line of escaped text, or "".
var escapeSeq = regexp.MustCompile(`\\(e|-|&|\[u[0-9A-F]{4,6}\])`)

func checkEscaped(s string) string {
	if strings.ContainsAny(s, "\n\r") {
		return "line break in a line"
	}
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		return "starts with a control character"
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return "not printable ASCII"
		}
	}
	if strings.Contains(escapeSeq.ReplaceAllString(s, ""), `\`) {
		return "a backslash that is not one of the escapes"
	}
	return ""
}

func FuzzEscape(f *testing.F) {
	for _, s := range []string{"", "--flag", `\fB`, ".SH x", "'x", "…", "\xff\xfe", "a\nb", " \t", "\u2028"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := Escape(s)
		if msg := checkEscaped(e); msg != "" {
			t.Fatalf("Escape(%q) = %q: %s", s, e, msg)
		}
		var b bytes.Buffer
		writeLines(&b, s)
		for _, l := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
			if l == "" && b.Len() > 0 {
				t.Fatalf("writeLines(%q) wrote an empty line", s)
			}
			if msg := checkEscaped(l); msg != "" && b.Len() > 0 {
				t.Fatalf("writeLines(%q) line %q: %s", s, l, msg)
			}
		}
	})
}

// tree is a small command tree with what the pages must render: a
// subcommand with flags, shorthands, an inherited flag, a hidden one,
// examples, exit codes and text that needs escaping.
func tree() *cobra.Command {
	root := &cobra.Command{Use: "tool", Short: "A tool", Version: "1.0"}
	root.PersistentFlags().String("config", "/etc/tool.yaml", "config file")
	grp := &cobra.Command{Use: "grp", Short: "A group of commands"}
	run := &cobra.Command{
		Use:   "run --in FILE [--fast]",
		Short: "Run something…",
		Long: `Run does things, quoted 'like this',
.and a line that starts with a period.

A list:
  one   the first
  two   the second

Exit codes:
  0  it worked
  4  it did not, at
     length`,
		Example: `  tool grp run --in x
  tool grp run --in 'C:\y'`,
		RunE: func(*cobra.Command, []string) error { return nil },
	}
	run.Flags().StringP("in", "i", "", "the `FILE` to read")
	run.Flags().Bool("fast", false, "go fast")
	run.Flags().Int("n", 3, "how many")
	run.Flags().String("secret", "", "not shown")
	run.Flags().MarkHidden("secret")
	hidden := &cobra.Command{Use: "internal", Hidden: true, Run: func(*cobra.Command, []string) {}}
	grp.AddCommand(run)
	root.AddCommand(grp, hidden)
	return root
}

func TestWriteTree(t *testing.T) {
	dir := t.TempDir()
	h := Header{Source: "tool 1.0", Manual: "tool manual", Date: "2026-12-04", ExitStatus: "0  success\n2  usage"}
	require.NoError(t, WriteTree(tree(), dir, h))
	var names []string
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range ents {
		names = append(names, e.Name())
	}
	assert.Equal(t, []string{"tool-grp-run.1", "tool-grp.1", "tool.1"}, names, "one page per visible command, none for hidden ones")

	b, err := os.ReadFile(filepath.Join(dir, "tool-grp-run.1"))
	require.NoError(t, err)
	page := string(b)
	// The sections, in order.
	last := -1
	for _, sec := range []string{".SH NAME", ".SH SYNOPSIS", ".SH DESCRIPTION", ".SH OPTIONS", ".SH EXAMPLES", ".SH EXIT STATUS", ".SH SEE ALSO"} {
		i := strings.Index(page, "\n"+sec+"\n")
		require.Greater(t, i, last, "%s missing or out of order in\n%s", sec, page)
		last = i
	}
	assert.Contains(t, page, `.TH "TOOL\-GRP\-RUN" 1 "2026-12-04" "tool 1.0" "tool manual"`)
	assert.Contains(t, page, "tool\\-grp\\-run \\- Run something\\[u2026]\n")
	assert.Contains(t, page, "\\&.and a line that starts with a period.\n", "a period at the start of a line is not a request")
	assert.Contains(t, page, `\fB\-i\fR, \fB\-\-in\fR \fIFILE\fR`)
	assert.Contains(t, page, `\fB\-\-fast\fR`+"\n")
	assert.Contains(t, page, "how many (default 3)")
	assert.Contains(t, page, ".SS Options of all commands\n.TP\n\\fB\\-\\-config\\fR \\fIstring\\fR\nconfig file (default \"/etc/tool.yaml\")")
	assert.NotContains(t, page, "secret")
	assert.Contains(t, page, ".TP\n.B 4\nit did not, at\nlength\n", "exit codes from Long, continuation joined")
	assert.NotContains(t, page, "Exit codes:")
	assert.Contains(t, page, "tool grp run \\-\\-in 'C:\\ey'")
	assert.Contains(t, page, ".BR tool\\-grp (1)\n")

	grp, err := os.ReadFile(filepath.Join(dir, "tool-grp.1"))
	require.NoError(t, err)
	assert.Contains(t, string(grp), ".SH COMMANDS\n.TP\n\\fBrun\\fR\n")
	assert.Contains(t, string(grp), ".TP\n.B 2\nusage\n", "the header's exit status when Long has none")
	assert.NotContains(t, string(grp), ".SH EXAMPLES")
	root, err := os.ReadFile(filepath.Join(dir, "tool.1"))
	require.NoError(t, err)
	assert.Contains(t, string(root), `\fB\-\-version\fR`, "root lists --version")

	lint(t, dir)
}

// lint checks every page in dir with mandoc -T lint and groff -ww (those
// installed; make deps installs both) and fails on any message.
func lint(t *testing.T, dir string) {
	t.Helper()
	pages, err := filepath.Glob(filepath.Join(dir, "*.1"))
	require.NoError(t, err)
	require.NotEmpty(t, pages)
	ran := 0
	if _, err := exec.LookPath("mandoc"); err == nil {
		ran++
		out, err := exec.Command("mandoc", append([]string{"-T", "lint", "-W", "style"}, pages...)...).CombinedOutput()
		assert.NoError(t, err, "mandoc -T lint: %s", out)
		assert.Empty(t, string(out), "mandoc -T lint")
	}
	if _, err := exec.LookPath("groff"); err == nil {
		ran++
		for _, p := range pages {
			out, err := exec.Command("groff", "-man", "-Tutf8", "-ww", "-z", p).CombinedOutput()
			assert.NoError(t, err, "groff %s: %s", p, out)
			assert.Empty(t, string(out), "groff -ww %s", p)
		}
	}
	if ran == 0 {
		t.Skip("neither mandoc nor groff is installed (make deps installs them): pages not linted")
	}
}
