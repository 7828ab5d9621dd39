package ring

import (
	"time"

	"github.com/herd-cluster/herd/ring/core"
)

const (
	tickEvery     = core.TickInterval
	progressEvery = 200 * time.Millisecond
	dialRetry     = core.DialRetry
	// rejoinConnectTimeout bounds the connect of a rejoin attempt (see
	// core.Action.Rejoin); the source tries again every Rejoin interval.
	rejoinConnectTimeout = 500 * time.Millisecond
	// handshakeTimeout bounds each step of a handshake a node starts
	// (dialing the next node); handshakeDeadline bounds the whole of one
	// it answers.
	handshakeTimeout = 10 * time.Second
	// maxControl is the largest control frame accepted from an
	// authenticated peer: a manifest or an ack of a chain of thousands
	// of nodes fits many times over.
	maxControl   = 4 << 20
	drainTimeout = 10 * time.Second
	// pingEvery: a node that sent its downstream nothing for this long
	// sends a Ping (see upstreamSilence).
	pingEvery = time.Second
)
