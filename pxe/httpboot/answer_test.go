package httpboot

import (
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	answerMAC   = "52:54:00:aa:03:01"
	answerNonce = "00112233445566778899aabbccddeeff"
)

func sealedForTest(t testing.TB) (string, *registration, Credential, Credentials) {
	k, err := NewAnswerKey()
	require.NoError(t, err)
	agent := Credential{Role: RoleAgent, Key: AgentKey(testKey, answerMAC, "aa")}
	c := Credentials{ChainKey: testKey, MachineKey: MachineKey(testKey, answerMAC, "aa")}
	ans, err := SealAnswer(agent, k.PublicKey(), answerMAC, answerNonce, c)
	require.NoError(t, err)
	c.V, c.MAC = AnswerVersion, answerMAC
	return ans, &registration{priv: k}, agent, c
}

func TestAnswerOpensOnlyForItsRequest(t *testing.T) {
	ans, r, agent, want := sealedForTest(t)
	got, err := OpenAnswer(r.priv, agent, answerMAC, answerNonce, ans)
	require.NoError(t, err)
	assert.Equal(t, want, got)

	other, err := NewAnswerKey()
	require.NoError(t, err)
	raw, err := base64.StdEncoding.DecodeString(ans)
	require.NoError(t, err)
	flip := func(i int) string {
		b := append([]byte(nil), raw...)
		b[i] ^= 1
		return base64.StdEncoding.EncodeToString(b)
	}
	for name, c := range map[string]struct {
		priv               *registration
		signer             Credential
		mac, nonce, answer string
	}{
		"another answer key": {&registration{priv: other}, agent, answerMAC, answerNonce, ans},
		"another agent key":  {r, Credential{Role: RoleAgent, Key: AgentKey(testKey, answerMAC, "bb")}, answerMAC, answerNonce, ans},
		"the session key":    {r, Credential{Role: RoleAgent, Key: testKey}, answerMAC, answerNonce, ans},
		"another role":       {r, Credential{Role: RoleMachine, Key: agent.Key}, answerMAC, answerNonce, ans},
		"another machine":    {r, agent, "52:54:00:aa:03:02", answerNonce, ans},
		"another request":    {r, agent, answerMAC, "ffeeddccbbaa99887766554433221100", ans},
		"version":            {r, agent, answerMAC, answerNonce, flip(0)},
		"tag":                {r, agent, answerMAC, answerNonce, flip(5)},
		"enc":                {r, agent, answerMAC, answerNonce, flip(40)},
		"ciphertext":         {r, agent, answerMAC, answerNonce, flip(len(raw) - 1)},
		"truncated":          {r, agent, answerMAC, answerNonce, base64.StdEncoding.EncodeToString(raw[:len(raw)-1])},
		"empty":              {r, agent, answerMAC, answerNonce, ""},
		"not base64":         {r, agent, answerMAC, answerNonce, "!!!"},
		"short":              {r, agent, answerMAC, answerNonce, "AQ=="},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := OpenAnswer(c.priv.priv, c.signer, c.mac, c.nonce, c.answer)
			assert.ErrorIs(t, err, ErrAnswer)
		})
	}
}

func TestSealAnswerRefusesBadCredentials(t *testing.T) {
	k, err := NewAnswerKey()
	require.NoError(t, err)
	agent := Credential{Role: RoleAgent, Key: []byte("k")}
	zero, err := ParseAnswerKey(base64.StdEncoding.EncodeToString(make([]byte, 32)))
	require.NoError(t, err, "a low-order point parses...")
	_, err = SealAnswer(agent, zero, answerMAC, answerNonce, Credentials{ChainKey: testKey, MachineKey: make([]byte, KeySize)})
	assert.Error(t, err, "...but nothing is sealed to it")
	_, err = SealAnswer(agent, k.PublicKey(), answerMAC, answerNonce, Credentials{ChainKey: []byte("short"), MachineKey: make([]byte, KeySize)})
	assert.Error(t, err)
	_, err = SealAnswer(agent, k.PublicKey(), answerMAC, answerNonce, Credentials{ChainKey: testKey, MachineKey: []byte("short")})
	assert.Error(t, err)
}

func TestParseAnswerKey(t *testing.T) {
	k, err := NewAnswerKey()
	require.NoError(t, err)
	pub, err := ParseAnswerKey(EncodeAnswerKey(k.PublicKey()))
	require.NoError(t, err)
	assert.True(t, pub.Equal(k.PublicKey()))
	for _, bad := range []string{"", "AAAA", "not base64!", base64.StdEncoding.EncodeToString(make([]byte, 33))} {
		_, err := ParseAnswerKey(bad)
		assert.Error(t, err, "%q", bad)
	}
}

func FuzzOpenAnswer(f *testing.F) {
	ans, r, agent, want := sealedForTest(f)
	f.Add(ans)
	f.Add("")
	f.Add("AQ==")
	f.Add(ans[:len(ans)-4])
	// An answer with orders, sealed for the same request.
	c := Credentials{ChainKey: want.ChainKey, MachineKey: want.MachineKey, Name: "node01", Identity: true, Hooks: []Hook{{Name: "a.sh", Script: []byte("true")}}, HookTimeout: 60}
	if orders, err := SealAnswer(agent, r.priv.PublicKey(), answerMAC, answerNonce, c); err == nil {
		f.Add(orders)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := OpenAnswer(r.priv, agent, answerMAC, answerNonce, s)
		if err != nil {
			return
		}
		if got.MAC != want.MAC || string(got.ChainKey) != string(want.ChainKey) || string(got.MachineKey) != string(want.MachineKey) {
			t.Fatalf("opened a forged answer %q as %+v", s, got)
		}
		if got.Name != "" && !ValidHostname(got.Name) || got.Orders().Check() != nil {
			t.Fatalf("opened orders out of bounds: %+v", got)
		}
	})
}

func FuzzParseAnswerKey(f *testing.F) {
	k, _ := NewAnswerKey()
	f.Add(EncodeAnswerKey(k.PublicKey()))
	f.Add("AAAA")
	f.Fuzz(func(t *testing.T, s string) {
		if pub, err := ParseAnswerKey(s); err == nil && len(pub.Bytes()) != 32 {
			t.Fatalf("accepted %q", s)
		}
	})
}
