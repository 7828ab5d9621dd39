// Package core is the I/O-free protocol logic of the herd chain: a Node state
// machine takes events (frames from upstream or downstream, sink results,
// connection outcomes, ticks of an abstract clock) and returns actions (send
// a frame, write or sync a sink, dial a node, finish). It never touches a
// socket, a file or the wall clock, so the same code runs on TCP (package
// ring) and on the simulated network (package ring/sim).
//
// Usage (a driver loop):
//
//	n := core.NewNode(core.NodeConfig{Key: key})
//	acts := n.Step(core.Event{Kind: core.EvUpFrame, Frame: f})
//	for _, a := range acts { /* perform a */ }
package core
