package units

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"4096": 4096, "0": 0, "4096B": 4096, "1k": 1 << 10, "512M": 512 << 20, "512m": 512 << 20,
		"512MiB": 512 << 20, "2G": 2 << 30, "2GiB": 2 << 30, "1T": 1 << 40, "1tib": 1 << 40,
		"512MB": 512e6, "2GB": 2e9, "64KB": 64e3, "1TB": 1e12, " 8M ": 8 << 20, "1024T": 1 << 50,
	} {
		got, err := ParseSize(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "M", "-5M", "1.5G", "big", "12Q", "5 M", "1025T", "99999999999999999999", "0x10"} {
		_, err := ParseSize(in)
		assert.ErrorIs(t, err, ErrSyntax, in)
	}
	_, err := ParseSize("2X")
	assert.EqualError(t, err, `bad size "2X": want `+SizeForms)
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]uint64{
		"0": 0, "1gbit": 1e9, "500mbit": 500e6, "64kbit": 64e3, "100bit": 100, "2Gbit": 2e9,
		"125MB/s": 1e9, "64M/s": 64 << 23, "1000B/s": 8000, "1000/s": 8000, "8MB/s": 64e6, "1MiB/s": 8 << 20,
		"12783557B/s": 8 * 12783557,
	} {
		got, err := ParseRate(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "fast", "-1gbit", "gbit", "2.5gbit", "100", "100M", "8MB", "1e20", "5mbit/s", "20tbit", "2TB/s", "/s"} {
		_, err := ParseRate(in)
		assert.ErrorIs(t, err, ErrSyntax, in)
	}
	_, err := ParseRate("100M")
	assert.ErrorContains(t, err, "bits or bytes per second?")
	assert.ErrorContains(t, err, RateForms)
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"4096", "2G", "512MB", "1.5G", "99999999999999999999T", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseSize(s)
		if err == nil && (v < 0 || v > MaxSize) {
			t.Fatalf("%q: %d", s, v)
		}
	})
}

func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"1gbit", "125MB/s", "8MB/s", "100M", "0", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseRate(s)
		if err == nil && v > MaxBits {
			t.Fatalf("%q: %d", s, v)
		}
	})
}
