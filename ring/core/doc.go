// Package core is the I/O-free protocol logic of the herd chain: a Node
// state machine (every receiver) and a Sender (the source) take events
// (frames from upstream or downstream, sink results, connection outcomes,
// ticks of an abstract clock) and return actions (send a frame, write or
// sync a sink, dial a node, release a buffer, finish). They never touch a
// socket, a file or the wall clock, so the same code runs on TCP (package
// ring) and on the simulated network (package ring/sim).
//
// Buffers belong to the driver and are named by a Ref; the core says when
// each is free (ActRelease): after it is written, sent, and no longer
// retained for a possible bypass.
//
// What comes from the network cannot crash or balloon the state machines:
// every index in a frame is checked against the manifest and against what
// was sent (CheckManifest for the manifest itself), a peer that breaks the
// protocol ends its hop with a reason, and what they keep is bounded by
// the buffers the driver gave and the manifest. The driver itself is
// trusted: it answers what the core asked for. FuzzNodeFrames and
// FuzzSenderDownlink check this with sequences of events (see
// fuzz_test.go for how to run them).
//
// Usage (a driver loop):
//
//	n := core.NewNode(core.NodeConfig{})
//	acts := n.Step(core.Event{Kind: core.EvUp, Msg: hello, Now: now})
//	for _, a := range acts {
//		switch a.Kind {
//		case core.ActWrite: // queue a.Payload at a.Off of item a.Item, answer EvWritten
//		case core.ActSendDown: // queue a.Msg to the next node, answer EvSent
//		// ...
//		}
//	}
//
// Public so that other drivers (the simulator, a future transport) can run
// the same state machines.
package core
