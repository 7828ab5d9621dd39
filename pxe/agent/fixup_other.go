//go:build !linux

package agent

import (
	"context"
	"errors"
)

var errFixupNotLinux = errors.New("agent: fix-ups need Linux")

func (a *Agent) fixupDisk(ctx context.Context, disk string, job FixupJob) (string, error) {
	return "", errFixupNotLinux
}
