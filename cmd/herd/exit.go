package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// Exit codes of herd, the same for every subcommand. They are listed in
// the help text of the commands that use them.
const (
	// ExitOK: everything asked for was done and verified.
	ExitOK = 0
	// ExitPartial: the session ran, but at least one node failed.
	ExitPartial = 1
	// ExitUsage: bad flags, config or description; nothing was done.
	ExitUsage = 2
	// ExitFailed: the job failed as a whole (no node succeeded, or a local error).
	ExitFailed = 3
)

// exitHelp is appended to the help of commands that run a job.
const exitHelp = `
Exit codes:
  0  all nodes completed and verified
  1  some nodes failed (see the summary)
  2  usage, config or description error: nothing was sent or written
  3  the job failed: no node completed, or a local error`

// usageError marks an error the user can fix by changing arguments or
// config; it maps to ExitUsage.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usagef returns a usageError built like fmt.Errorf.
func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// exitError carries an explicit exit code (for example ExitPartial) with
// an optional message already shown to the user.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}
func (e exitError) Unwrap() error { return e.err }

// exitCode maps err to an exit code and prints it as one line on stderr.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return ExitOK
	}
	var ee exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(stderr, "herd: %v\n", ee.err)
		}
		return ee.code
	}
	fmt.Fprintf(stderr, "herd: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		return ExitUsage
	}
	return ExitFailed
}

// isCobraUsage reports whether err is one of cobra's own argument errors
// (unknown command or flag, wrong number of arguments).
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand", "accepts ", "requires ", "invalid argument", "flag needs", "required flag"} {
		if strings.HasPrefix(msg, p) || strings.Contains(msg, " "+p) {
			return true
		}
	}
	return false
}
