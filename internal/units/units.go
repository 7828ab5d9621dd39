// Package units reads the sizes and rates herd's command line, its
// benches and its scenario files take, by one rule:
//
//   - a size is a whole number with an optional unit: none or B for bytes;
//     K, M, G, T (or KiB, MiB, GiB, TiB) for binary multiples; KB, MB, GB,
//     TB for decimal ones. Case does not matter: 512M, 512m and 512MiB
//     are 512 × 2²⁰ bytes; 512MB is 512 × 10⁶.
//   - a rate is bits per second, written with bit (bit, kbit, mbit, gbit:
//     decimal, as networks count), or bytes per second, written as a size
//     per second (125MB/s, 64M/s, 1000B/s). Anything else (100M, 8MB,
//     1000) is refused: it could be either.
//
// A desc file's sizes follow the same units, but a plain number there is
// MiB (KA's grammar; see desc.ParseSize).
//
// Internal: the CLI's one rule for sizes and rates, not an API.
package units

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxSize is the largest size accepted: 1 PiB.
const MaxSize = 1 << 50

// MaxBits is the largest rate accepted, in bits per second: 10 Tbit/s.
const MaxBits = 10e12

// SizeForms and RateForms name the accepted forms, for error messages.
const (
	SizeForms = "a whole number of bytes, or with a unit: K, M, G, T (binary: 512M = 512 MiB), KB, MB, GB, TB (decimal), B"
	RateForms = "bits per second (1gbit, 500mbit, 64kbit) or bytes per second (125MB/s, 64M/s)"
)

// ErrSyntax is wrapped by every error of this package.
var ErrSyntax = errors.New("bad size or rate")

// A SyntaxError says what value was refused and what is wanted: `bad rate
// "100M": bits or bytes per second? want …`.
type SyntaxError struct {
	What  string // "size" or "rate"
	Value string
	Why   string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("bad %s %q: %s", e.What, e.Value, e.Why) }

// Unwrap makes every SyntaxError an ErrSyntax.
func (e *SyntaxError) Unwrap() error { return ErrSyntax }

func sizeErr(s, why string) error { return &SyntaxError{"size", s, why} }
func rateErr(s, why string) error { return &SyntaxError{"rate", s, why} }

var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20,
	"g": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tib": 1 << 40,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
}

// SplitNumber splits s into its leading decimal digits and the rest, in
// lower case: "512MiB" is 512 and "mib". ok is false without digits, or
// with a number too large for an int64.
func SplitNumber(s string) (n int64, unit string, ok bool) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, "", false
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil {
		return 0, "", false
	}
	return n, strings.ToLower(s[i:]), true
}

// SizeUnit returns the multiplier of a size unit (as SplitNumber returns
// it: lower case), and whether it is one.
func SizeUnit(unit string) (int64, bool) {
	m, ok := sizeUnits[unit]
	return m, ok
}

// ParseSize reads a size in bytes (see the package doc). Zero is accepted;
// callers that need more say so.
func ParseSize(s string) (int64, error) {
	n, unit, ok := SplitNumber(strings.TrimSpace(s))
	m, known := sizeUnits[unit]
	if !ok || !known {
		return 0, sizeErr(s, "want "+SizeForms)
	}
	if n > MaxSize/m {
		return 0, sizeErr(s, "more than 1 PiB")
	}
	return n * m, nil
}

// ParseRate reads a rate and returns it in bits per second (see the
// package doc). Zero is accepted; callers that need more say so.
func ParseRate(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	if t == "0" {
		return 0, nil
	}
	bytes, perSecond := strings.CutSuffix(t, "/s")
	n, unit, ok := SplitNumber(bytes)
	if !ok {
		return 0, rateErr(s, "want "+RateForms)
	}
	if m, isBits := bitUnits[unit]; isBits && !perSecond {
		if uint64(n) > MaxBits/m {
			return 0, rateErr(s, "more than 10 Tbit/s")
		}
		return uint64(n) * m, nil
	}
	if !perSecond {
		// 100, 100M, 8MB: bits or bytes, a size or a rate?
		return 0, rateErr(s, "bits or bytes per second? Want "+RateForms)
	}
	v, err := ParseSize(bytes)
	if err != nil {
		return 0, rateErr(s, "want "+RateForms)
	}
	if uint64(v) > MaxBits/8 {
		return 0, rateErr(s, "more than 10 Tbit/s")
	}
	return uint64(v) * 8, nil
}

var bitUnits = map[string]uint64{"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12}

// FlagError names the flag a bad value was given to: "--memory: size
// "1X": want …".
func FlagError(flag string, err error) error {
	return fmt.Errorf("%s: %w", flag, err)
}
