package seal

import (
	"bytes"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/ring/wire"
)

var (
	testKey     = bytes.Repeat([]byte{0x42}, 32)
	testSession = wire.SessionID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
)

// pair runs a whole handshake and returns the upstream's and downstream's
// channels.
func pair(t testing.TB, upKey, downKey []byte, h *wire.Hello) (*Channel, *Channel, error) {
	t.Helper()
	in, msg, err := Initiate(upKey, h.Prologue())
	require.NoError(t, err)
	h.Noise = msg
	reply, down, err := Respond(downKey, h.Prologue(), h.Noise)
	if err != nil {
		return nil, nil, err
	}
	up, err := in.Finish(reply)
	if err != nil {
		return nil, nil, err
	}
	return up, down, nil
}

func TestHandshake(t *testing.T) {
	h := &wire.Hello{Session: testSession, Index: 3, Keyed: true}
	up, down, err := pair(t, testKey, testKey, h)
	require.NoError(t, err)
	f, err := up.SealFrame(wire.Encode(&wire.Proof{}))
	require.NoError(t, err)
	m, err := openOne(down, f)
	require.NoError(t, err)
	assert.IsType(t, &wire.Proof{}, m)

	// A wrong key fails on the receiving side (the upstream's first
	// message does not open)...
	_, _, err = pair(t, testKey, bytes.Repeat([]byte{0x43}, 32), &wire.Hello{Session: testSession, Keyed: true})
	assert.ErrorIs(t, err, ErrAuth)
	// ...and a Hello changed on the way too: every field is bound.
	for _, change := range []func(h *wire.Hello){
		func(h *wire.Hello) { h.Index++ },
		func(h *wire.Hello) { h.Session[0]++ },
		func(h *wire.Hello) { h.Tail = true },
		func(h *wire.Hello) { h.Takeover = true },
	} {
		h := &wire.Hello{Session: testSession, Index: 1, Keyed: true}
		_, msg, err := Initiate(testKey, h.Prologue())
		require.NoError(t, err)
		h.Noise = msg
		change(h)
		_, _, err = Respond(testKey, h.Prologue(), h.Noise)
		assert.ErrorIs(t, err, ErrAuth)
	}
	// The upstream refuses an answer from a node without the key: a
	// stranger answering with a valid-looking message of its own.
	h = &wire.Hello{Session: testSession, Keyed: true}
	in, msg, err := Initiate(testKey, h.Prologue())
	require.NoError(t, err)
	h.Noise = msg
	_, msg2, err := Initiate(bytes.Repeat([]byte{1}, 32), h.Prologue())
	require.NoError(t, err)
	_, err = in.Finish(msg2)
	assert.ErrorIs(t, err, ErrAuth)
	// Too short a key is refused before anything.
	_, _, err = Initiate([]byte("short"), h.Prologue())
	assert.ErrorIs(t, err, ErrKey)
}

// openOne opens one sealed control frame.
func openOne(c *Channel, f []byte) (wire.Msg, error) {
	hd, err := wire.ParseHeader(f)
	if err != nil {
		return nil, err
	}
	body, err := c.OpenFrame(f[:wire.HeaderSize], append([]byte(nil), f[wire.HeaderSize:wire.HeaderSize+int(hd.Len)]...))
	if err != nil {
		return nil, err
	}
	return wire.DecodeBody(hd.Type, body)
}

func TestFramesCannotBeChangedReplayedReorderedOrSpliced(t *testing.T) {
	up, down, err := pair(t, testKey, testKey, &wire.Hello{Session: testSession, Keyed: true})
	require.NoError(t, err)
	msgs := []wire.Msg{&wire.Proof{}, &wire.Manifest{Session: testSession, ChunkSize: 1 << 20, Nodes: []string{"a:1"}, Items: []wire.ManifestItem{{Name: "x", Dest: "/x", Size: 1}}},
		&wire.Bye{}, &wire.Adopt{Index: 4}}
	var frames [][]byte
	for _, m := range msgs {
		f, err := up.SealFrame(wire.Encode(m))
		require.NoError(t, err)
		assert.NotContains(t, string(f), "/x", "sealed frames are not in clear")
		frames = append(frames, f)
	}
	// In order: every frame opens.
	_, d2, err := pair(t, testKey, testKey, &wire.Hello{Session: testSession, Keyed: true})
	require.NoError(t, err)
	for i, f := range frames {
		m, err := openOne(down, f)
		require.NoError(t, err, "frame %d", i)
		assert.Equal(t, msgs[i].Type(), m.Type())
	}
	// A replay of a frame already opened fails.
	_, err = openOne(down, frames[0])
	assert.ErrorIs(t, err, ErrAuth)

	// On a fresh pair: reordering, dropping, flipping a bit (body or
	// header), and a frame of another hop all fail.
	cases := map[string]func() error{
		"reorder": func() error {
			u, d, _ := pair(t, testKey, testKey, &wire.Hello{Session: testSession, Keyed: true})
			a, _ := u.SealFrame(wire.Encode(&wire.Bye{}))
			b, _ := u.SealFrame(wire.Encode(&wire.Ping{}))
			_ = a
			_, err := openOne(d, b)
			return err
		},
		"flip body": func() error {
			u, d, _ := pair(t, testKey, testKey, &wire.Hello{Session: testSession, Keyed: true})
			a, _ := u.SealFrame(wire.Encode(&wire.Adopt{Index: 1}))
			a[wire.HeaderSize+1] ^= 1
			_, err := openOne(d, a)
			return err
		},
		"flip header type": func() error {
			u, d, _ := pair(t, testKey, testKey, &wire.Hello{Session: testSession, Keyed: true})
			a, _ := u.SealFrame(wire.Encode(&wire.Bye{}))
			a[2] = byte(wire.TPing)
			_, err := openOne(d, a)
			return err
		},
		"other hop": func() error {
			_, err := openOne(d2, frames[0])
			if err != nil {
				return err
			}
			// d2 was set up for another pair: its first frame cannot be
			// ours.
			return nil
		},
	}
	for name, c := range cases {
		assert.ErrorIs(t, c(), ErrAuth, name)
	}
}

func TestChunks(t *testing.T) {
	key := bytes.Repeat([]byte{7}, wire.KeySize)
	for _, k := range [][]byte{key, nil} {
		c, err := NewChunks(k)
		require.NoError(t, err)
		p := bytes.Repeat([]byte("chunk data "), 1000)
		d := &wire.Data{Session: testSession, Item: 1, Seq: 5, Off: 4096}
		sealed := c.Seal(nil, d, p)
		assert.Len(t, sealed, len(p)+c.Overhead())
		if k != nil {
			assert.False(t, bytes.Contains(sealed, []byte("chunk data")), "sealed chunks are not in clear")
		}
		d.Payload = sealed
		got, err := c.Open(nil, d)
		require.NoError(t, err)
		assert.Equal(t, p, got)
		// Every field of the place is bound, and every byte.
		for name, change := range map[string]func(d *wire.Data){
			"seq": func(d *wire.Data) { d.Seq++ }, "item": func(d *wire.Data) { d.Item++ }, "off": func(d *wire.Data) { d.Off++ },
			"session": func(d *wire.Data) { d.Session[3]++ }, "flags": func(d *wire.Data) { d.Flags = wire.FlagZstd },
			"byte": func(d *wire.Data) { d.Payload[100] ^= 1 },
		} {
			e := *d
			e.Payload = append([]byte(nil), sealed...)
			change(&e)
			_, err := c.Open(nil, &e)
			assert.ErrorIs(t, err, ErrAuth, "%s (key %v)", name, k != nil)
		}
	}
	// Another data key does not open a chunk.
	c1, _ := NewChunks(key)
	c2, _ := NewChunks(bytes.Repeat([]byte{8}, wire.KeySize))
	d := &wire.Data{Session: testSession}
	d.Payload = c1.Seal(nil, d, []byte("x"))
	_, err := c2.Open(nil, d)
	assert.ErrorIs(t, err, ErrAuth)
	_, err = NewChunks([]byte("short"))
	assert.ErrorIs(t, err, ErrKey)
}

func TestChunkSealInPlace(t *testing.T) {
	// The source seals from a raw region into the frame; a read-back
	// seals a chunk that sits where its ciphertext goes.
	c, _ := NewChunks(bytes.Repeat([]byte{7}, wire.KeySize))
	buf := make([]byte, 12+100+16)
	p := buf[12 : 12+100]
	copy(p, bytes.Repeat([]byte{9}, 100))
	d := &wire.Data{Session: testSession, Seq: 1}
	out := c.Seal(buf[:0], d, bytes.Repeat([]byte{9}, 100))
	d.Payload = out
	got, err := c.Open(nil, d)
	require.NoError(t, err)
	assert.Equal(t, bytes.Repeat([]byte{9}, 100), got)
}

func TestHopTag(t *testing.T) {
	up, down, err := pair(t, testKey, testKey, &wire.Hello{Session: testSession, Keyed: true})
	require.NoError(t, err)
	c, _ := NewChunks(bytes.Repeat([]byte{7}, wire.KeySize))
	frame := func(seq uint64) []byte {
		d := &wire.Data{Session: testSession, Seq: seq}
		sealed := c.Seal(nil, d, []byte("payload"))
		buf := make([]byte, wire.DataHeaderSize+len(sealed))
		copy(buf[wire.DataHeaderSize:], sealed)
		wire.PutDataHeader(buf, d, len(sealed)+up.HopTagSize())
		return buf
	}
	f0, f1 := frame(0), frame(1)
	t0, err := up.HopTag(f0)
	require.NoError(t, err)
	t1, err := up.HopTag(f1)
	require.NoError(t, err)
	// In order they pass; a control frame in between takes its place in
	// the same sequence.
	got, err := down.CheckHopTag(append(append([]byte(nil), f0...), t0...))
	require.NoError(t, err)
	assert.Equal(t, f0, got)
	// Skipping a frame (dropped on the way) fails the next one.
	_, err = down.CheckHopTag(append(append([]byte(nil), f0...), t1...))
	assert.ErrorIs(t, err, ErrAuth)
}

func TestWord(t *testing.T) {
	w := SourceKey(testKey, testSession)
	m := &wire.Manifest{Session: testSession, ChunkSize: 1 << 20, Nodes: []string{"a:1"}, Items: []wire.ManifestItem{{Name: "x", Dest: "/dev/sda", Size: 5}}}
	w.SignManifest(m)
	assert.True(t, w.CheckManifest(m))
	m2 := *m
	m2.Items = []wire.ManifestItem{{Name: "x", Dest: "/etc/cron.d/evil", Size: 5}}
	assert.False(t, w.CheckManifest(&m2), "a changed destination is found out")
	assert.False(t, SourceKey(bytes.Repeat([]byte{1}, 32), testSession).CheckManifest(m), "another key")
	other := testSession
	other[0]++
	assert.False(t, SourceKey(testKey, other).CheckManifest(m), "another session's word")

	ie := &wire.ItemEnd{Item: 0, Size: 5, Bytes: 5, Digest: [32]byte{1}}
	w.SignItemEnd(testSession, ie)
	assert.True(t, w.CheckItemEnd(testSession, ie))
	ie2 := *ie
	ie2.Digest[0] = 2
	assert.False(t, w.CheckItemEnd(testSession, &ie2))
	assert.False(t, w.CheckItemEnd(other, ie))
	e := &wire.End{Chunks: 3, Bytes: 5}
	w.SignEnd(testSession, e)
	assert.True(t, w.CheckEnd(testSession, e))
	e.Chunks = 2
	assert.False(t, w.CheckEnd(testSession, e))
	// Without key nothing is checked (and MACs are zero).
	var none Word
	none.SignEnd(testSession, e)
	assert.Equal(t, [wire.MACSize]byte{}, e.Auth)
	assert.True(t, none.CheckEnd(testSession, e))
}

func TestJournal(t *testing.T) {
	j := JournalKey(testKey, testSession, 2)
	a := j.Sum(0, 0, []byte("abc"))
	assert.Equal(t, a, JournalKey(testKey, testSession, 2).Sum(0, 0, []byte("abc")))
	assert.NotEqual(t, a, j.Sum(0, 1, []byte("abc")))
	assert.NotEqual(t, a, j.Sum(1, 0, []byte("abc")))
	assert.NotEqual(t, a, JournalKey(testKey, testSession, 3).Sum(0, 0, []byte("abc")), "another node's journal")
	assert.NotEqual(t, a, JournalKey(bytes.Repeat([]byte{1}, 32), testSession, 2).Sum(0, 0, []byte("abc")), "another key")
	assert.NotEqual(t, a, JournalKey(nil, testSession, 2).Sum(0, 0, []byte("abc")), "no key")
}

func TestPlainChannel(t *testing.T) {
	c := Plain()
	assert.False(t, c.Keyed())
	f := wire.Encode(&wire.Bye{})
	g, err := c.SealFrame(f)
	require.NoError(t, err)
	assert.Equal(t, f, g)
	tag, err := c.HopTag(nil)
	require.NoError(t, err)
	assert.Nil(t, tag)
}

// FuzzOpenFrame: whatever arrives on a keyed hop, opening it never panics
// and never yields a frame the upstream did not seal.
func FuzzOpenFrame(f *testing.F) {
	f.Add([]byte{'h', 'd', byte(wire.TAck), 0, 16, 0, 0, 0}, bytes.Repeat([]byte{1}, 16), false)
	f.Add([]byte{'h', 'd', byte(wire.TData), 0, 0, 0, 0, 0}, bytes.Repeat([]byte{0}, 80), true)
	f.Add([]byte{}, []byte{}, true)
	f.Fuzz(func(t *testing.T, hdr, body []byte, data bool) {
		_, down, err := pair(t, testKey, testKey, &wire.Hello{Session: testSession, Keyed: true})
		require.NoError(t, err)
		if data {
			if _, err := down.CheckHopTag(append(hdr, body...)); err == nil {
				t.Fatal("a forged data frame passed its hop tag")
			}
			return
		}
		_, err = down.OpenFrame(hdr, body)
		if err == nil {
			t.Fatal("a forged frame opened")
		}
		if !errors.Is(err, ErrAuth) {
			t.Fatalf("error %v does not wrap ErrAuth", err)
		}
	})
}
