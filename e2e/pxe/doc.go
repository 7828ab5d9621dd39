// Package pxee2e holds the end-to-end suite (Ginkgo v2 and Gomega) for
// the boot side of herd: QEMU machines (software emulation) boot the
// kernel and initramfs made by "herd initramfs build", the agent inside
// reads its orders from the kernel command line, and the suite checks
// what the machines print on their serial consoles and write to their
// disks. The specs:
//
//   - an agent that cannot reach its server retries herd.retries times
//     and reboots; one whose server dies after it registered reboots
//     within herd.timeout;
//   - an agent receives a disk image from herd send (keyed) and the disk
//     holds exactly the image: its kernel line carries only its agent
//     key, it registers with herd's real API and gets the chain key in
//     the sealed answer;
//   - herd deploy PXE-boots three machines named with --macs (its own
//     DHCP and HTTP, iPXE ROM), clones a bootable golden disk (used blocks
//     only), switches them to local boot, and each boots the golden
//     system from its disk;
//   - herd deploy --stage2 --method files --allow-unknown: two machines receive a small
//     stage 2 (busybox, mkfs.ext4, losetup, extlinux) through the chain
//     into RAM, switch to it, and their stage-2 agents partition, format
//     and fill their disks from a desc and the golden files; both boot it.
//
// Run it like any Go tests (root, qemu-system-x86_64, busybox and apt or a
// cached kernel package in /var/cache/herd are needed; it skips without):
//
//	go test -v ./e2e/pxe/
//	go test ./e2e/pxe/ -ginkgo.focus="unreachable"
package pxee2e
