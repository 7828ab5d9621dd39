// Package tartest builds tar archives that archive/tar does not write
// (GNU and PAX sparse entries of any declared size), for tests and fuzz
// seeds. Test support only: no production code imports it.
//
// Usage:
//
//	var b bytes.Buffer
//	b.Write(tartest.SparsePAX10("big", 1<<50, []tarstream.Fragment{{Off: 1 << 40, Len: 3}}))
//	b.Write(tartest.End())
//
// Internal: test support.
package tartest

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/herd-cluster/herd/blockdev/tarstream"
)

// Block returns a ustar header block (GNU layout when gnu is set) with a
// valid checksum.
func Block(name string, typeflag byte, size, mode int64, gnu bool) []byte {
	b := make([]byte, 512)
	copy(b[0:100], name)
	number(b[100:108], mode)
	number(b[108:116], 0)
	number(b[116:124], 0)
	number(b[124:136], size)
	number(b[136:148], 1700000000)
	b[156] = typeflag
	if gnu {
		copy(b[257:265], "ustar  \x00")
	} else {
		copy(b[257:265], "ustar\x0000")
	}
	Sum(b)
	return b
}

// Sum sets the checksum of header block b.
func Sum(b []byte) {
	copy(b[148:156], "        ")
	var s int64
	for _, c := range b[:512] {
		s += int64(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", s))
}

// number writes v as octal, or base-256 when it does not fit.
func number(f []byte, v int64) {
	s := fmt.Sprintf("%0*o", len(f)-1, v)
	if len(s) < len(f) {
		copy(f, s)
		f[len(f)-1] = 0
		return
	}
	for i := len(f) - 1; i > 0; i-- {
		f[i] = byte(v)
		v >>= 8
	}
	f[0] = 0x80
}

// PAX returns an 'x' header with the records (key, value pairs in order).
func PAX(kv ...string) []byte {
	var recs bytes.Buffer
	for i := 0; i+1 < len(kv); i += 2 {
		r := " " + kv[i] + "=" + kv[i+1] + "\n"
		n := len(r) + len(fmt.Sprint(len(r)))
		n = len(r) + len(fmt.Sprint(n)) // the length counts its own digits
		fmt.Fprintf(&recs, "%d%s", n, r)
	}
	return append(Block("PaxHeaders/x", 'x', int64(recs.Len()), 0o644, false), pad(recs.Bytes())...)
}

func pad(b []byte) []byte {
	return append(b, make([]byte, -len(b)&511)...)
}

// data returns the fragments' bytes: each fragment's bytes are 'd'.
func data(frags []tarstream.Fragment) []byte {
	var n int64
	for _, f := range frags {
		n += f.Len
	}
	return bytes.Repeat([]byte("d"), int(n))
}

// SparsePAX10 returns a PAX 1.0 sparse entry (GNU tar --sparse
// --format=posix): the map is at the start of the data.
func SparsePAX10(name string, real int64, frags []tarstream.Fragment) []byte {
	var m strings.Builder
	fmt.Fprintf(&m, "%d\n", len(frags))
	for _, f := range frags {
		fmt.Fprintf(&m, "%d\n%d\n", f.Off, f.Len)
	}
	body := append(pad([]byte(m.String())), data(frags)...)
	out := PAX("GNU.sparse.major", "1", "GNU.sparse.minor", "0",
		"GNU.sparse.name", name, "GNU.sparse.realsize", fmt.Sprint(real))
	out = append(out, Block("GNUSparseFile.0/"+name, '0', int64(len(body)), 0o644, false)...)
	return append(out, pad(body)...)
}

// SparsePAX01 returns a PAX 0.1 sparse entry (the map in GNU.sparse.map).
func SparsePAX01(name string, real int64, frags []tarstream.Fragment) []byte {
	var m []string
	for _, f := range frags {
		m = append(m, fmt.Sprint(f.Off), fmt.Sprint(f.Len))
	}
	body := data(frags)
	out := PAX("GNU.sparse.major", "0", "GNU.sparse.minor", "1", "GNU.sparse.name", name,
		"GNU.sparse.size", fmt.Sprint(real), "GNU.sparse.map", strings.Join(m, ","))
	out = append(out, Block("GNUSparseFile.0/"+name, '0', int64(len(body)), 0o644, false)...)
	return append(out, pad(body)...)
}

// SparseGNU returns an old GNU sparse entry ('S', --format=gnu), with
// extension blocks past four fragments.
func SparseGNU(name string, real int64, frags []tarstream.Fragment) []byte {
	body := data(frags)
	h := Block(name, 'S', int64(len(body)), 0o644, true)
	number(h[483:495], real)
	put := func(e []byte, f tarstream.Fragment) {
		number(e[:12], f.Off)
		number(e[12:24], f.Len)
	}
	rest := frags
	for i := 0; i < 4 && len(rest) > 0; i++ {
		put(h[386+24*i:], rest[0])
		rest = rest[1:]
	}
	var ext []byte
	if len(rest) > 0 {
		h[482] = 1
	}
	for len(rest) > 0 {
		e := make([]byte, 512)
		for i := 0; i < 21 && len(rest) > 0; i++ {
			put(e[24*i:], rest[0])
			rest = rest[1:]
		}
		if len(rest) > 0 {
			e[504] = 1
		}
		ext = append(ext, e...)
	}
	Sum(h)
	out := append(h, ext...)
	return append(out, pad(body)...)
}

// File returns a plain regular file entry holding body.
func File(name string, body []byte, mode int64) []byte {
	return append(Block(name, '0', int64(len(body)), mode, false), pad(body)...)
}

// End returns the two zero blocks that end an archive.
func End() []byte { return make([]byte, 1024) }
