package main

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Set at link time by the Makefile's build (-ldflags "-X main.version=…"):
// the output of git describe, the full commit (with "-dirty" when the tree
// had changes) and its time. Each one that is set wins over what the Go
// toolchain recorded in the build info; each one that is empty is taken
// from it. The Makefile sets them because Go records no VCS data when
// GOFLAGS holds -buildvcs=false or the checkout is a git worktree.
var (
	version    string
	commit     string
	commitTime string
)

// versionInfo is what herd version --json prints: one JSON object.
type versionInfo struct {
	// Version is the release (git describe) or "devel".
	Version string `json:"version"`
	// Commit is the full VCS revision, "-dirty" appended when the tree
	// had changes, or "unknown".
	Commit string `json:"commit"`
	// CommitTime is the commit's time (RFC 3339, UTC), or "".
	CommitTime string `json:"commit_time,omitempty"`
	// GoVersion is the toolchain that built the binary.
	GoVersion string `json:"go_version"`
	// Platform is GOOS/GOARCH.
	Platform string `json:"platform"`
}

// String is the one line of herd --version and herd version.
func (v versionInfo) String() string {
	s := v.Version + " (commit " + v.Commit
	if v.CommitTime != "" {
		s += ", " + v.CommitTime
	}
	return s + ", " + v.GoVersion + " " + v.Platform + ")"
}

// currentVersion is the version of this binary.
func currentVersion() versionInfo {
	bi, _ := debug.ReadBuildInfo()
	return makeVersion(bi, version, commit, commitTime)
}

// makeVersion combines the build info (nil when there is none) with the
// link-time values ldVersion, ldCommit and ldTime, which win when set.
func makeVersion(bi *debug.BuildInfo, ldVersion, ldCommit, ldTime string) versionInfo {
	v := versionInfo{Version: "devel", Commit: "unknown", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi != nil {
		if bi.GoVersion != "" {
			v.GoVersion = bi.GoVersion
		}
		// go install …@vX.Y.Z records the module version; a build in a
		// checkout records "(devel)".
		if mv := bi.Main.Version; mv != "" && mv != "(devel)" {
			v.Version = mv
		}
		var rev, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value
			case "vcs.time":
				v.CommitTime = s.Value
			}
		}
		if rev != "" {
			v.Commit = rev
			if modified == "true" {
				v.Commit += "-dirty"
			}
		}
	}
	if ldVersion != "" {
		v.Version = ldVersion
	}
	if ldCommit != "" {
		v.Commit = ldCommit
	}
	if ldTime != "" {
		v.CommitTime = ldTime
	}
	return v
}

// setVersion gives root its --version flag, printing the same line as
// herd version.
func setVersion(root *cobra.Command) {
	root.Version = currentVersion().String()
	root.SetVersionTemplate("herd {{.Version}}\n")
}

func newVersionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Annotations: map[string]string{noConfigAnnotation: "yes"},
		Use:         "version [--json]",
		Short:       "Print herd's version, commit, commit time and Go version",
		Long: `Version prints the version of this binary (git describe of the tree it was
built from, or devel), the commit (with -dirty when the tree had uncommitted
changes), the commit's time and the Go toolchain that built it. herd --version
prints the same line. With --json it prints one JSON object with the fields
version, commit, commit_time, go_version and platform.`,
		Example: `  herd version
  herd version --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return printVersion(cmd.OutOrStdout(), currentVersion(), asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return cmd
}

func printVersion(w io.Writer, v versionInfo, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(v)
	}
	_, err := fmt.Fprintf(w, "herd %s\n", v)
	return err
}
