package httpboot

import (
	"crypto/hkdf"
	"crypto/sha256"
)

// Keys of the PXE side, all derived from the session key S (the bytes of
// the key file given to herd send and herd deploy, which also keys the
// chain) with HKDF-SHA256 (RFC 5869), one label per purpose so that no
// two ever coincide:
//
//	operator key = HKDF(S, "herd pxe operator key v1")                  herd pxe list/set, read and change any machine
//	agent key    = HKDF(S, "herd pxe agent key v1\x00" MAC "\x00" ID)   on one machine's kernel line, for one registration
//	machine key  = HKDF(S, "herd pxe machine key v1\x00" MAC "\x00" ID) in the sealed answer to that registration: reports, polls, the stage 2
//
// MAC is the machine's normalized MAC ("52:54:00:12:34:56") and ID the
// id of its current agent key (state.Machine.KeyID, 16 random bytes in
// hex, renewed whenever the machine enters new or failed). Only the agent
// key ever appears in a boot file; the session key and the machine key
// reach the agent only inside the sealed registration answer (see
// SealAnswer). Requests are signed with a key derived once more from
// these (see Sign), answers with another (see SealAnswer).

// KeySize is the size of every derived key.
const KeySize = 32

// OperatorKey derives the key that signs an operator's API calls (herd
// pxe list, herd pxe set) from the session key.
func OperatorKey(sessionKey []byte) []byte {
	return derive(sessionKey, "herd pxe operator key v1")
}

// AgentKey derives the agent key of mac for its key id keyID: the only
// key a boot file carries, accepted for one registration.
func AgentKey(sessionKey []byte, mac, keyID string) []byte {
	return derive(sessionKey, "herd pxe agent key v1\x00"+mac+"\x00"+keyID)
}

// MachineKey derives the key the agent of mac gets in the answer to the
// registration made with the agent key keyID; it signs that agent's
// later calls (reports, its checks that the server still knows it, the
// registration of its stage 2).
func MachineKey(sessionKey []byte, mac, keyID string) []byte {
	return derive(sessionKey, "herd pxe machine key v1\x00"+mac+"\x00"+keyID)
}

func derive(secret []byte, info string) []byte {
	k, err := hkdf.Key(sha256.New, secret, nil, info, KeySize)
	if err != nil {
		panic("httpboot: hkdf: " + err.Error()) // only for lengths beyond 255*32
	}
	return k
}
