package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/herd-cluster/herd/harness"
)

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "herd end-to-end")
}

// herdBin is the herd binary built for this run.
var herdBin string

var _ = BeforeSuite(func() {
	if testing.Short() {
		Skip("end-to-end suites are skipped with -short")
	}
	if err := harness.Available(); err != nil {
		Skip("end-to-end suites need root, nsenter and loop devices: " + err.Error())
	}
	for _, tool := range []string{"gzip", "tar", "sha256sum"} {
		if _, err := exec.LookPath(tool); err != nil {
			Skip(tool + " not installed (make deps installs it)")
		}
	}
	dir, err := os.MkdirTemp("", "herd-e2e-bin-")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, dir)
	if bin := os.Getenv("HERD_E2E_BIN"); bin != "" {
		// A herd binary built elsewhere (for instance from a clean
		// checkout of a commit): test that one instead.
		abs, err := filepath.Abs(bin)
		Expect(err).NotTo(HaveOccurred())
		Expect(abs).To(BeAnExistingFile(), "HERD_E2E_BIN")
		herdBin = abs
	} else {
		herdBin = filepath.Join(dir, "herd")
		out, err := exec.Command("go", "build", "-o", herdBin, "github.com/herd-cluster/herd/cmd/herd").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "go build herd: %s", out)
	}
	// One session key for the suite, made as an administrator would; the
	// nodes' mount namespaces see the host's /tmp, so all read this file.
	suiteKey = filepath.Join(dir, "key")
	out, err := exec.Command(herdBin, "key", "new", suiteKey).CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "herd key new: %s", out)
})
