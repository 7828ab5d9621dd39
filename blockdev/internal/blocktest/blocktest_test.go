package blocktest

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"testing"
)

func TestMemFakes(t *testing.T) {
	data := make([]byte, 1<<20)
	for i := range data {
		if (i/5000)%3 != 0 {
			data[i] = byte(i*7 + 1)
		}
	}
	TestSource(t, SourceCase{
		Open: func(t *testing.T) Source { return NewMemSource(data, nil) },
		Want: data,
	})
	var last *MemSink
	TestSink(t, SinkCase{
		Open:        func(t *testing.T, size int64) Sink { last = NewMemSink(size); return last },
		ReadBack:    func(t *testing.T) []byte { return last.Bytes() },
		SizeChecked: true,
	})
}

// recorder is a testing.TB whose Fatalf records the failure and stops the
// goroutine, so the suite's own checks can be shown to fail.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (r *recorder) Fatal(args ...any) { r.Fatalf("%v", fmt.Sprint(args...)) }

// badSource yields a fixed list of (offset, length) runs of 'x'.
type badSource struct {
	runs [][2]int64
	i    int
}

func (b *badSource) ReadChunk(p []byte) (int64, int, error) {
	if b.i >= len(b.runs) {
		return 0, 0, io.EOF
	}
	r := b.runs[b.i]
	b.i++
	n := copy(p, bytes.Repeat([]byte{'x'}, int(r[1])))
	return r[0], n, nil
}
func (b *badSource) Close() error { return nil }

func TestDrainCatchesViolations(t *testing.T) {
	for name, runs := range map[string][][2]int64{
		"overlap":   {{0, 10}, {5, 10}},
		"backwards": {{100, 10}, {0, 10}},
		"empty-run": {{0, 0}},
		"negative":  {{-1, 3}},
	} {
		t.Run(name, func(t *testing.T) {
			r := &recorder{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				Drain(r, &badSource{runs: runs}, 64)
			}()
			<-done
			if r.failed == "" {
				t.Fatalf("Drain accepted %v", runs)
			}
		})
	}
}
