package wire

import (
	"bytes"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var testSession = SessionID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}

func sampleMsgs() []Msg {
	var n1, n2 [HandshakeSize]byte
	n1[0], n2[31] = 7, 9
	return []Msg{
		&Hello{Session: testSession, Index: 3, From: 2, Keyed: true, Noise: n1},
		&Hello{Session: testSession, Index: 0, From: FromSource, Noise: n1},
		&Hello{Session: testSession, Index: 4, Tail: true, Noise: n2},
		&Hello{Session: testSession, Index: 5, Takeover: true, Noise: n2},
		&Challenge{Noise: n2},
		&Resume{Frames: 42, HasManifest: true},
		&Proof{},
		&Ping{},
		&Manifest{Session: testSession, ChunkSize: 4 << 20, Nodes: []string{"10.0.0.1:9998", "n2:9998"},
			Items: []ManifestItem{{Name: "/dev/sda1", Dest: "/dev/sda1", Size: 1 << 30}, {Name: "root.tar.gz", Dest: "/mnt", Cook: true, Size: -1}},
			Slow:  SlowMove, SlowAfterMs: 3000, DataKey: [KeySize]byte{4}, Auth: [MACSize]byte{5}},
		&Data{Session: testSession, Item: 1, Seq: 99, Off: 8 << 20, Payload: []byte("hello chunk")},
		&Data{Session: testSession, Item: 2, Seq: 100, Off: 0, Payload: []byte{11, 0, 0, 0, 0x28, 0xb5}, Flags: FlagZstd},
		&ItemEnd{Item: 1, Size: 12345, Bytes: 12000, Digest: [DigestSize]byte{9, 9}, Layout: 77, Auth: [MACSize]byte{1}},
		&End{Chunks: 100, Bytes: 1 << 33, Auth: [MACSize]byte{2}},
		&Ack{Nodes: []AckNode{{Index: 2, State: StReceiving, Flags: AckBacklog, Frames: 9, DownFrames: 7, Bytes: 100, Rate: 1.5e8, Items: []AckItem{{Bytes: 100}}},
			{Index: 3, State: StFailed, Err: "digest mismatch on item 0 (/dev/sda)", Items: []AckItem{{Bytes: 5, HasDigest: true, Digest: [DigestSize]byte{1}}, {Verified: true}}}}},
		&Reject{Reason: "wrong session"},
		&Bye{},
		&Detach{Drop: true, Reason: "too slow"},
		&Adopt{Index: 7},
		&Adopt{Index: 8, Rejoin: true},
		&NotBack{Index: 9},
	}
}

func TestRoundTrip(t *testing.T) {
	var stream []byte
	for _, m := range sampleMsgs() {
		b := Encode(m)
		got, rest, err := Decode(b)
		require.NoError(t, err, "%s", m.Type())
		assert.Empty(t, rest)
		assert.Equal(t, m, got, "%s", m.Type())
		stream = Append(stream, m)
	}
	// Decoding a concatenation yields the frames in order.
	for _, m := range sampleMsgs() {
		got, rest, err := Decode(stream)
		require.NoError(t, err)
		assert.Equal(t, m.Type(), got.Type())
		stream = rest
	}
	assert.Empty(t, stream)
}

func TestPutDataHeaderMatchesEncode(t *testing.T) {
	d := &Data{Session: testSession, Item: 2, Seq: 5, Off: 4096, Payload: []byte("abcdefgh")}
	buf := make([]byte, DataHeaderSize+len(d.Payload))
	copy(buf[DataHeaderSize:], d.Payload)
	PutDataHeader(buf, d, len(d.Payload))
	assert.Equal(t, Encode(d), buf)
}

func TestVersions(t *testing.T) {
	// A Hello of another version is recognised as such (its size may
	// differ: version 1's had a 32-byte nonce), and so is a Challenge.
	v1 := append([]byte("HERDRNG1"), make([]byte, 16+4+1+32)...)
	v, ok := PeekVersion(v1)
	assert.True(t, ok)
	assert.Equal(t, 1, v)
	_, err := DecodeBody(THello, v1)
	var ve *VersionError
	require.ErrorAs(t, err, &ve)
	assert.Equal(t, 1, ve.Peer)
	assert.Contains(t, ve.Error(), "version 1")
	assert.Contains(t, ve.Error(), "version 3")
	v4 := Encode(&Challenge{})
	v4[HeaderSize+len(helloPrefix)] = '4'
	_, _, err = Decode(v4)
	require.ErrorAs(t, err, &ve)
	assert.Equal(t, 4, ve.Peer)
	// Version 2's Hello (no From) is named as such.
	v2 := append([]byte("HERDRNG2"), make([]byte, 16+4+1+HandshakeSize)...)
	_, err = DecodeBody(THello, v2)
	require.ErrorAs(t, err, &ve)
	assert.Equal(t, 2, ve.Peer)
	_, ok = PeekVersion([]byte("GET / HTTP"))
	assert.False(t, ok)
	// This version's sizes are the ones a receiver reads, exactly.
	assert.Len(t, Encode(&Hello{}), HeaderSize+HelloSize)
	assert.Len(t, Encode(&Challenge{}), HeaderSize+ChallengeSize)
}

func TestPrologueBindsEveryHelloField(t *testing.T) {
	base := Hello{Session: testSession, Index: 1, Keyed: true}
	p := base.Prologue()
	for _, h := range []Hello{
		{Session: testSession, Index: 2, Keyed: true},
		{Session: SessionID{9}, Index: 1, Keyed: true},
		{Session: testSession, Index: 1},
		{Session: testSession, Index: 1, Keyed: true, Tail: true},
		{Session: testSession, Index: 1, Keyed: true, Takeover: true},
		{Session: testSession, Index: 1, Keyed: true, From: 7},
	} {
		assert.NotEqual(t, p, h.Prologue())
	}
	n := base
	n.Noise[0] = 1
	assert.Equal(t, p, n.Prologue(), "the handshake message itself is not in the prologue")
}

func TestDecodeErrors(t *testing.T) {
	_, _, err := Decode([]byte("GET / HTTP/1.1\r\n\r\n"))
	assert.ErrorIs(t, err, ErrMagic)
	_, _, err = Decode([]byte{'h', 'd', 1})
	assert.ErrorIs(t, err, ErrShort)
	_, _, err = Decode([]byte{'h', 'd', 200, 0, 0, 0, 0, 0})
	assert.ErrorIs(t, err, ErrType)
	_, _, err = Decode([]byte{'h', 'd', byte(TData), 0, 0xff, 0xff, 0xff, 0xff})
	assert.ErrorIs(t, err, ErrTooLarge)
	b := Encode(&End{Chunks: 1})
	_, _, err = Decode(b[:len(b)-1])
	assert.ErrorIs(t, err, ErrShort)
	// A truncated body inside a well-formed header is a body error.
	short := Encode(&End{Chunks: 1})
	short = append(short[:HeaderSize:HeaderSize], short[HeaderSize:HeaderSize+3]...)
	putHeader(short, TEnd, 3)
	_, _, err = Decode(short)
	assert.True(t, errors.Is(err, ErrBody), "%v", err)
	// A Hello from a node no chain has.
	bad := Encode(&Hello{From: MaxNodes + 1})
	_, _, err = Decode(bad)
	assert.ErrorIs(t, err, ErrBody)
	assert.Contains(t, err.Error(), "hello from node 65537")
	h := Encode(&Hello{})
	copy(h[HeaderSize:], "NOTHERD3")
	_, _, err = Decode(h)
	assert.ErrorIs(t, err, ErrMagic)
}

func FuzzDecode(f *testing.F) {
	for _, m := range sampleMsgs() {
		f.Add(Encode(m))
	}
	f.Add([]byte("garbage that is not a frame"))
	f.Add([]byte{'h', 'd', byte(TAck), 0, 4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, rest, err := Decode(b)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes to the same bytes (strings and
		// payloads are carried exactly), except trailing input.
		enc := Encode(m)
		if !bytes.Equal(enc, b[:len(b)-len(rest)]) {
			t.Fatalf("re-encode differs for %s", m.Type())
		}
	})
}

// The slow-node policies' names and codes map one to one.
func TestSlowNames(t *testing.T) {
	for _, name := range []string{"wait", "move", "drop"} {
		code, ok := ParseSlow(name)
		require.True(t, ok, name)
		assert.Equal(t, name, SlowName(code))
	}
	for _, bad := range []string{"", "Move", "tail"} {
		_, ok := ParseSlow(bad)
		assert.False(t, ok, bad)
	}
	assert.Equal(t, "", SlowName(slowMax))
	assert.Equal(t, uint8(SlowMove), func() uint8 { c, _ := ParseSlow("move"); return c }())
}
