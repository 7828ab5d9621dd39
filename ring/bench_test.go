package ring

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

type nullSink struct{}

func (nullSink) WriteAt(p []byte, off int64) (int, error) { return len(p), nil }
func (nullSink) Sync() error                              { return nil }
func (nullSink) Close() error                             { return nil }

// zeroSource yields n bytes without touching memory beyond p.
type zeroSource struct{ off, n int64 }

func (z *zeroSource) ReadChunk(p []byte) (int64, int, error) {
	if z.off >= z.n {
		return 0, 0, io.EOF
	}
	k := int64(len(p))
	if z.n-z.off < k {
		k = z.n - z.off
	}
	off := z.off
	z.off += k
	return off, int(k), nil
}
func (z *zeroSource) Close() error { return nil }

// BenchmarkChainLoopback streams 256 MiB through 1 and 8 receivers on
// loopback to discarding sinks and reports the end-to-end rate, the rate
// of a bare relay chain (io.Copy from hop to hop, no checks, no acks) in
// the same run, and their ratio.
func BenchmarkChainLoopback(b *testing.B) {
	for _, nodes := range []int{1, 8} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			const size = 256 << 20
			for i := 0; i < b.N; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				var addrs []string
				errs := make(chan error, nodes)
				for j := 0; j < nodes; j++ {
					l, err := net.Listen("tcp", "127.0.0.1:0")
					if err != nil {
						b.Fatal(err)
					}
					addrs = append(addrs, l.Addr().String())
					go func() {
						defer l.Close()
						_, err := Receive(ctx, l, ReceiverConfig{Key: testKey, Open: func(Item) (Sink, error) { return nullSink{}, nil }})
						errs <- err
					}()
				}
				start := time.Now()
				rep, err := Send(ctx, SenderConfig{Key: testKey, Nodes: addrs, Items: []SendItem{{Item: Item{Name: "zero", Dest: "/dev/null", Size: size},
					Open: func() (Source, error) { return &zeroSource{n: size}, nil }}}})
				if err != nil || !rep.OK() {
					b.Fatalf("send: %v %+v", err, rep)
				}
				el := time.Since(start)
				for j := 0; j < nodes; j++ {
					if err := <-errs; err != nil {
						b.Fatal(err)
					}
				}
				cancel()
				raw := rawChain(b, nodes, size)
				b.ReportMetric(float64(size)/el.Seconds()/1e6, "MB/s")
				b.ReportMetric(float64(size)/raw.Seconds()/1e6, "raw-MB/s")
				b.ReportMetric(raw.Seconds()/el.Seconds(), "ratio")
				b.SetBytes(size)
			}
		})
	}
}

// rawChain times size bytes through n hops of plain TCP relays on loopback.
func rawChain(b *testing.B, n int, size int64) time.Duration {
	b.Helper()
	var ls []net.Listener
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		ls = append(ls, l)
	}
	done := make(chan error, n)
	for i := range ls {
		go func() {
			c, err := ls[i].Accept()
			if err != nil {
				done <- err
				return
			}
			defer c.Close()
			if i+1 == len(ls) {
				_, err = io.Copy(io.Discard, c)
				done <- err
				return
			}
			d, err := net.Dial("tcp", ls[i+1].Addr().String())
			if err != nil {
				done <- err
				return
			}
			_, err = io.Copy(d, c)
			d.Close()
			done <- err
		}()
	}
	start := time.Now()
	c, err := net.Dial("tcp", ls[0].Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 4<<20)
	for sent := int64(0); sent < size; sent += int64(len(buf)) {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	c.Close()
	for i := 0; i < n; i++ {
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start)
}
