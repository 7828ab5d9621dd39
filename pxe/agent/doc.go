// Package agent is what runs in a PXE-booted machine's initramfs: it
// reads its orders from the kernel command line, brings the network up,
// registers with the herd server, receives the disk image with herd recv,
// reports the outcome and reboots. If the server cannot be reached it
// says so on the console, tries a bounded number of times and reboots to
// try PXE again, like the seed's KA and Dolly stages.
//
// Usage (this is what "herd agent" does):
//
//	b, _ := os.ReadFile("/proc/cmdline")
//	cfg, err := agent.ParseCmdline(string(b))
//	if err != nil { ... }
//	a := &agent.Agent{Config: cfg, Console: os.Stdout}
//	err = a.Run(ctx) // reboots at the end
package agent
