// Package agent is what runs in a PXE-booted machine's initramfs: it
// reads its orders from the kernel command line, brings the network up,
// registers with the herd server, receives the disk image with herd recv,
// reports the outcome and reboots. If the server cannot be reached it
// says so on the console, tries a bounded number of times and reboots to
// try PXE again, like the seed's KA and Dolly stages; once registered, a
// server that stops answering for herd.timeout before any session
// arrives makes it reboot the same way (ErrServerLost).
//
// Every API request is signed with the session key from the kernel line
// (herd.key, see httpboot.Sign): the seed's model, where the orders and
// the key travel on the kernel command line of the boot configuration.
//
// With herd.stage2=1 the agent first receives a stage 2 (an archive of a
// root file system) through the chain into a tmpfs, reports it, and
// switch_roots to it; the stage 2's init runs herd agent again, which
// finds Stage2Marker and receives the image (the seed's step 2).
//
// Usage (this is what "herd agent" does):
//
//	b, _ := os.ReadFile("/proc/cmdline")
//	cfg, err := agent.ParseCmdline(string(b))
//	if err != nil { ... }
//	a := &agent.Agent{Config: cfg, Console: os.Stdout}
//	err = a.Run(ctx) // reboots at the end (or runs the stage 2)
package agent
