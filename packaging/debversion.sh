#!/bin/sh
# debversion.sh [DESCRIBE]: the Debian version of herd built from this
# checkout, made from "git describe --tags --always --dirty" (or DESCRIBE):
#   v1.2.0             -> 1.2.0
#   v1.3-rc1           -> 1.3~rc1
#   v1.2.0-5-gabc1234  -> 1.2.0+git5.abc1234
#   abc1234 (no tag)   -> 0~gitYYYYMMDDhhmmss.abc1234 (the commit's time)
# with "+dirty" when the tree had changes. Prints 0~unknown outside git.
set -eu
d=${1:-$(git describe --tags --always --dirty 2>/dev/null || true)}
[ -n "$d" ] || { echo 0~unknown; exit 0; }
dirty=
case $d in *-dirty) dirty=+dirty; d=${d%-dirty} ;; esac
case $d in
*-[0-9]*-g[0-9a-f]*)
	hash=${d##*-g}; rest=${d%-g*}; n=${rest##*-}; tag=${rest%-*}
	v=${tag#v}+git$n.$hash ;;
*)
	if git rev-parse -q --verify "refs/tags/$d" >/dev/null 2>&1; then
		v=${d#v}
	else
		t=$(TZ=UTC git log -1 --date=format-local:%Y%m%d%H%M%S --format=%cd 2>/dev/null || echo 0)
		v=0~git$t.$d
	fi ;;
esac
# A Debian version (without a revision) starts with a digit and holds only
# [A-Za-z0-9.+~]; a hyphen in a tag becomes ~ (1.3-rc1 sorts before 1.3).
v=$(printf '%s' "$v" | tr '-' '~' | tr -c 'A-Za-z0-9.+~' '.')
case $v in [0-9]*) ;; *) v=0~$v ;; esac
echo "$v$dirty"
