package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// NeedRoot skips the test unless it runs as root with every tool in
// PATH; why says what root is for ("loop devices, mount").
func NeedRoot(t testing.TB, why string, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root (%s): skipping", why)
	}
	NeedTools(t, tools...)
}

// NeedTools skips the test unless every tool is in PATH.
func NeedTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (make deps installs it): skipping", tool)
		}
	}
}
