// Package pxee2e holds the end-to-end suite (Ginkgo v2 and Gomega) for
// the boot side of herd: QEMU machines (software emulation) boot the
// kernel and initramfs made by "herd initramfs build", the agent inside
// reads its orders from the kernel command line, and the suite checks
// what the machines print on their serial consoles and write to their
// disks.
//
// Run it like any Go tests (root, qemu-system-x86_64, busybox and apt or a
// cached kernel package in /var/cache/herd are needed; it skips without):
//
//	go test -v ./e2e/pxe/
//	go test ./e2e/pxe/ -ginkgo.focus="unreachable"
package pxee2e
