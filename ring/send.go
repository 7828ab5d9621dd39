package ring

import (
	"context"
	"errors"
)

var errNotImplemented = errors.New("ring: not implemented yet")

// Send runs a whole session from the source and returns the per-node report.
// The error is non-nil only when the session could not run at all (bad config,
// source unreadable, first node unreachable); node failures are in the Report.
func Send(ctx context.Context, cfg SenderConfig) (*Report, error) {
	return nil, errNotImplemented
}
