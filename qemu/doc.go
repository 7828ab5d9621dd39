// Package qemu starts QEMU virtual machines with software emulation
// (TCG) for tests: a virtio NIC on a tap (optionally inside a network
// namespace), a virtio disk from an image file, a kernel booted directly
// or a network or disk boot, the serial console captured so a test can
// wait for lines, and a QMP monitor for reset and quit.
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
// Public for herd's suites and benches; not part of herd's runtime.
package qemu
