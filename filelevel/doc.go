// Package filelevel is KA's file-level cloning method over herd's chain:
// instead of disk blocks, the golden node sends its files, one tar
// stream per filesystem, and every node partitions its own disk from a
// desc (laid out for that disk's size: `fill` stretches), makes the
// filesystems, unpacks the files into them and fixes the new system up
// (fstab and boot configuration point at the new filesystems' UUIDs,
// extlinux is installed when the desc marks a boot partition, user
// hooks run in a chroot). Only used data crosses the wire, and disks of
// other sizes work.
//
// A session is an ordinary ring session. Its first item is a small
// Header (the desc and the mount point of every later item); then comes
// the PAX tar stream of each golden filesystem, made by WriteTar (modes,
// numeric owners, times, symlinks, hard links, device nodes, xattrs,
// sparse files as data runs only; excludes like `ka-d.sh -x /tmp`; other
// filesystems are not crossed); the last item is the BLAKE3 digest of
// every golden file (FileSum lines), which each node checks its unpacked
// files against.
//
// On the golden node:
//
//	s, err := filelevel.NewSender(ctx, descText, filelevel.SendOptions{From: "/mnt/golden", Excludes: []string{"/tmp"}})
//	rep, err := ring.Send(ctx, ring.SenderConfig{Key: key, Nodes: nodes, Items: s.Items()})
//
// On every node:
//
//	r, err := filelevel.NewReceiver(ctx, filelevel.ReceiverOptions{Disk: "/dev/sda"})
//	defer r.Close()
//	st, err := ring.Receive(ctx, l, ring.ReceiverConfig{Key: key, Open: r.Open})
//	res := r.Result() // plan, filesystems, fix-ups
//
// Header, ParseFstab, RewriteFstab, RewriteBootConfig and ParseFileSum
// are pure. The
// Receiver runs mkfs tools, mount, extlinux and chroot, and needs root.
//
// Public: the file-level method as herd send and herd recv run it.
package filelevel
