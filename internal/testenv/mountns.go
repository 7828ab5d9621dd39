// Package testenv holds what herd's tests share: preconditions (NeedRoot,
// NeedTools), a private mount namespace (InPrivateMounts), loop devices
// (AttachLoop). It is
// internal: test support, no API; the herd binary never links it.
package testenv

import (
	"os"
	"os/exec"
	"regexp"
	"testing"
)

// PrivateMountsEnv is set to "1" in a test binary re-run inside a mount
// namespace of its own.
const PrivateMountsEnv = "HERD_TEST_PRIVATE_MOUNTS"

// InPrivateMounts runs the calling top-level test again, alone, in a child
// process with a mount namespace of its own (unshare --mount, propagation
// private), and reports whether the caller is that child.
//
// A test that binds /run/netns over itself (to check that the harness
// survives what `ip netns add` does to it) changes a directory every lab
// of the machine shares: run in the host's mount namespace, it hides the
// pins of the clusters other test packages run at the same time, and their
// cleanup fails. In its own mount namespace it only sees copies: what it
// stacks there propagates nowhere.
//
// Use it first thing in the test:
//
//	if !testenv.InPrivateMounts(t) {
//		return
//	}
//
// In the parent it returns false once the child has passed, and fails the
// test (with the child's output) if the child failed.
func InPrivateMounts(t *testing.T) bool {
	t.Helper()
	if os.Getenv(PrivateMountsEnv) == "1" {
		return true
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("unshare not installed (util-linux; make deps installs it)")
	}
	args := []string{"--mount", "--propagation", "private", os.Args[0],
		"-test.run", "^" + regexp.QuoteMeta(t.Name()) + "$", "-test.count", "1", "-test.v"}
	cmd := exec.CommandContext(t.Context(), "unshare", args...)
	cmd.Env = append(os.Environ(), PrivateMountsEnv+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("in a private mount namespace:\n%s", out)
	if err != nil {
		t.Fatalf("the test failed in its own mount namespace: %v", err)
	}
	if regexp.MustCompile(`(?m)^--- SKIP: ` + regexp.QuoteMeta(t.Name()) + ` `).Match(out) {
		t.Skip("skipped in its own mount namespace (see above)")
	}
	if !regexp.MustCompile(`(?m)^--- PASS: ` + regexp.QuoteMeta(t.Name()) + ` `).Match(out) {
		t.Fatalf("the child did not run %s", t.Name())
	}
	return false
}
