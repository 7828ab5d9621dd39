// Command herd clones an operating system from one golden node to a whole
// cluster over a pipelined TCP chain, and hands every node back booting
// from its own disk.
//
// Every subcommand lives in its own file as newXCmd and holds flags,
// printing and wiring only: the work is done by the packages (ring for
// herd send and recv, pxe and pxe/deploy for herd pxe and herd deploy,
// desc, filelevel, harness for herd lab); main wires the commands
// together and maps errors to exit codes (see exit.go).
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes herd with args and returns the process exit code. It is the
// entry point tests use to run subcommands with in-memory stdio.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	errOut := stderr
	if f := root.PersistentFlags().Lookup("log-format"); f != nil && f.Value.String() == "json" {
		errOut = jsonErrorWriter{stderr}
	}
	return exitCode(err, errOut)
}

func newRootCmd() *cobra.Command {
	var lf logFlags
	root := &cobra.Command{
		Use:           "herd",
		Short:         "Clone an operating system from one golden node to a whole cluster",
		SilenceUsage:  true,
		SilenceErrors: true,
		// Before every command: the config file's values for the flags
		// its command line left alone, then warnings for deprecated
		// values.
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Name() != "help" && !strings.HasPrefix(cmd.Name(), "__complete") && !noConfig(cmd) {
				cfg, err := loadConfig(cmd.Root())
				if err != nil {
					return err
				}
				if cfg != nil {
					if err := applyConfig(cmd.Root(), cmd, cfg); err != nil {
						return err
					}
				}
			}
			logger, err := lf.newLogger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			cmd.SetContext(withLogFlags(cmd.Context(), lf))
			for _, w := range deprecationWarnings(cmd.Flags()) {
				logger.Warn(w)
			}
			return nil
		},
	}
	root.PersistentFlags().StringVar(&lf.format, "log-format", "text", "log lines on stderr: text (date, time, level, message, key=value) or json (one object per line: time, level, msg, session, node, ...)")
	root.PersistentFlags().StringVar(&lf.level, "log-level", "info", "least level of the log lines shown: debug, info, warn or error")
	root.PersistentFlags().String("config", defaultConfigPath, "config file holding flag defaults for every command (YAML, see docs/config.md; also $"+configEnv+"); the default file is read only if it exists")
	// One constructor per subcommand file.
	root.AddCommand(
		newPXECmd(), newDeployCmd(),
		newSendCmd(),
		newRecvCmd(), newKeyCmd(),
		newLabCmd(),
		newDescCmd(),
		newInitramfsCmd(), newAgentCmd(),
		newPowerCmd(),
		newVersionCmd(), newGenCmd(),
	)
	setVersion(root)
	return root
}

// noConfigAnnotation marks a command that reads no config file (herd
// version, herd gen): it must work whatever state the site's file is in,
// as the packaging runs it to build man pages and completions.
const noConfigAnnotation = "herd/no-config"

// noConfig reports whether cmd or one of its parents is so marked.
func noConfig(cmd *cobra.Command) bool {
	for c := cmd; c != nil; c = c.Parent() {
		if c.Annotations[noConfigAnnotation] != "" {
			return true
		}
	}
	return false
}
