#!/usr/bin/env bash
# demo.sh: clone a golden disk to a whole lab cluster on this one machine.
#
# Brings up a lab of N nodes (herd lab up), makes a golden disk with an ext4
# filesystem and files on it, makes a session key (herd key new) and copies
# it into every node, starts `herd recv --key-file ... --allow DISK` in every
# node (it writes nothing else), clones the
# disk with `herd send` from the golden namespace, verifies every node (the
# BLAKE3 digests of the summary, sha256 of each node's disk against the
# golden image, e2fsck -n and a file read back on each node), prints the
# summary and takes the lab down, whatever happens (trap on exit).
#
# Run as root after `make deps build` (or just `make demo`).
# Environment: N (nodes, 8), SIZE (disk, 256M), RATE (link rate, 1gbit),
# LAB (lab name, demo), HERD (herd binary, bin/herd).
set -euo pipefail

cd "$(dirname "$0")/.."
N=${N:-8}
SIZE=${SIZE:-256M}
RATE=${RATE:-1gbit}
LAB=${LAB:-demo}
HERD=$(readlink -f "${HERD:-bin/herd}")

say() { printf '\n== %s\n' "$*"; }
die() { printf 'demo: FAILED: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (namespaces and loop devices)"
[ -x "$HERD" ] || die "no herd binary at $HERD (run: make build)"
for t in mkfs.ext4 e2fsck sha256sum; do
	command -v "$t" >/dev/null || die "$t missing (run: make deps)"
done

work=$(mktemp -d /var/tmp/herd-demo.XXXXXX)
pids=()
cleanup() {
	local rc=$?
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	"$HERD" lab down --name "$LAB" >/dev/null 2>&1 || true
	rm -rf "$work"
	if [ $rc -eq 0 ]; then echo "demo: OK, lab $LAB is down"; else echo "demo: lab $LAB is down (exit $rc)" >&2; fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "lab: $N nodes, $SIZE disk each, links at $RATE"
"$HERD" lab down --name "$LAB" >/dev/null # a lab left by an earlier run
"$HERD" lab up --name "$LAB" -n "$N" --disk "$SIZE" --rate "$RATE"

say "golden disk: ext4 with files, $SIZE"
root=$work/root
mkdir -p "$root/etc" "$root/home/demo" "$root/var/lib/data"
cp /etc/os-release "$root/etc/os-release"
echo "cloned by herd on $(date -u +%FT%TZ)" >"$root/etc/motd"
size_bytes=$(numfmt --from=iec "$SIZE")
# Four random files filling a quarter of the disk.
for i in 1 2 3 4; do head -c $((size_bytes / 16)) /dev/urandom >"$root/var/lib/data/blob$i"; done
seq 1 200000 >"$root/home/demo/numbers.txt"
truncate -s "$SIZE" "$work/golden.img"
mkfs.ext4 -q -F -L golden -d "$root" "$work/golden.img"
golden_sha=$(sha256sum <"$work/golden.img" | cut -d' ' -f1)
motd_sha=$(sha256sum <"$root/etc/motd" | cut -d' ' -f1)
echo "golden.img sha256 $golden_sha"

say "session key: herd key new, copied to every node"
# As on a real cluster: one key, made once, copied to each machine (here
# into each node's private /run/herd-lab/node), mode 0600. A node writes
# only for a sender that proves it holds the same key.
key=$work/key
"$HERD" key new "$key"
nodekey=/run/herd-lab/node/key
disk=/run/herd-lab/node/disk
for i in $(seq 1 "$N"); do
	"$HERD" lab exec --name "$LAB" "node$i" -- install -m 600 "$key" "$nodekey"
	id=$("$HERD" lab exec --name "$LAB" "node$i" -- "$HERD" key show-id "$nodekey" | cut -d' ' -f1)
	[ "$id" = "$("$HERD" key show-id "$key" | cut -d' ' -f1)" ] || die "node$i holds key $id, not the golden node's"
done
echo "every node holds key $("$HERD" key show-id "$key" | cut -d' ' -f1)"

say "herd recv in every node (its key; it may write its disk only)"
addrs=()
for i in $(seq 1 "$N"); do
	"$HERD" lab exec --name "$LAB" "node$i" -- "$HERD" recv --json --key-file "$nodekey" --allow "$disk" \
		>"$work/recv$i.json" 2>"$work/recv$i.err" &
	pids+=($!)
	addrs+=("10.99.0.$((10 + i))")
done

cfg=$work/dolly.cfg
{
	echo "infile $work/golden.img"
	echo "outfile $disk"
	echo "server golden"
	echo "firstclient ${addrs[0]}"
	echo "lastclient ${addrs[$((N - 1))]}"
	echo "clients $N"
	printf '%s\n' "${addrs[@]}"
	echo "endconfig"
} >"$cfg"

say "herd send from golden"
cat "$cfg"
start=$(date +%s.%N)
set +e
"$HERD" lab exec --name "$LAB" golden -- "$HERD" send -f "$cfg" --key-file "$key" --json >"$work/send.json" 2>"$work/send.err"
send_rc=$?
set -e
end=$(date +%s.%N)
[ $send_rc -eq 0 ] || { cat "$work/send.err" >&2; die "herd send exited $send_rc"; }
fail=0
for i in $(seq 1 "$N"); do
	if ! wait "${pids[$((i - 1))]}"; then
		echo "node$i: herd recv failed:" >&2
		cat "$work/recv$i.err" >&2
		fail=1
	fi
done
pids=()
[ $fail -eq 0 ] || die "a receiver failed"

say "verify"
summary=$(grep '"event":"summary"' "$work/send.json" | tail -n 1)
[ -n "$summary" ] || die "no summary line in the output of herd send"
grep -q '"ok":true' <<<"$summary" || die "summary says not ok: $summary"
digest=$(grep -o '"digest":"[0-9a-f]*"' <<<"$summary" | head -n 1 | cut -d'"' -f4)
[ -n "$digest" ] || die "summary has no digest"
nodes=${summary#*\"nodes\":\[} # the per-node part of the summary
ndone=$(grep -o '"state":"done"' <<<"$nodes" | wc -l)
nver=$(grep -o '"verified":true' <<<"$nodes" | wc -l)
ndig=$(grep -o "\"digest\":\"$digest\"" <<<"$nodes" | wc -l)
echo "summary: $ndone of $N nodes done, $nver verified, golden digest $digest on $ndig nodes"
[ "$ndone" -eq "$N" ] || die "only $ndone of $N nodes done"
[ "$nver" -eq "$N" ] || die "only $nver of $N nodes verified"
[ "$ndig" -eq "$N" ] || die "golden digest found on $ndig of $N nodes"

for i in $(seq 1 "$N"); do
	node_sha=$("$HERD" lab exec --name "$LAB" "node$i" -- sha256sum /run/herd-lab/node/disk | cut -d' ' -f1)
	[ "$node_sha" = "$golden_sha" ] || die "node$i: disk sha256 $node_sha, golden $golden_sha"
	"$HERD" lab exec --name "$LAB" "node$i" -- e2fsck -fn /run/herd-lab/node/disk >"$work/fsck$i.txt" 2>&1 ||
		{ cat "$work/fsck$i.txt" >&2; die "node$i: e2fsck -n found errors"; }
	# Mount the node's own disk inside the node (its private mount namespace).
	file_sha=$("$HERD" lab exec --name "$LAB" "node$i" -- sh -c \
		'mkdir -p /run/herd-lab/node/mnt && mount -o ro /run/herd-lab/node/disk /run/herd-lab/node/mnt &&
		 sha256sum </run/herd-lab/node/mnt/etc/motd; umount /run/herd-lab/node/mnt' | cut -d' ' -f1)
	[ "$file_sha" = "$motd_sha" ] || die "node$i: /etc/motd on the clone differs"
	echo "node$i 10.99.0.$((10 + i)): sha256 ok, e2fsck clean, files readable"
done

say "summary"
awk -v s="$start" -v e="$end" -v n="$N" -v size="$(stat -c %s "$work/golden.img")" 'BEGIN {
	t = e - s; printf "%d nodes, %.0f MiB each, %.2f s, %.1f MB/s per node\n", n, size / 1048576, t, size / t / 1e6 }'
