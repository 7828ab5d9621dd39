package harness

import (
	"fmt"
	"os"
	"os/exec"
)

// Available reports why the harness cannot run here (not root, no nsenter,
// no loop devices), or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	if _, err := exec.LookPath("nsenter"); err != nil {
		return fmt.Errorf("nsenter (util-linux) not found: %w", ErrUnsupported)
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		return fmt.Errorf("no /dev/loop-control: %w", ErrUnsupported)
	}
	return nil
}
