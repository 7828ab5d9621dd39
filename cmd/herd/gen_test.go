package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/internal/manpage"
	"github.com/herd-cluster/herd/internal/testenv"
)

// TestGenMan generates herd's man pages, lints them with mandoc and groff
// and checks, in what groff renders, that every page names every flag of
// its command.
func TestGenMan(t *testing.T) {
	testenv.NeedTools(t, "groff", "mandoc")
	dir := t.TempDir()
	code, _, stderr := runHerd(t, "gen", "man", dir)
	require.Equal(t, ExitOK, code, stderr)

	// The tree herd gen man saw: cobra adds its completion command when
	// herd runs.
	root := newRootCmd()
	root.InitDefaultCompletionCmd()
	var want []string
	for _, c := range manpage.Commands(root) {
		want = append(want, manpage.PageName(c))
	}
	pages, err := filepath.Glob(filepath.Join(dir, "*"))
	require.NoError(t, err)
	var got []string
	for _, p := range pages {
		got = append(got, filepath.Base(p))
	}
	sort.Strings(want)
	assert.Equal(t, want, got, "one page per command")
	assert.Contains(t, got, "herd.1")
	assert.Contains(t, got, "herd-pxe-serve.1")
	assert.Contains(t, got, "herd-send.1")
	assert.NotContains(t, got, "herd-gen.1", "herd gen is hidden")

	out, err := exec.Command("mandoc", append([]string{"-T", "lint", "-W", "style"}, pages...)...).CombinedOutput()
	assert.NoError(t, err, "mandoc -T lint: %s", out)
	assert.Empty(t, string(out), "mandoc -T lint")

	for _, c := range manpage.Commands(root) {
		page := filepath.Join(dir, manpage.PageName(c))
		cmd := exec.Command("groff", "-man", "-Tutf8", "-ww", "-P-cbou", "-rLL=200n", page)
		var errb strings.Builder
		cmd.Stderr = &errb
		text, err := cmd.Output()
		require.NoError(t, err, "groff %s: %s", page, errb.String())
		assert.Empty(t, errb.String(), "groff -ww %s", page)
		s := string(text)
		for _, sec := range []string{"NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "SEE ALSO"} {
			assert.Contains(t, s, "\n"+sec+"\n", "%s: section %s", page, sec)
		}
		if c.Example != "" {
			assert.Contains(t, s, "\nEXAMPLES\n", "%s: section EXAMPLES", page)
		}
		assert.Contains(t, s, c.CommandPath(), page)
		check := func(f *pflag.Flag) {
			if f.Hidden {
				return
			}
			assert.Contains(t, s, "--"+f.Name, "%s lacks --%s", page, f.Name)
			if f.Shorthand != "" {
				assert.Contains(t, s, "-"+f.Shorthand+", --"+f.Name, "%s lacks -%s", page, f.Shorthand)
			}
		}
		c.LocalFlags().VisitAll(check)
		c.InheritedFlags().VisitAll(check)
	}

	// A page names its command's exit codes; recv's are its own.
	recv, err := exec.Command("groff", "-man", "-Tutf8", "-P-cbou", "-rLL=200n", filepath.Join(dir, "herd-recv.1")).Output()
	require.NoError(t, err)
	assert.Contains(t, string(recv), "usage error (no key, nothing allowed, a bad flag): nothing listened")
	assert.NotContains(t, string(recv), "Exit codes:")
}

func TestGenManBadUsage(t *testing.T) {
	code, _, _ := runHerd(t, "gen", "man")
	assert.Equal(t, ExitUsage, code, "no folder")
	f := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(f, nil, 0o644))
	code, _, stderr := runHerd(t, "gen", "man", filepath.Join(f, "sub"))
	assert.Equal(t, ExitUsage, code, stderr)
	code, _, stderr = runHerd(t, "gen", "completion", "tcsh")
	assert.Equal(t, ExitUsage, code, stderr)
	assert.Contains(t, stderr, "tcsh")
}

// TestGenCompletion checks each shell's script with the shell's own
// parser where that shell is installed, and that it names herd's commands.
func TestGenCompletion(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		code, stdout, stderr := runHerd(t, "gen", "completion", sh)
		require.Equal(t, ExitOK, code, stderr)
		assert.Contains(t, stdout, "herd", sh)
		if _, err := exec.LookPath(sh); err != nil {
			t.Logf("%s not installed: its script is not parsed", sh)
			continue
		}
		f := filepath.Join(t.TempDir(), "herd."+sh)
		require.NoError(t, os.WriteFile(f, []byte(stdout), 0o644))
		args := []string{"-n", f}
		if sh == "fish" {
			args = []string{"--no-execute", f}
		}
		out, err := exec.Command(sh, args...).CombinedOutput()
		assert.NoError(t, err, "%s -n: %s", sh, out)
	}
	// bash: the script, loaded, completes herd's subcommands.
	if _, err := exec.LookPath("bash"); err == nil {
		_, script, _ := runHerd(t, "gen", "completion", "bash")
		f := filepath.Join(t.TempDir(), "herd.bash")
		require.NoError(t, os.WriteFile(f, []byte(script), 0o644))
		// __herd_get_completion_results runs "herd __complete …": give it
		// the test binary as herd. _get_comp_words_by_ref comes from
		// Debian's bash-completion; a stand-in when it is not installed.
		probe := `if [ -r /usr/share/bash-completion/bash_completion ]; then source /usr/share/bash-completion/bash_completion
		else _get_comp_words_by_ref() { cur=${COMP_WORDS[COMP_CWORD]}; prev=${COMP_WORDS[COMP_CWORD-1]}; words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD; }; fi
		source "$1"; herd() { "$HERD" "$@"; }; COMP_WORDS=(herd px); COMP_CWORD=1; COMP_LINE="herd px"; COMP_POINT=7; __start_herd; printf '%s\n' "${COMPREPLY[@]}"`
		cmd := exec.Command("bash", "-c", probe, "bash", f)
		cmd.Env = append(os.Environ(), "HERD="+herdBin)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		assert.Contains(t, strings.Fields(string(out)), "pxe", "completing 'herd px': %s", out)
	}
}
