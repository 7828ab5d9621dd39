package main

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/herd-cluster/herd/internal/manpage"
)

// manExitStatus is EXIT STATUS on the pages of commands whose help lists
// no exit codes of its own.
const manExitStatus = `0  success
1  the job ran, but some nodes failed (commands that run a job)
2  usage, config or description error: nothing was done
3  failure: no node completed, or a local error`

// newGenCmd is the hidden herd gen: what make install and make deb use to
// write the man pages and shell completions from the command tree.
func newGenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Annotations: map[string]string{noConfigAnnotation: "yes"},
		Use:         "gen",
		Short:       "Write man pages and shell completions (for packaging)",
		Hidden:      true,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "man DIR",
		Short: "Write one roff man page per command (herd.1, herd-send.1, …) into DIR",
		Long: `Man writes one page per command into DIR (made if missing). The pages are
dated by SOURCE_DATE_EPOCH when set, else by the commit's time, else today.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return usagef("man page folder: %v", err)
			}
			v := currentVersion()
			h := manpage.Header{
				Source:     "herd " + v.Version,
				Manual:     "herd manual",
				Date:       manDate(v),
				ExitStatus: manExitStatus,
			}
			return manpage.WriteTree(cmd.Root(), dir, h)
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:       "completion bash|zsh|fish",
		Short:     "Write the completion script for a shell on stdout",
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"bash", "zsh", "fish"},
		RunE: func(cmd *cobra.Command, args []string) error {
			root, w := cmd.Root(), cmd.OutOrStdout()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(w, true)
			case "zsh":
				return root.GenZshCompletion(w)
			case "fish":
				return root.GenFishCompletion(w, true)
			}
			return usagef("unknown shell %q: want bash, zsh or fish", args[0])
		},
	})
	return cmd
}

// manDate is the date of the man pages: SOURCE_DATE_EPOCH (reproducible
// builds), else the commit's day, else today.
func manDate(v versionInfo) string {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return time.Unix(n, 0).UTC().Format(time.DateOnly)
		}
		fmt.Fprintf(os.Stderr, "herd gen man: ignoring SOURCE_DATE_EPOCH=%q (not a number)\n", s)
	}
	if t, err := time.Parse(time.RFC3339, v.CommitTime); err == nil {
		return t.UTC().Format(time.DateOnly)
	}
	return time.Now().UTC().Format(time.DateOnly)
}
