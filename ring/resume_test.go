package ring

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTCPSourceResumes stops the source 40% into the stream (as if it was
// killed) and starts it again with the same resume file: the nodes still
// wait for their upstream, node 0 says how far it got, and the source
// sends only the rest. Every node ends verified.
func TestTCPSourceResumes(t *testing.T) {
	const total = 16 << 20
	ctx1, stop := context.WithCancel(context.Background())
	defer stop()
	var once sync.Once
	c := startCluster(t, 3, func(i int, rc *ReceiverConfig) {
		rc.MemoryLimit = 16 * bufBytes(64<<10)
		if i == 2 {
			rc.Open = func(it Item) (Sink, error) {
				return &crashSink{limit: total * 2 / 5, crash: func() { once.Do(stop) }}, nil
			}
		}
	})
	a := randomData(51, total)
	items := []SendItem{bytesItem("a", a)}
	path := filepath.Join(t.TempDir(), "resume.json")
	r, err := ResumeFile(path, c.addrs, []Item{items[0].Item})
	require.NoError(t, err)
	require.False(t, r.Resumed)
	st, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "the resume file holds the data key")
	_, err = Send(ctx1, SenderConfig{Key: testKey, Nodes: c.addrs, Session: r.Session, DataKey: r.DataKey, DeadTimeout: testDead, ChunkSize: 64 << 10, MemoryLimit: 1 << 20, Items: items})
	require.ErrorIs(t, err, context.Canceled)

	r2, err := ResumeFile(path, c.addrs, []Item{items[0].Item})
	require.NoError(t, err)
	require.True(t, r2.Resumed)
	require.Equal(t, r.Session, r2.Session)
	require.Equal(t, r.DataKey, r2.DataKey)
	var sent atomic.Int64
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countConn{conn, &sent}, nil
	}
	rep, err := Send(context.Background(), SenderConfig{Key: testKey, Nodes: c.addrs, Session: r2.Session, DataKey: r2.DataKey, DeadTimeout: testDead, ChunkSize: 64 << 10, Items: items, Dial: dial,
		Logf: func(f string, a ...any) { t.Logf("source: "+f, a...) }})
	require.NoError(t, err)
	require.True(t, rep.OK(), "%+v", rep.Nodes)
	t.Logf("the resumed source sent %d of %d bytes", sent.Load(), total)
	assert.Less(t, sent.Load(), int64(total)*3/4, "the resumed source did not send everything again")
	for i := range c.addrs {
		r := c.wait(i)
		require.NoError(t, r.err, "node %d", i)
		assert.Equal(t, rep.Items[0].Digest, r.st.Items[0].Digest)
	}
	assert.Equal(t, b3hex(a), b3hex(c.sinks[0].get("/out/a").bytes()))
	assert.Equal(t, b3hex(a), b3hex(c.sinks[1].get("/out/a").bytes()))
}

func TestResumeFileRefusesAnotherSession(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resume.json")
	its := []Item{{Name: "img", Dest: "/dev/sda", Size: 10}}
	_, err := ResumeFile(path, []string{"a:1"}, its)
	require.NoError(t, err)
	_, err = ResumeFile(path, []string{"b:1"}, its)
	assert.ErrorIs(t, err, ErrResume)
	_, err = ResumeFile(path, []string{"a:1"}, []Item{{Name: "img", Dest: "/dev/sdb", Size: 10}})
	assert.ErrorIs(t, err, ErrResume)
	require.NoError(t, os.WriteFile(path, []byte(`{"version":2,"session":"xyz","nodes":["a:1"]}`), 0o600))
	_, err = ResumeFile(path, []string{"a:1"}, its)
	assert.ErrorIs(t, err, ErrResume)
	assert.Contains(t, err.Error(), "32 hex digits")
	require.NoError(t, os.WriteFile(path, []byte(`{"version":1,"session":"00000000000000000000000000000000","nodes":["a:1"]}`), 0o600))
	_, err = ResumeFile(path, []string{"a:1"}, its)
	assert.ErrorIs(t, err, ErrResume)
	assert.Contains(t, err.Error(), "version 1")
}

func FuzzParseResume(f *testing.F) {
	dir := f.TempDir()
	path := filepath.Join(dir, "r.json")
	if _, err := ResumeFile(path, []string{"n1:9998", "n2:9998"}, []Item{{Name: "/dev/sda", Dest: "/dev/sda", Size: 1 << 30}}); err != nil {
		f.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	f.Add(b)
	f.Add([]byte(`{"version":2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := parseResume(b)
		if err != nil {
			return
		}
		if len(st.Nodes) == 0 || len(st.Session) != 32 {
			t.Fatalf("accepted %q", b)
		}
	})
}
