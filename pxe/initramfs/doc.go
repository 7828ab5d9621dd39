// Package initramfs builds the kernel and initramfs that PXE-booted
// machines run: Debian's generic kernel (taken from its .deb, not
// installed; signed, so it boots under Secure Boot), the storage and
// network drivers servers use with their dependencies and an index of
// their device aliases (package kmod: the agent loads what the machine's
// devices ask for), a static busybox and the herd binary, whose
// "herd agent" /init starts.
//
// The archive is reproducible: the package's own newc cpio writer sorts
// entries and zeroes times, owners and inode noise, and gzip gets no
// name or time, so the same inputs always give the same bytes.
//
// Usage:
//
//	deb, err := initramfs.FetchKernelDeb(ctx, "/var/cache/herd", "")
//	// ...
//	err = initramfs.ExtractDeb(ctx, deb, work)
//	res, err := initramfs.Build(initramfs.Options{KernelRoot: work, Herd: "/usr/local/bin/herd"})
//	err = res.WriteFiles("/srv/herd", "vmlinuz", "initrd.img")
//
// Public: herd initramfs build and stage2 are thin commands over it.
package initramfs
