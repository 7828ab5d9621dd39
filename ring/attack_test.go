package ring

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/ring/seal"
	"github.com/herd-cluster/herd/ring/wire"
)

// The tests in this file attack the chain as someone on the network would
// (without the key), or as a key holder sending malformed sequences, and
// assert the outcome: nothing written that the source did not send, the
// receiver alive, the sender's report true.

// mitm is a man in the middle between a node and the next: it relays
// whole frames (their headers are in clear), and tamper may change, drop,
// reorder or add frames of either direction (down: from the upstream).
// Only the first connection through it is tampered with; later ones (a
// reconnection after the hop failed) are relayed as they are.
type mitm struct {
	t       *testing.T
	target  string
	ln      net.Listener
	tamper  func(down bool, f []byte) [][]byte
	mu      sync.Mutex
	conns   int
	seen    bytes.Buffer // every byte from the upstream, as it crossed
	tampers atomic.Int64
}

func newMITM(t *testing.T, target string, tamper func(down bool, f []byte) [][]byte) *mitm {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	m := &mitm{t: t, target: target, ln: ln, tamper: tamper}
	t.Cleanup(func() { ln.Close() })
	go m.serve()
	return m
}

func (m *mitm) addr() string { return m.ln.Addr().String() }

func (m *mitm) serve() {
	for {
		c, err := m.ln.Accept()
		if err != nil {
			return
		}
		m.mu.Lock()
		m.conns++
		first := m.conns == 1
		m.mu.Unlock()
		d, err := net.Dial("tcp", m.target)
		if err != nil {
			c.Close()
			continue
		}
		m.t.Cleanup(func() { c.Close(); d.Close() })
		go m.relay(c, d, true, first)
		go m.relay(d, c, false, first)
	}
}

// relay copies frames from src to dst.
func (m *mitm) relay(src, dst net.Conn, down, tamper bool) {
	defer dst.Close()
	defer src.Close()
	for {
		var h [wire.HeaderSize]byte
		if _, err := io.ReadFull(src, h[:]); err != nil {
			return
		}
		n := binary.LittleEndian.Uint32(h[4:])
		if n > wire.MaxBody {
			return
		}
		f := make([]byte, wire.HeaderSize+int(n))
		copy(f, h[:])
		if _, err := io.ReadFull(src, f[wire.HeaderSize:]); err != nil {
			return
		}
		if down {
			m.mu.Lock()
			m.seen.Write(f)
			m.mu.Unlock()
		}
		out := [][]byte{f}
		if tamper && m.tamper != nil {
			out = m.tamper(down, f)
		}
		for _, g := range out {
			if _, err := dst.Write(g); err != nil {
				return
			}
		}
	}
}

func (m *mitm) sawClear(s string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return bytes.Contains(m.seen.Bytes(), []byte(s))
}

// nthOf returns a tamper that applies fn to the n-th frame of type typ
// going down (0-based), once.
func nthOf(typ wire.Type, n int, fn func(f []byte) [][]byte) (func(bool, []byte) [][]byte, *atomic.Int64) {
	var seen, done atomic.Int64
	return func(down bool, f []byte) [][]byte {
		if !down || wire.Type(f[2]) != typ {
			return [][]byte{f}
		}
		if int(seen.Add(1)-1) != n || !done.CompareAndSwap(0, 1) {
			return [][]byte{f}
		}
		return fn(f)
	}, &done
}

// chainBehind starts n receivers and puts a man in the middle in front of
// node at: the source (or node at-1) reaches it through the proxy.
func chainBehind(t *testing.T, n, at int, tamper func(bool, []byte) [][]byte) (*cluster, *mitm, []string) {
	// The defaults of a real node: a node cut off by the attacker is
	// bypassed within about a second.
	c := startCluster(t, n, func(i int, rc *ReceiverConfig) { rc.DeadTimeout, rc.UpstreamWait = 0, 0 })
	m := newMITM(t, c.addrs[at], tamper)
	addrs := append([]string(nil), c.addrs...)
	addrs[at] = m.addr()
	return c, m, addrs
}

// A man in the middle sees nothing in clear: not the destinations, not
// the data.
func TestAttackNothingInClear(t *testing.T) {
	c, m, addrs := chainBehind(t, 2, 0, nil)
	secret := bytes.Repeat([]byte("TOP SECRET CONTENT "), 100000)
	items := []SendItem{{Item: Item{Name: "secret.img", Dest: "/etc/very/secret/path", Size: int64(len(secret))},
		Open: func() (Source, error) { return ReaderSource(io.NopCloser(bytes.NewReader(secret))), nil }}}
	rep, err := Send(context.Background(), SenderConfig{Key: testKey, Nodes: addrs, DeadTimeout: testDead, Items: items})
	require.NoError(t, err)
	require.True(t, rep.OK(), "%+v", rep.Nodes)
	for i := range addrs {
		require.NoError(t, c.wait(i).err)
		assert.Equal(t, secret, c.sinks[i].get("/etc/very/secret/path").bytes())
	}
	assert.False(t, m.sawClear("/etc/very/secret/path"), "the destination crossed in clear")
	assert.False(t, m.sawClear("TOP SECRET"), "the data crossed in clear")
	assert.False(t, m.sawClear(addrs[1]), "the chain's addresses crossed in clear")
	assert.False(t, m.sawClear(string(testKey)), "the key crossed")
}

// Changing the manifest on the way (where the destination is) ends the
// hop before anything is opened: the node refuses it and waits for a
// session again, the chain goes on without it, and it is taken back at the
// tail (a rejoin) with the source's manifest: every node ends with the
// source's bytes at the source's destination.
func TestAttackRewrittenManifest(t *testing.T) {
	tamper, done := nthOf(wire.TManifest, 0, func(f []byte) [][]byte {
		g := append([]byte(nil), f...)
		g[len(g)/2] ^= 0x20 // a byte of the sealed manifest
		return [][]byte{g}
	})
	c, _, addrs := chainBehind(t, 2, 0, tamper)
	a := randomData(90, 8<<20)
	rep, err := Send(context.Background(), SenderConfig{Key: testKey, Nodes: addrs, Rejoin: 20 * time.Millisecond,
		ChunkSize: 64 << 10, Items: []SendItem{bytesItem("a", a)}})
	require.NoError(t, err)
	require.Equal(t, int64(1), done.Load(), "the manifest was tampered with")
	require.True(t, rep.OK(), "%+v", rep.Nodes)
	for i := range addrs {
		require.NoError(t, c.wait(i).err)
		assert.Equal(t, b3hex(a), b3hex(c.sinks[i].get("/out/a").bytes()), "node %d", i)
		for dest := range c.sinks[i].sinks {
			assert.Equal(t, "/out/a", dest, "node %d opened something the source did not send", i)
		}
	}
}

// Reordering, dropping, duplicating or altering data frames on the way
// never gets bytes written that the source did not send: the hop fails
// (the upstream then bypasses or reconnects) and every node that ends
// done holds the source's bytes.
func TestAttackDataFrames(t *testing.T) {
	a := randomData(91, 8<<20)
	swap := func() func(bool, []byte) [][]byte {
		var held []byte
		var n atomic.Int64
		return func(down bool, f []byte) [][]byte {
			if !down || wire.Type(f[2]) != wire.TData {
				return [][]byte{f}
			}
			switch n.Add(1) {
			case 3:
				held = f
				return nil
			case 4:
				return [][]byte{f, held}
			}
			return [][]byte{f}
		}
	}
	for name, tamper := range map[string]func(bool, []byte) [][]byte{
		"reorder": swap(),
		"drop": func() func(bool, []byte) [][]byte {
			t, _ := nthOf(wire.TData, 2, func([]byte) [][]byte { return nil })
			return t
		}(),
		"duplicate": func() func(bool, []byte) [][]byte {
			t, _ := nthOf(wire.TData, 2, func(f []byte) [][]byte { return [][]byte{f, f} })
			return t
		}(),
		"flip a payload bit": func() func(bool, []byte) [][]byte {
			t, _ := nthOf(wire.TData, 2, func(f []byte) [][]byte {
				g := append([]byte(nil), f...)
				g[wire.DataHeaderSize+100] ^= 1
				return [][]byte{g}
			})
			return t
		}(),
		"flip the compressed flag": func() func(bool, []byte) [][]byte {
			t, _ := nthOf(wire.TData, 2, func(f []byte) [][]byte {
				g := append([]byte(nil), f...)
				g[3] = wire.FlagZstd
				return [][]byte{g}
			})
			return t
		}(),
		"move a chunk": func() func(bool, []byte) [][]byte {
			t, _ := nthOf(wire.TData, 2, func(f []byte) [][]byte {
				g := append([]byte(nil), f...)
				binary.LittleEndian.PutUint64(g[wire.HeaderSize+16+4+8:], 0) // offset 0
				return [][]byte{g}
			})
			return t
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			c, _, addrs := chainBehind(t, 3, 1, tamper)
			rep, err := Send(context.Background(), SenderConfig{Key: testKey, Nodes: addrs, Rejoin: 20 * time.Millisecond,
				ChunkSize: 64 << 10, Items: []SendItem{bytesItem("a", a)}})
			require.NoError(t, err)
			for i := range addrs {
				c.wait(i)
				if rep.Nodes[i].State == StateDone {
					assert.Equal(t, b3hex(a), b3hex(c.sinks[i].get("/out/a").bytes()), "node %d is done: it must hold the source's bytes", i)
					assert.Equal(t, rep.Items[0].Digest, rep.Nodes[i].Items[0].Digest)
				}
			}
			t.Logf("attacked node 1: %s %s", rep.Nodes[1].State, rep.Nodes[1].Err)
			assert.Equal(t, StateDone, rep.Nodes[0].State, "node 0 is not behind the attacker")
			assert.Equal(t, StateDone, rep.Nodes[2].State, "node 2 is reached around or through the bad hop: %s", rep.Nodes[2].Err)
		})
	}
}

// A recorded session replayed to a receiver later writes nothing: the
// Hello's handshake message alone does not make a hop (the peer must
// answer the receiver's fresh ephemeral key).
func TestAttackReplayedSession(t *testing.T) {
	c, m, addrs := chainBehind(t, 1, 0, nil)
	a := randomData(92, 512<<10)
	rep, err := Send(context.Background(), SenderConfig{Key: testKey, Nodes: addrs, DeadTimeout: testDead, Items: []SendItem{bytesItem("a", a)}})
	require.NoError(t, err)
	require.True(t, rep.OK())
	require.NoError(t, c.wait(0).err)
	m.mu.Lock()
	recorded := append([]byte(nil), m.seen.Bytes()...)
	m.mu.Unlock()

	// Replay it all to a fresh receiver with the same key.
	c2 := startCluster(t, 1, nil)
	conn, err := net.Dial("tcp", c2.addrs[0])
	require.NoError(t, err)
	defer conn.Close()
	_, _ = conn.Write(recorded)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	io.Copy(io.Discard, conn) // the receiver hangs up
	assert.Nil(t, c2.sinks[0].get("/out/a"), "a replayed session wrote something")
	select {
	case r := <-c2.results[0]:
		t.Fatalf("the receiver ended: %+v %v", r.st, r.err)
	default:
	}
	// and it still takes a real session.
	rep, err = Send(context.Background(), SenderConfig{Key: testKey, Nodes: c2.addrs, DeadTimeout: testDead, Items: []SendItem{bytesItem("a", a)}})
	require.NoError(t, err)
	require.True(t, rep.OK())
}

// Peers that have not proved the key cost a receiver almost nothing: huge
// Hellos are refused from their header, a flood of connections is cut
// at the handshake limit, slow ones at the deadline; and the receiver
// still takes a real session.
func TestAttackHandshakeFlood(t *testing.T) {
	c := startCluster(t, 1, func(i int, rc *ReceiverConfig) { rc.HelloTimeout = time.Second })
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var conns []net.Conn
	defer func() {
		for _, cn := range conns {
			cn.Close()
		}
	}()
	// 40 peers announcing 16 MiB Hellos and sending them.
	big := make([]byte, 16<<20)
	copy(big, []byte{'h', 'd', byte(wire.THello), 0})
	binary.LittleEndian.PutUint32(big[4:], 16<<20-wire.HeaderSize)
	var wg sync.WaitGroup
	for i := 0; i < 40; i++ {
		cn, err := net.Dial("tcp", c.addrs[0])
		require.NoError(t, err)
		conns = append(conns, cn)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = cn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			cn.Write(big)
		}()
	}
	// 200 silent connections, more than the limit.
	closedEarly := 0
	for i := 0; i < 200; i++ {
		cn, err := net.Dial("tcp", c.addrs[0])
		require.NoError(t, err)
		conns = append(conns, cn)
	}
	wg.Wait()
	for _, cn := range conns[40:] {
		_ = cn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		var b [1]byte
		if _, err := cn.Read(b[:]); errors.Is(err, io.EOF) {
			closedEarly++
		}
	}
	assert.GreaterOrEqual(t, closedEarly, 200-maxHandshakes, "connections beyond the handshake limit are closed at once")
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("heap in use grew by %d KiB for %d hostile connections", grew/1024, len(conns))
	assert.Less(t, grew, int64(8<<20), "hostile connections before authentication cost memory")
	// Every silent one is dropped at the deadline.
	time.Sleep(1500 * time.Millisecond)
	for _, cn := range conns[40:] {
		_ = cn.SetReadDeadline(time.Now().Add(2 * time.Second))
		var b [1]byte
		_, err := cn.Read(b[:])
		require.Error(t, err, "a silent peer is dropped")
		var ne net.Error
		assert.False(t, errors.As(err, &ne) && ne.Timeout(), "a silent peer is still held after the handshake deadline")
	}
	a := randomData(93, 256<<10)
	rep, err := Send(context.Background(), SenderConfig{Key: testKey, Nodes: c.addrs, DeadTimeout: testDead, Items: []SendItem{bytesItem("a", a)}})
	require.NoError(t, err)
	require.True(t, rep.OK(), "%+v", rep.Nodes)
}

// A peer of another protocol version is refused with a message naming
// both versions, both ways.
func TestAttackOtherVersion(t *testing.T) {
	c := startCluster(t, 1, nil)
	// A version 1 Hello (as herd before the sealed chain sent it).
	conn, err := net.Dial("tcp", c.addrs[0])
	require.NoError(t, err)
	defer conn.Close()
	body := append([]byte("HERDRNG1"), make([]byte, 16+4+1+32)...)
	h := []byte{'h', 'd', byte(wire.THello), 0, 0, 0, 0, 0}
	binary.LittleEndian.PutUint32(h[4:], uint32(len(body)))
	_, err = conn.Write(append(h, body...))
	require.NoError(t, err)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	m, _, err := readAll(conn)
	require.NoError(t, err)
	rj, ok := m.(*wire.Reject)
	require.True(t, ok, "%T", m)
	assert.Contains(t, rj.Reason, "version 1")
	assert.Contains(t, rj.Reason, fmt.Sprintf("version %d", wire.ProtocolVersion))

	// A node answering with a version 4 Challenge.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		cn, err := ln.Accept()
		if err != nil {
			return
		}
		defer cn.Close()
		var hb [wire.HeaderSize + wire.HelloSize]byte
		io.ReadFull(cn, hb[:])
		ch := wire.Encode(&wire.Challenge{})
		ch[wire.HeaderSize+7] = '4'
		cn.Write(ch)
		io.Copy(io.Discard, cn)
	}()
	_, err = dialHop(context.Background(), hopDial{dial: (&net.Dialer{}).DialContext, addr: ln.Addr().String(), key: testKey, hello: wire.Hello{Session: wire.SessionID{1}}, timeout: time.Second, busyFor: time.Second, handshake: time.Second})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "version 4")
	assert.Contains(t, err.Error(), fmt.Sprintf("version %d", wire.ProtocolVersion))
}

// readAll reads one frame from conn.
func readAll(conn net.Conn) (wire.Msg, []byte, error) {
	var h [wire.HeaderSize]byte
	if _, err := io.ReadFull(conn, h[:]); err != nil {
		return nil, nil, err
	}
	b := make([]byte, binary.LittleEndian.Uint32(h[4:]))
	if _, err := io.ReadFull(conn, b); err != nil {
		return nil, nil, err
	}
	m, err := wire.DecodeBody(wire.Type(h[2]), b)
	return m, b, err
}

// keyHolder is a peer with the key that speaks the protocol by hand.
type keyHolder struct {
	h *hopConn
}

func dialAsKeyHolder(t *testing.T, addr string, s wire.SessionID) *keyHolder {
	h, err := dialHop(context.Background(), hopDial{dial: (&net.Dialer{}).DialContext, addr: addr, key: testKey, hello: wire.Hello{Session: s}, timeout: time.Second, busyFor: time.Second, handshake: 5 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { h.conn.Close() })
	return &keyHolder{h: h}
}

// send seals and sends m; a Data frame is sealed with chunks.
func (k *keyHolder) send(t *testing.T, m wire.Msg, chunks *seal.Chunks) {
	if d, ok := m.(*wire.Data); ok {
		buf := make([]byte, wire.DataHeaderSize+len(d.Payload)+64)
		putSealed(buf, d, chunks, d.Payload)
		hd, _ := wire.ParseHeader(buf)
		require.NoError(t, k.h.writeData(buf[:wire.HeaderSize+int(hd.Len)]))
		return
	}
	require.NoError(t, k.h.writeMsg(m))
}

// A key holder sending a manifest of no items then a data frame for item
// 0 (the frame that crashed receivers), or a manifest not signed by the
// source, or absurd sequences, does not crash the receiver; it writes
// nothing, and the receiver takes a real session afterwards.
func TestAttackMalformedSequencesFromAKeyHolder(t *testing.T) {
	s := wire.SessionID{0xbb}
	word := seal.SourceKey(testKey, s)
	var dk [wire.KeySize]byte
	dk[0] = 1
	chunks, err := seal.NewChunks(dk[:])
	require.NoError(t, err)
	signed := func(m *wire.Manifest) *wire.Manifest { word.SignManifest(m); return m }
	cases := map[string][]wire.Msg{
		"no items then data": {signed(&wire.Manifest{Session: s, ChunkSize: 1024, Nodes: []string{"x:1"}, DataKey: dk}),
			&wire.Data{Session: s, Item: 0, Seq: 0, Off: 0, Payload: []byte("boom")}},
		"unsigned manifest": {&wire.Manifest{Session: s, ChunkSize: 1024, Nodes: []string{"x:1"}, DataKey: dk,
			Items: []wire.ManifestItem{{Name: "a", Dest: "/etc/cron.d/evil", Size: 4}}}},
		"item out of range": {signed(&wire.Manifest{Session: s, ChunkSize: 1024, Nodes: []string{"x:1"}, DataKey: dk, Items: []wire.ManifestItem{{Name: "a", Dest: "/out/a", Size: 4}}}),
			&wire.Data{Session: s, Item: 7, Seq: 0, Off: 0, Payload: []byte("boom")}},
		"end with no data": {signed(&wire.Manifest{Session: s, ChunkSize: 1024, Nodes: []string{"x:1"}, DataKey: dk, Items: []wire.ManifestItem{{Name: "a", Dest: "/out/a", Size: 4}}}),
			&wire.End{Chunks: 99}},
		"data before manifest": {&wire.Data{Session: s, Item: 0, Seq: 0, Payload: []byte("boom")}},
	}
	for name, msgs := range cases {
		t.Run(name, func(t *testing.T) {
			c := startCluster(t, 1, func(i int, rc *ReceiverConfig) { rc.UpstreamWait = time.Second })
			k := dialAsKeyHolder(t, c.addrs[0], s)
			_, _ = k.h.readControl() // the node's Resume
			for _, m := range msgs {
				k.send(t, m, chunks)
			}
			time.Sleep(200 * time.Millisecond)
			if sk := c.sinks[0].get("/etc/cron.d/evil"); sk != nil {
				t.Fatal("an unsigned manifest opened its destination")
			}
			if sk := c.sinks[0].get("/out/a"); sk != nil {
				assert.Zero(t, sk.writtenCount(), "bytes the source never sent were written")
			}
			k.h.conn.Close()
			// The receiver is alive: either it ended that session with an
			// error (it had begun: a key holder can spoil a session, see
			// docs/security.md) or it forgot a session that never began
			// and takes a real one.
			select {
			case r := <-c.results[0]:
				require.Error(t, r.err)
				t.Logf("the node ended: %v", r.err)
			case <-time.After(handshakeDeadline + 3*time.Second):
				a := randomData(94, 64<<10)
				rep, err := Send(context.Background(), SenderConfig{Key: testKey, Nodes: c.addrs, DeadTimeout: testDead, Items: []SendItem{bytesItem("a", a)}})
				require.NoError(t, err)
				require.True(t, rep.OK(), "%+v", rep.Nodes)
				assert.Equal(t, a, c.sinks[0].get("/out/a").bytes())
			}
		})
	}
}

// A key holder that proves the key and then says nothing does not hold a
// node: once it has been silent for the handshake deadline without a
// manifest, the node forgets it and takes the real session.
func TestAttackSilentAuthenticatedUpstream(t *testing.T) {
	c := startCluster(t, 1, nil)
	_ = dialAsKeyHolder(t, c.addrs[0], wire.SessionID{0xcc})
	start := time.Now()
	a := randomData(95, 256<<10)
	rep, err := Send(context.Background(), SenderConfig{Key: testKey, Nodes: c.addrs, DeadTimeout: testDead, ConnectTimeout: 30 * time.Second, Items: []SendItem{bytesItem("a", a)}})
	require.NoError(t, err)
	require.True(t, rep.OK(), "%+v", rep.Nodes)
	assert.Equal(t, a, c.sinks[0].get("/out/a").bytes())
	t.Logf("the real session got the node after %v", time.Since(start).Round(time.Millisecond))
	assert.Less(t, time.Since(start), 3*handshakeDeadline)
}

// A journal written by someone without the key (its item end does not
// carry the source's MAC) is not taken for verified: the restarted node
// receives the rest and ends with the source's bytes.
func TestAttackForgedJournal(t *testing.T) {
	dir := t.TempDir()
	a := randomData(96, 256<<10)
	stale := bytes.Repeat([]byte{0xee}, len(a))
	dest := filepath.Join(dir, "a") // where fileSink puts /out/a
	require.NoError(t, os.WriteFile(dest, stale, 0o600))
	// The forger knows the session (it is not secret) and the chain, and
	// writes a journal whose records match the stale bytes, with an item
	// end claiming their digest.
	s := wire.SessionID{0xdd}
	m := &wire.Manifest{Session: s, ChunkSize: 64 << 10, Nodes: []string{"x:1"}, Items: []wire.ManifestItem{{Name: "a", Dest: "/out/a", Size: int64(len(a))}}}
	jw, err := createJournal(dir, 0, m, seal.JournalKey([]byte("the forger's own key, wrong one"), s, 0))
	require.NoError(t, err)
	for off := 0; off < len(stale); off += 64 << 10 {
		jw.chunk(0, int64(off), stale[off:off+64<<10])
	}
	jw.itemEnd(&wire.ItemEnd{Item: 0, Size: int64(len(a)), Bytes: int64(len(a))})
	jw.close()

	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var logs strings.Builder
	var logMu sync.Mutex
	res := make(chan error, 1)
	go func() {
		_, err := Receive(ctx, l, ReceiverConfig{Key: testKey, Open: fileSink(dir), StateDir: dir, DeadTimeout: testDead,
			Logf: func(f string, args ...any) { logMu.Lock(); fmt.Fprintf(&logs, f+"\n", args...); logMu.Unlock() }})
		res <- err
	}()
	rep, err := Send(ctx, SenderConfig{Key: testKey, Session: s, Nodes: []string{l.Addr().String()}, DeadTimeout: testDead, ChunkSize: 64 << 10,
		Items: []SendItem{bytesItem("a", a)}})
	require.NoError(t, err)
	require.True(t, rep.OK(), "%+v", rep.Nodes)
	require.NoError(t, <-res)
	got, err := os.ReadFile(dest)
	require.NoError(t, err)
	assert.Equal(t, b3hex(a), b3hex(got), "the node holds the source's bytes, not the stale ones")
	logMu.Lock()
	assert.NotContains(t, logs.String(), "taken up again", "the forged journal was restored")
	logMu.Unlock()
}
