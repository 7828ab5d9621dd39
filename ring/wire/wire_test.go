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
	var n1, n2 [NonceSize]byte
	n1[0], n2[31] = 7, 9
	return []Msg{
		&Hello{Session: testSession, Index: 3, Keyed: true, Nonce: n1},
		&Hello{Session: testSession, Index: 4, Tail: true, Nonce: n2},
		&Hello{Session: testSession, Index: 5, Takeover: true, Nonce: n2},
		&Challenge{Nonce: n2, MAC: [MACSize]byte{1, 2}},
		&Resume{Frames: 42, HasManifest: true},
		&Proof{MAC: [MACSize]byte{3}},
		&Manifest{Session: testSession, ChunkSize: 4 << 20, Nodes: []string{"10.0.0.1:9998", "n2:9998"},
			Items: []ManifestItem{{Name: "/dev/sda1", Dest: "/dev/sda1", Size: 1 << 30}, {Name: "root.tar.gz", Dest: "/mnt", Cook: true, Size: -1}},
			Slow:  SlowMove, SlowAfterMs: 3000},
		&Data{Session: testSession, Item: 1, Seq: 99, Off: 8 << 20, Sum: [SumSize]byte{5}, Payload: []byte("hello chunk")},
		&Data{Session: testSession, Item: 2, Seq: 100, Off: 0, Payload: []byte{11, 0, 0, 0, 0x28, 0xb5}, Flags: FlagZstd},
		&ItemEnd{Item: 1, Size: 12345, Bytes: 12000, Digest: [DigestSize]byte{9, 9}, Layout: 77},
		&End{Chunks: 100, Bytes: 1 << 33},
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
	s := NewSummer(nil, testSession)
	d.Sum = s.Sum(d, d.Payload)
	buf := make([]byte, DataHeaderSize+len(d.Payload))
	copy(buf[DataHeaderSize:], d.Payload)
	PutDataHeader(buf, d, len(d.Payload))
	assert.Equal(t, Encode(d), buf)
	m, _, err := Decode(buf)
	require.NoError(t, err)
	assert.True(t, s.Check(m.(*Data)))
}

func TestSummerDetectsChanges(t *testing.T) {
	for _, key := range [][]byte{nil, []byte("secret")} {
		s := NewSummer(key, testSession)
		d := &Data{Session: testSession, Item: 0, Seq: 1, Off: 0, Payload: bytes.Repeat([]byte{0xAB}, 10000)}
		d.Sum = s.Sum(d, d.Payload)
		require.True(t, s.Check(d))
		d.Payload[5000] ^= 1
		assert.False(t, s.Check(d), "payload flip, key=%q", key)
		d.Payload[5000] ^= 1
		d.Off = 4096
		assert.False(t, s.Check(d), "offset change, key=%q", key)
		d.Off = 0
		require.True(t, s.Check(d))
	}
	// A different key (or none) does not validate a keyed sum.
	d := &Data{Session: testSession, Payload: []byte("x")}
	d.Sum = NewSummer([]byte("k1"), testSession).Sum(d, d.Payload)
	assert.False(t, NewSummer([]byte("k2"), testSession).Check(d))
	assert.False(t, NewSummer(nil, testSession).Check(d))
	other := testSession
	other[0]++
	assert.False(t, NewSummer([]byte("k1"), other).Check(d))
}

func TestHandshakeMAC(t *testing.T) {
	var up, down [NonceSize]byte
	up[0], down[0] = 1, 2
	a := HandshakeMAC([]byte("k"), RoleDown, testSession, 1, up, down)
	assert.True(t, EqualMAC(a, HandshakeMAC([]byte("k"), RoleDown, testSession, 1, up, down)))
	assert.False(t, EqualMAC(a, HandshakeMAC([]byte("k"), RoleUp, testSession, 1, up, down)))
	assert.False(t, EqualMAC(a, HandshakeMAC([]byte("K"), RoleDown, testSession, 1, up, down)))
	assert.False(t, EqualMAC(a, HandshakeMAC([]byte("k"), RoleDown, testSession, 2, up, down)))
	assert.Equal(t, [MACSize]byte{}, HandshakeMAC(nil, RoleDown, testSession, 1, up, down))
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
	h := Encode(&Hello{})
	copy(h[HeaderSize:], "NOTHERD!")
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
