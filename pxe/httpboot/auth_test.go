package httpboot

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pxe/state"
)

// TestEveryAPICallIsAuthenticated is attack 7 of issue #12: unsigned or
// wrongly signed calls, reads included, get 401, change nothing and
// leak nothing about the machines.
func TestEveryAPICallIsAuthenticated(t *testing.T) {
	ts, s, _ := setup(t, nil)
	const mac = "52:54:00:aa:01:01"
	agent := approve(t, s, mac)
	_, creds := register(t, ts.URL, agent, newRegistration(t, mac, "10.9.0.101", ""))
	before := s.Store.List()
	wrong := []*Credential{
		nil,
		{Role: RoleOperator, Key: []byte("another key")},
		{Role: RoleOperator, Key: testKey}, // the session key itself is not the operator key
		{Role: RoleMachine, Key: []byte("another key")},
		{Role: RoleAgent, Key: []byte("another key")},
	}
	calls := []struct{ method, path, body string }{
		{"GET", PathMachines, ""},
		{"GET", PathMachines + "/" + mac, ""},
		{"GET", PathMachines + "/52-54-00-AA-01-01", ""},
		{"POST", PathMachines + "/" + mac, `{"state":"local"}`},
		{"POST", PathReport, `{"mac":"` + mac + `","ok":true,"bytes":5}`},
		{"POST", PathRegister, newRegistration(t, mac, "10.9.0.66", "").body()},
	}
	for _, c := range calls {
		for i, cred := range wrong {
			name := fmt.Sprintf("%s %s #%d", c.method, c.path, i)
			a := call(t, ts.URL, c.method, c.path, cred, c.body, time.Time{})
			assert.Equal(t, http.StatusUnauthorized, a.code, name)
			assert.False(t, a.reply.OK, name)
			assert.Contains(t, a.reply.Error, "not authenticated", name)
			assert.Empty(t, a.reply.Answer, name)
			for _, leak := range []string{mac, "52-54-00", "10.9.0.101", "cloning"} {
				assert.NotContains(t, strings.ToLower(a.body), leak, name)
			}
		}
	}
	assert.Equal(t, before, s.Store.List(), "refused calls change nothing")

	// Signed, but for another body than the one sent.
	req, err := http.NewRequest(http.MethodPost, ts.URL+PathReport, strings.NewReader(`{"mac":"`+mac+`","ok":false,"error":"x"}`))
	require.NoError(t, err)
	Sign(req, *machineOf(creds), []byte(`{"mac":"`+mac+`","ok":true}`), time.Now())
	a := send(t, req, answer{})
	assert.Equal(t, http.StatusUnauthorized, a.code)
	assert.Contains(t, a.reply.Error, "wrong signature")

	// Signed for another path.
	req, err = http.NewRequest(http.MethodGet, ts.URL+PathMachines, nil)
	require.NoError(t, err)
	Sign(req, *operator(), nil, time.Now())
	req.URL.Path = PathMachines + "/" + mac
	a = send(t, req, answer{})
	assert.Equal(t, http.StatusUnauthorized, a.code)

	// Too old or too far in the future.
	now := time.Now()
	for _, at := range []time.Time{now.Add(-MaxSkew - time.Minute), now.Add(MaxSkew + time.Minute)} {
		a := call(t, ts.URL, "GET", PathMachines, operator(), "", at)
		assert.Equal(t, http.StatusUnauthorized, a.code)
		assert.Contains(t, a.reply.Error, "away from the server's clock")
		_, err := http.ParseTime(a.hdr.Get("Date"))
		assert.NoError(t, err, "a 401 carries the server's clock")
	}

	// The very same request again is a replay.
	req, err = http.NewRequest(http.MethodGet, ts.URL+PathMachines, nil)
	require.NoError(t, err)
	Sign(req, *operator(), nil, now)
	a = send(t, req, answer{})
	require.Equal(t, http.StatusOK, a.code)
	replay, err := http.NewRequest(http.MethodGet, ts.URL+PathMachines, nil)
	require.NoError(t, err)
	replay.Header = req.Header.Clone()
	a = send(t, replay, answer{})
	assert.Equal(t, http.StatusUnauthorized, a.code)
	assert.Contains(t, a.reply.Error, "replayed")

	assert.Len(t, listAs(t, ts.URL, operator()), 1, "the operator reads")
}

// TestUnknownMACReadsLikeAWrongSignature: a registration for a MAC the
// server does not know (or has not approved) is refused exactly like a
// wrong signature for a known one, so probing does not list machines.
func TestUnknownMACReadsLikeAWrongSignature(t *testing.T) {
	ts, s, _ := setup(t, nil)
	approve(t, s, "52:54:00:aa:01:02")
	_, err := s.Store.Discover("52:54:00:aa:01:03")
	require.NoError(t, err)
	forged := Credential{Role: RoleAgent, Key: []byte("a guess")}
	var bodies []string
	for _, mac := range []string{"52:54:00:aa:01:02", "52:54:00:aa:01:03", "52:54:00:aa:01:04"} {
		a := call(t, ts.URL, "POST", PathRegister, &forged, newRegistration(t, mac, "10.9.0.1", "").body(), time.Time{})
		assert.Equal(t, http.StatusUnauthorized, a.code, mac)
		bodies = append(bodies, a.body)
	}
	assert.Equal(t, bodies[0], bodies[1])
	assert.Equal(t, bodies[0], bodies[2])
	m, _ := s.Store.Get("52:54:00:aa:01:03")
	assert.Equal(t, state.Discovered, m.State)
}

// TestAgentKeyWorksForOneRegistration: the agent key in a machine's boot
// file registers once; a second registration with it is refused, logged
// as an alarm and shown on the machine; the very same registration
// repeated (a lost answer) is answered again.
func TestAgentKeyWorksForOneRegistration(t *testing.T) {
	var mu sync.Mutex
	var alarms []string
	ts, s, _ := setup(t, func(s *Server) {
		s.Alarmf = func(format string, args ...any) {
			mu.Lock()
			defer mu.Unlock()
			alarms = append(alarms, fmt.Sprintf(format, args...))
		}
	})
	const mac = "52:54:00:aa:01:05"
	agent := approve(t, s, mac)
	first := newRegistration(t, mac, "10.9.0.105", "")
	a, creds := register(t, ts.URL, agent, first)
	require.Equal(t, http.StatusOK, a.code, a.body)
	assert.Equal(t, testKey, creds.ChainKey)

	a, again := register(t, ts.URL, agent, first)
	require.Equal(t, http.StatusOK, a.code, "the same registration (lost answer) is answered again: %s", a.body)
	assert.Equal(t, creds, again)
	assert.Empty(t, alarms)

	spoof := newRegistration(t, mac, "10.9.0.66", "")
	a, _ = register(t, ts.URL, agent, spoof)
	assert.Equal(t, http.StatusConflict, a.code)
	assert.Contains(t, a.reply.Error, "was used already")
	assert.Empty(t, a.reply.Answer, "no chain key for the second one")
	require.Len(t, alarms, 1)
	assert.Contains(t, alarms[0], "ALARM: "+mac)
	assert.Contains(t, alarms[0], "from 10.9.0.66 port 9998")
	assert.Contains(t, alarms[0], "herd pxe set "+mac+" new")
	m, _ := s.Store.Get(mac)
	assert.Equal(t, state.Cloning, m.State)
	assert.Equal(t, "10.9.0.105", m.IP, "the first registration stands")
	assert.Contains(t, m.Alarm, "registration from 10.9.0.66 port 9998 with the used agent key (key 1) refused")

	// The operator gives it a fresh key: the next boot registers.
	a = call(t, ts.URL, "POST", PathMachines+"/"+mac, operator(), `{"state":"new"}`, time.Time{})
	require.Equal(t, http.StatusOK, a.code)
	m, _ = s.Store.Get(mac)
	assert.Empty(t, m.Alarm)
	assert.Equal(t, 2, m.KeyGen)
	a, _ = register(t, ts.URL, agent, newRegistration(t, mac, "10.9.0.105", ""))
	assert.Equal(t, http.StatusUnauthorized, a.code, "the old agent key is gone")
	fresh := Credential{Role: RoleAgent, Key: AgentKey(testKey, mac, m.KeyID)}
	a, _ = register(t, ts.URL, fresh, newRegistration(t, mac, "10.9.0.105", ""))
	assert.Equal(t, http.StatusOK, a.code, a.body)
}

// TestRegistrationAnswerHidesTheChainKey: the session key crosses the
// wire only sealed: neither its hex nor its base64 appears in the answer,
// and only the agent's answer key with its agent key opens it.
func TestRegistrationAnswerHidesTheChainKey(t *testing.T) {
	ts, s, _ := setup(t, nil)
	const mac = "52:54:00:aa:01:06"
	agent := approve(t, s, mac)
	r := newRegistration(t, mac, "10.9.0.106", "")
	a := call(t, ts.URL, "POST", PathRegister, &agent, r.body(), time.Time{})
	require.Equal(t, http.StatusOK, a.code, a.body)
	for _, enc := range []string{string(testKey), hex.EncodeToString(testKey), base64.StdEncoding.EncodeToString(testKey), base64.RawStdEncoding.EncodeToString(testKey)} {
		assert.NotContains(t, a.body, enc)
	}
	creds, err := OpenAnswer(r.priv, agent, mac, a.nonce, a.reply.Answer)
	require.NoError(t, err)
	assert.Equal(t, testKey, creds.ChainKey)

	other := newRegistration(t, mac, "", "")
	_, err = OpenAnswer(other.priv, agent, mac, a.nonce, a.reply.Answer)
	assert.ErrorIs(t, err, ErrAnswer, "another answer key")
	_, err = OpenAnswer(r.priv, Credential{Role: RoleAgent, Key: AgentKey(testKey, mac, "00")}, mac, a.nonce, a.reply.Answer)
	assert.ErrorIs(t, err, ErrAnswer, "another agent key")
}

func TestAPIClosedWithoutAKey(t *testing.T) {
	ts, s, _ := setup(t, func(s *Server) { s.Key = nil })
	_, err := s.Store.Add("52:54:00:aa:01:07", "")
	require.NoError(t, err)
	for _, c := range []*Credential{nil, operator()} {
		a := call(t, ts.URL, "GET", PathMachines, c, "", time.Time{})
		assert.Equal(t, http.StatusUnauthorized, a.code)
		assert.Contains(t, a.reply.Error, "API is closed")
	}
}

func TestServerClockChecksTimestamps(t *testing.T) {
	// A server whose clock is an hour ahead refuses a request signed
	// now, and accepts one signed at its time.
	ahead := time.Now().Add(time.Hour)
	ts, _, _ := setup(t, func(s *Server) { s.Clock = func() time.Time { return ahead } })
	a := call(t, ts.URL, "GET", PathMachines, operator(), "", time.Now())
	assert.Equal(t, http.StatusUnauthorized, a.code)
	d, err := http.ParseTime(a.hdr.Get("Date"))
	require.NoError(t, err)
	assert.WithinDuration(t, ahead, d, 2*time.Second)
	a = call(t, ts.URL, "GET", PathMachines, operator(), "", ahead)
	assert.Equal(t, http.StatusOK, a.code, a.body)
}

func TestKeysAreDistinct(t *testing.T) {
	keys := [][]byte{
		OperatorKey(testKey),
		AgentKey(testKey, "52:54:00:00:00:01", "00112233445566778899aabbccddeeff"),
		AgentKey(testKey, "52:54:00:00:00:02", "00112233445566778899aabbccddeeff"),
		AgentKey(testKey, "52:54:00:00:00:01", "ffeeddccbbaa99887766554433221100"),
		MachineKey(testKey, "52:54:00:00:00:01", "00112233445566778899aabbccddeeff"),
		AgentKey([]byte("another session key"), "52:54:00:00:00:01", "00112233445566778899aabbccddeeff"),
		testKey,
	}
	for i := range keys {
		for j := range keys {
			if i != j {
				assert.NotEqual(t, keys[i], keys[j], "%d %d", i, j)
			}
		}
	}
	assert.Equal(t, AgentKey(testKey, "52:54:00:00:00:01", "00"), AgentKey(testKey, "52:54:00:00:00:01", "00"), "derivation is stable (a restarted server knows its agents)")
}

func TestParseAuthHeader(t *testing.T) {
	req, _ := http.NewRequest(http.MethodPost, "http://x/api/v1/register", nil)
	nonce := Sign(req, Credential{Role: RoleAgent, Key: []byte("k")}, []byte("{}"), time.Unix(1700000000, 0))
	h, err := ParseAuthHeader(req.Header.Get("Authorization"))
	require.NoError(t, err)
	assert.Equal(t, RoleAgent, h.Role)
	assert.Equal(t, int64(1700000000), h.Time)
	assert.Equal(t, nonce, h.Nonce)
	assert.Len(t, h.Nonce, 32)
	assert.Len(t, h.Signature, 64)
	sig := strings.Repeat("ab", 32)
	for _, bad := range []string{
		"", "Bearer abc", AuthScheme, AuthScheme + " k=agent,t=1,n=0123456789abcdef",
		AuthScheme + " t=1,n=0123456789abcdef,s=" + sig,
		AuthScheme + " k=root,t=1,n=0123456789abcdef,s=" + sig,
		AuthScheme + " k=agent,t=x,n=0123456789abcdef,s=" + sig,
		AuthScheme + " k=agent,t=1,n=short,s=" + sig,
		AuthScheme + " k=agent,t=1,n=0123456789abcdef,s=abc",
		AuthScheme + " k=agent,t=1,t=2,n=0123456789abcdef,s=" + sig,
		AuthScheme + " k=agent,t=1,n=0123456789abcdef,s=" + sig + ",x=1",
		AuthScheme + " k=agent,t=1,n=0123456789ABCDEF,s=" + sig,
	} {
		_, err := ParseAuthHeader(bad)
		assert.ErrorIs(t, err, ErrAuth, "%q", bad)
	}
}

func FuzzParseAuthHeader(f *testing.F) {
	req, _ := http.NewRequest(http.MethodPost, "http://x/api/v1/register", nil)
	Sign(req, Credential{Role: RoleMachine, Key: []byte("k")}, []byte("{}"), time.Unix(1700000000, 0))
	f.Add(req.Header.Get("Authorization"))
	f.Add(AuthScheme + " k=operator,t=1,n=0123456789abcdef,s=" + strings.Repeat("0", 64))
	f.Add("Basic dXNlcjpwdw==")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseAuthHeader(s)
		if err == nil && (len(h.Signature) != 64 || len(h.Nonce) < 16 || !h.Role.valid()) {
			t.Fatalf("accepted %q as %+v", s, h)
		}
	})
}
