package testenv

import (
	"os/exec"
	"strings"
	"testing"
)

// AttachLoop attaches path to a free loop device (losetup --find --show,
// with extra options such as --read-only, --offset N, --sizelimit N) and
// detaches it when the test ends, also when it fails. It skips the test
// without root or losetup.
func AttachLoop(t testing.TB, path string, extra ...string) string {
	t.Helper()
	NeedRoot(t, "loop devices", "losetup")
	args := append(append([]string{"--find", "--show"}, extra...), path)
	out, err := exec.Command("losetup", args...).CombinedOutput()
	dev := strings.TrimSpace(string(out))
	if err != nil || !strings.HasPrefix(dev, "/dev/loop") || strings.ContainsAny(dev, " \n") {
		t.Fatalf("losetup %s: %v: %s", strings.Join(args, " "), err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("detach %s: %v: %s", dev, err, out)
		}
	})
	return dev
}
