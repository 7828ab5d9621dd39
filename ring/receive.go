package ring

import (
	"context"
	"net"
)

// Receive waits on l for one session (ignoring and logging stray or
// unauthenticated connections), takes part in it (write + forward), and
// returns this node's report. err != nil when the session failed for this
// node (digest mismatch, sink error...). Receive does not close l.
func Receive(ctx context.Context, l net.Listener, cfg ReceiverConfig) (*NodeStatus, error) {
	return nil, errNotImplemented
}
