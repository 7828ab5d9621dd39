package blocktest

import (
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
