package unixz

import (
	"bytes"
	"errors"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// compressWith runs the real compress(1) on data with -b bits.
func compressWith(t testing.TB, data []byte, bits string) []byte {
	t.Helper()
	if _, err := exec.LookPath("compress"); err != nil {
		t.Skip("compress(1) not installed (Debian package ncompress)")
	}
	p := filepath.Join(t.TempDir(), "in")
	require.NoError(t, os.WriteFile(p, data, 0o600))
	out, err := exec.Command("compress", "-c", "-f", "-b", bits, p).Output()
	require.NoError(t, err)
	return out
}

func testInputs() map[string][]byte {
	rng := rand.New(rand.NewSource(1))
	random := make([]byte, 300<<10)
	rng.Read(random)
	text := bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog 0123456789\n"), 20000)
	mixed := make([]byte, 0, 2<<20)
	for len(mixed) < 2<<20 {
		n := rng.Intn(4000)
		if rng.Intn(2) == 0 {
			mixed = append(mixed, make([]byte, n)...)
		} else {
			mixed = append(mixed, random[:n]...)
		}
	}
	return map[string][]byte{
		"empty":  {},
		"one":    {'x'},
		"aaa":    bytes.Repeat([]byte{'a'}, 100000),
		"text":   text,
		"random": random,
		"mixed":  mixed,
	}
}

func TestAgainstCompress(t *testing.T) {
	for name, data := range testInputs() {
		for _, bits := range []string{"10", "12", "16"} { // ncompress 4.2.4 cannot itself read back -b 9 output
			t.Run(name+"/"+bits, func(t *testing.T) {
				z := compressWith(t, data, bits)
				zr, err := NewReader(bytes.NewReader(z))
				require.NoError(t, err)
				got, err := io.ReadAll(zr)
				require.NoError(t, err)
				require.Equal(t, len(data), len(got))
				require.True(t, bytes.Equal(data, got), "decompressed bytes differ")
			})
		}
	}
}

func TestCommittedFixture(t *testing.T) {
	z, err := os.ReadFile("testdata/hello.txt.Z")
	require.NoError(t, err)
	want, err := os.ReadFile("testdata/hello.txt")
	require.NoError(t, err)
	zr, err := NewReader(bytes.NewReader(z))
	require.NoError(t, err)
	got, err := io.ReadAll(zr)
	require.NoError(t, err)
	require.Equal(t, want, got)
}

func TestBadHeader(t *testing.T) {
	_, err := NewReader(bytes.NewReader([]byte{0x1f, 0x8b, 0x08}))
	require.True(t, errors.Is(err, ErrHeader), "%v", err)
	_, err = NewReader(bytes.NewReader([]byte{0x1f, 0x9d, 0x88}))
	require.True(t, errors.Is(err, ErrHeader), "%v", err)
	_, err = NewReader(bytes.NewReader([]byte{0x1f}))
	require.True(t, errors.Is(err, ErrHeader), "%v", err)
}

func TestCorruptCode(t *testing.T) {
	// header, then first code 'a' (97) and a second code far beyond the table.
	z := []byte{0x1f, 0x9d, 0x90, 0x61, 0xfe, 0x03, 0, 0, 0, 0, 0, 0, 0}
	zr, err := NewReader(bytes.NewReader(z))
	require.NoError(t, err)
	_, err = io.ReadAll(zr)
	require.True(t, errors.Is(err, ErrCorrupt), "%v", err)
}

func FuzzReader(f *testing.F) {
	if z, err := os.ReadFile("testdata/hello.txt.Z"); err == nil {
		f.Add(z)
	}
	if z, err := os.ReadFile("testdata/mixed.Z"); err == nil {
		f.Add(z)
	}
	f.Add([]byte{0x1f, 0x9d, 0x90, 0x61, 0xfe, 0x03})
	f.Fuzz(func(t *testing.T, b []byte) {
		zr, err := NewReader(bytes.NewReader(b))
		if err != nil {
			return
		}
		n, _ := io.Copy(io.Discard, io.LimitReader(zr, 16<<20))
		_ = n
	})
}
