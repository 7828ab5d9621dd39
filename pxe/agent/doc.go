// Package agent is what runs in a PXE-booted machine's initramfs: it
// reads its orders from the kernel command line, brings the network up,
// registers with the herd server, receives the disk image with herd recv,
// reports the outcome and reboots. If the server cannot be reached it
// says so on the console, tries a bounded number of times and reboots to
// try PXE again, like the seed's KA and Dolly stages; once registered, a
// server that stops answering for herd.timeout before any session
// arrives makes it reboot the same way (ErrServerLost).
//
// Keys (see pxe/httpboot and docs/security.md): the kernel line carries
// only this machine's agent key (herd.agentkey), good for one
// registration. The agent registers with it and a fresh X25519 answer
// key; the server's sealed answer holds the chain key and a machine key.
// Reports and the agent's checks that the server still knows it are
// signed with the machine key; herd recv gets the chain key in a 0600
// file in RAM (--key-file) and may write only this machine's disk
// (--allow herd.disk) or, for a stage 2, only under Stage2Root (--root).
// The first agent leaves the machine key in the stage 2
// (Stage2CredentialsFile): the stage 2's agent registers with it.
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
//
// Public: what herd agent runs in the initramfs; its cmdline and client are
// the agent side of the API in docs/security.md.
package agent
