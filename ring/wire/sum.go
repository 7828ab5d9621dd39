package wire

import (
	"crypto/subtle"
	"encoding/binary"

	"github.com/zeebo/blake3"
	"github.com/zeebo/xxh3"
)

// Summer computes the per-chunk check value of Data frames: xxh3-128 of the
// payload seeded with the frame's fields, or, when the session has a key, a
// keyed BLAKE3 (key derived from the session key and the session id)
// truncated to SumSize. A Summer is not safe for concurrent use; make one
// per goroutine.
type Summer struct {
	keyed bool
	h     *blake3.Hasher
	fix   [dataFixed]byte
}

// NewSummer returns a Summer for session s; key nil or empty means no key.
func NewSummer(key []byte, s SessionID) *Summer {
	if len(key) == 0 {
		return &Summer{}
	}
	var k [32]byte
	material := append(append([]byte{}, key...), s[:]...)
	blake3.DeriveKey("herd ring v1 chunk mac", material, k[:])
	h, err := blake3.NewKeyed(k[:])
	if err != nil { // cannot happen: k is 32 bytes
		panic(err)
	}
	return &Summer{keyed: true, h: h}
}

// Keyed reports whether the Summer authenticates (has a key).
func (s *Summer) Keyed() bool { return s.keyed }

// Sum returns the check value of d's fields (not d.Sum) and payload.
func (s *Summer) Sum(d *Data, payload []byte) [SumSize]byte {
	var out [SumSize]byte
	f := s.fix[:0]
	f = append(f, d.Session[:]...)
	f = binary.LittleEndian.AppendUint32(f, d.Item)
	f = binary.LittleEndian.AppendUint64(f, d.Seq)
	f = binary.LittleEndian.AppendUint64(f, uint64(d.Off))
	f = binary.LittleEndian.AppendUint64(f, uint64(len(payload)))
	if !s.keyed {
		seed := xxh3.Hash(f)
		v := xxh3.Hash128Seed(payload, seed).Bytes()
		copy(out[:], v[:])
		return out
	}
	s.h.Reset()
	s.h.Write(f)
	s.h.Write(payload)
	var full [32]byte
	s.h.Sum(full[:0])
	copy(out[:], full[:])
	return out
}

// Check reports whether d.Sum matches d's fields and payload.
func (s *Summer) Check(d *Data) bool {
	want := s.Sum(d, d.Payload)
	return subtle.ConstantTimeCompare(want[:], d.Sum[:]) == 1
}

// Roles of the handshake MACs.
const (
	RoleDown = "down" // computed by the downstream node (in Challenge)
	RoleUp   = "up"   // computed by the upstream node (in Proof)
)

// HandshakeMAC is the keyed BLAKE3 proof of key by one side of a hop, over
// the session, the downstream's index and both nonces. The key never
// travels. It returns zero when key is empty.
func HandshakeMAC(key []byte, role string, s SessionID, index uint32, up, down [NonceSize]byte) [MACSize]byte {
	var out [MACSize]byte
	if len(key) == 0 {
		return out
	}
	var k [32]byte
	blake3.DeriveKey("herd ring v1 handshake", key, k[:])
	h, err := blake3.NewKeyed(k[:])
	if err != nil {
		panic(err)
	}
	h.WriteString(role)
	h.Write(s[:])
	var ib [4]byte
	binary.LittleEndian.PutUint32(ib[:], index)
	h.Write(ib[:])
	h.Write(up[:])
	h.Write(down[:])
	h.Sum(out[:0])
	return out
}

// EqualMAC compares two MACs in constant time.
func EqualMAC(a, b [MACSize]byte) bool { return subtle.ConstantTimeCompare(a[:], b[:]) == 1 }
