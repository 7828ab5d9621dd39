// Package qemu starts QEMU virtual machines with software emulation
// (TCG) for tests: a virtio NIC on a tap (optionally inside a network
// namespace), a virtio disk from an image file, a kernel booted directly
// or a network or disk boot, the serial console captured so a test can
// wait for lines, a QMP monitor for reset and quit, and an emulated
// BMC that powers the VM on and off and sets its boot device over IPMI.
//
// Usage:
//
//	vm, err := qemu.Start(ctx, qemu.Config{Name: "node1", Netns: ns, Tap: tap,
//		Kernel: "vmlinuz", Initrd: "initrd.img", Append: "console=ttyS0"})
//	if err != nil { ... }
//	t.Cleanup(vm.Kill)
//	if _, err := vm.ExpectString("login:", time.Minute); err != nil { ... }
//	err = vm.Reset()
//
// A VM behind an emulated BMC (OpenIPMI's ipmi_sim) is off until
// someone powers it on over IPMI, as a machine in a rack:
//
//	b, err := qemu.StartBMC(ctx, qemu.Config{Name: "node1", Netns: ns, Tap: tap, Disk: img},
//		qemu.BMCConfig{Addr: "10.0.0.201:623", User: "admin", Password: "secret", Dir: t.TempDir()})
//	if err != nil { ... }
//	t.Cleanup(b.Kill)
//	_, err = b.IPMITool(ctx, "chassis", "bootdev", "pxe") // or herd's bmc package
//	_, err = b.IPMITool(ctx, "chassis", "power", "on")
//	_, err = b.ExpectString("iPXE", time.Minute)
//
// Public for herd's suites and benches; not part of herd's runtime.
package qemu
