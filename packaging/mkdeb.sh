#!/bin/sh
# mkdeb.sh ROOT VERSION ARCH OUT: build the Debian package OUT of herd from
# ROOT, a tree "make install DESTDIR=ROOT PREFIX=/usr" filled. Adds
# DEBIAN/control, conffiles and md5sums; files are owned by root
# (dpkg-deb --root-owner-group), so no fakeroot is needed. make deb runs it.
set -eu
root=$1 version=$2 arch=$3 out=$4
maintainer=${DEB_MAINTAINER:-herd developers <herd@localhost>}

[ -x "$root/usr/bin/herd" ] || { echo "mkdeb.sh: $root/usr/bin/herd missing: run make install DESTDIR=$root PREFIX=/usr first" >&2; exit 1; }
rm -rf "$root/DEBIAN"
mkdir -p "$root/DEBIAN"

# Runtime tools herd runs (the Makefile's DEBS less what only tests,
# benchmarks and the lab's VMs use). libc6: herd is linked against it.
# Recommends: desc apply and the file-level method (sfdisk, mkfs.*,
# extlinux), herd pxe init and initramfs (ipxe, pxelinux, busybox-static),
# BMCs (ipmitool), herd lab (iproute2, nftables). Suggests: partclone (used
# blocks of xfs, btrfs…), Secure Boot's signed shim and GRUB.
cat >"$root/DEBIAN/control" <<END
Package: herd
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: libc6 (>= 2.34)
Recommends: e2fsprogs, fdisk, xfsprogs, dosfstools, extlinux, syslinux-common, pxelinux, ipxe, busybox-static, ipmitool, iproute2, nftables
Suggests: partclone, shim-signed, grub-efi-amd64-signed
Section: admin
Priority: optional
Homepage: https://github.com/herd-cluster/herd
Description: clone an operating system from one golden node to a cluster
 herd pipes disks, partitions, images and archives from a golden node
 through a TCP chain to every node at wire speed, each node checking a
 BLAKE3 digest of what it wrote. It PXE-boots bare machines into its agent
 (DHCP, TFTP, HTTP boot), clones them, and switches them to boot their own
 disk. It reads Dolly and Dolly+ configs and KA's partition descriptions.
 .
 This package holds the herd binary, its man pages and shell completions,
 the systemd units herd-pxe.service and herd-recv@.service, and a commented
 /etc/herd/herd.yaml.
END

# Every file under /etc is a conffile: dpkg keeps the administrator's
# edits on upgrade and removes it only on purge.
(cd "$root" && find etc -type f 2>/dev/null | sort | sed 's|^|/|') >"$root/DEBIAN/conffiles"
[ -s "$root/DEBIAN/conffiles" ] || rm "$root/DEBIAN/conffiles"
(cd "$root" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -print | sed 's|^\./||' | sort | xargs md5sum) >"$root/DEBIAN/md5sums"

mkdir -p "$(dirname "$out")"
dpkg-deb --root-owner-group -Zxz --build "$root" "$out" >/dev/null
echo "$out"
