package blockdev_test

import (
	"bytes"
	"io"
	"testing"

	"github.com/herd-cluster/herd/blockdev"
	"github.com/herd-cluster/herd/blockdev/internal/unixz"
)

func benchSource(b *testing.B, p string, opts blockdev.SourceOptions, size int64) {
	buf := make([]byte, 4<<20)
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s, err := blockdev.OpenSource(p, opts)
		if err != nil {
			b.Fatal(err)
		}
		for {
			_, _, err := s.ReadChunk(buf)
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		s.Close()
	}
}

// Reading a 64 MiB file from the page cache in 4 MiB chunks.
func BenchmarkSourceFile(b *testing.B) {
	data := patterned(64<<20, 1)
	benchSource(b, writeFile(b, "f.img", data), blockdev.SourceOptions{}, int64(len(data)))
}

// The same with zero skipping (the cost of scanning every byte).
func BenchmarkSourceFileSkipZeros(b *testing.B) {
	data := patterned(64<<20, 1)
	benchSource(b, writeFile(b, "f.img", data), blockdev.SourceOptions{SkipZeros: true}, int64(len(data)))
}

// Decompressing a gzip image as a source (bytes are decompressed bytes).
func BenchmarkSourceGzip(b *testing.B) {
	data := patterned(32<<20, 1)
	benchSource(b, compressFile(b, "gzip", data), blockdev.SourceOptions{}, int64(len(data)))
}

// Decompressing a zstd image as a source.
func BenchmarkSourceZstd(b *testing.B) {
	data := patterned(32<<20, 1)
	benchSource(b, compressFile(b, "zstd", data), blockdev.SourceOptions{}, int64(len(data)))
}

// The .Z reader on its own.
func BenchmarkUnixZ(b *testing.B) {
	data := patterned(16<<20, 1)
	z := readAll(b, compressFile(b, "compress", data))
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		zr, err := unixz.NewReader(bytes.NewReader(z))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, zr); err != nil {
			b.Fatal(err)
		}
	}
}

// RunDigest over 4 MiB runs.
func BenchmarkRunDigest(b *testing.B) {
	p := patterned(4<<20, 1)
	h := blockdev.NewRunDigest()
	b.SetBytes(int64(len(p)))
	for i := 0; i < b.N; i++ {
		h.Add(int64(i)*int64(len(p)), p)
	}
}
