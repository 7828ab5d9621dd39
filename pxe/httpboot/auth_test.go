package httpboot

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pxe/state"
)

var testKey = []byte("the session key of the auth tests")

// signedPost posts body to url signed with key at now (no signature when
// key is nil) and returns the status, the reply and the request sent.
func signedPost(t *testing.T, url string, key []byte, body string, now time.Time) (int, Reply, *http.Request) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	if key != nil {
		Sign(req, key, []byte(body), now)
	}
	return do(t, req, body)
}

func do(t *testing.T, req *http.Request, body string) (int, Reply, *http.Request) {
	t.Helper()
	req.Body = http.NoBody
	if body != "" {
		req.Body = nopCloser{strings.NewReader(body)}
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var r Reply
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&r))
	if resp.StatusCode == http.StatusUnauthorized {
		assert.Equal(t, AuthScheme, resp.Header.Get("WWW-Authenticate"))
	}
	return resp.StatusCode, r, req
}

type nopCloser struct{ *strings.Reader }

func (nopCloser) Close() error { return nil }

func TestAPIRefusesUnauthenticatedRequests(t *testing.T) {
	ts, s, _ := setup(t, func(s *Server) { s.Key = testKey })
	now := time.Now()
	reg := `{"mac":"52:54:00:aa:01:01","ip":"10.9.0.101","port":9998,"session":"lab"}`
	for name, key := range map[string][]byte{"no signature": nil, "wrong key": []byte("another key")} {
		code, r, _ := signedPost(t, ts.URL+PathRegister, key, reg, now)
		assert.Equal(t, http.StatusUnauthorized, code, name)
		assert.False(t, r.OK, name)
		assert.Contains(t, r.Error, "not authenticated", name)
	}
	assert.Empty(t, s.Store.List(), "refused registrations change nothing")

	// Signed, but for another body than the one sent.
	req, err := http.NewRequest(http.MethodPost, ts.URL+PathRegister, nil)
	require.NoError(t, err)
	Sign(req, testKey, []byte(`{"mac":"52:54:00:aa:01:02"}`), now)
	code, r, _ := do(t, req, reg)
	assert.Equal(t, http.StatusUnauthorized, code)
	assert.Contains(t, r.Error, "wrong signature")

	// Too old or too far in the future.
	for _, at := range []time.Time{now.Add(-MaxSkew - time.Minute), now.Add(MaxSkew + time.Minute)} {
		code, r, _ = signedPost(t, ts.URL+PathRegister, testKey, reg, at)
		assert.Equal(t, http.StatusUnauthorized, code)
		assert.Contains(t, r.Error, "away from the server's clock")
	}
	assert.Empty(t, s.Store.List())

	code, r, sent := signedPost(t, ts.URL+PathRegister, testKey, reg, now)
	require.Equal(t, http.StatusOK, code, r.Error)
	m, ok := s.Store.Get("52:54:00:aa:01:01")
	require.True(t, ok)
	assert.Equal(t, state.Cloning, m.State)

	// The very same request again is a replay.
	replay, err := http.NewRequest(http.MethodPost, ts.URL+PathRegister, nil)
	require.NoError(t, err)
	replay.Header = sent.Header.Clone()
	code, r, _ = do(t, replay, reg)
	assert.Equal(t, http.StatusUnauthorized, code)
	assert.Contains(t, r.Error, "replayed")

	// Report and the operator's state change need the key too.
	rep := `{"mac":"52:54:00:aa:01:01","ok":true,"bytes":5}`
	code, _, _ = signedPost(t, ts.URL+PathReport, nil, rep, now)
	assert.Equal(t, http.StatusUnauthorized, code)
	code, _, _ = signedPost(t, ts.URL+PathMachines+"/52:54:00:aa:01:01", []byte("bad"), `{"state":"local"}`, now)
	assert.Equal(t, http.StatusUnauthorized, code)
	m, _ = s.Store.Get("52:54:00:aa:01:01")
	assert.Equal(t, state.Cloning, m.State, "refused report and set change nothing")

	code, r, _ = signedPost(t, ts.URL+PathReport, testKey, rep, now)
	require.Equal(t, http.StatusOK, code, r.Error)
	code, r, _ = signedPost(t, ts.URL+PathMachines+"/52:54:00:aa:01:01", testKey, `{"state":"local"}`, now)
	require.Equal(t, http.StatusOK, code, r.Error)
	m, _ = s.Store.Get("52:54:00:aa:01:01")
	assert.Equal(t, state.Local, m.State)

	// Reading stays open.
	assert.Len(t, machines(t, ts.URL), 1)
}

func TestAPIWithoutKeyIsOpen(t *testing.T) {
	ts, s, _ := setup(t, nil)
	code, r, _ := signedPost(t, ts.URL+PathRegister, nil, `{"mac":"52:54:00:aa:01:03","ip":"10.9.0.103","port":9998}`, time.Now())
	require.Equal(t, http.StatusOK, code, r.Error)
	_, ok := s.Store.Get("52:54:00:aa:01:03")
	assert.True(t, ok)
}

func TestServerClockChecksTimestamps(t *testing.T) {
	// A server whose clock is an hour ahead refuses a request signed
	// now, and accepts one signed at its time.
	ahead := time.Now().Add(time.Hour)
	ts, _, _ := setup(t, func(s *Server) { s.Key = testKey; s.Clock = func() time.Time { return ahead } })
	reg := `{"mac":"52:54:00:aa:01:04","ip":"10.9.0.104","port":9998}`
	code, _, _ := signedPost(t, ts.URL+PathRegister, testKey, reg, time.Now())
	assert.Equal(t, http.StatusUnauthorized, code)
	code, r, _ := signedPost(t, ts.URL+PathRegister, testKey, reg, ahead)
	assert.Equal(t, http.StatusOK, code, r.Error)
}

func TestParseAuthHeader(t *testing.T) {
	req, _ := http.NewRequest(http.MethodPost, "http://x/api/v1/register", nil)
	Sign(req, testKey, []byte("{}"), time.Unix(1700000000, 0))
	h, err := ParseAuthHeader(req.Header.Get("Authorization"))
	require.NoError(t, err)
	assert.Equal(t, int64(1700000000), h.Time)
	assert.Len(t, h.Nonce, 24)
	assert.Len(t, h.Signature, 64)
	sig := strings.Repeat("ab", 32)
	for _, bad := range []string{
		"", "Bearer abc", AuthScheme, AuthScheme + " t=1,n=0123456789abcdef",
		AuthScheme + " t=x,n=0123456789abcdef,s=" + sig,
		AuthScheme + " t=1,n=short,s=" + sig,
		AuthScheme + " t=1,n=0123456789abcdef,s=abc",
		AuthScheme + " t=1,t=2,n=0123456789abcdef,s=" + sig,
		AuthScheme + " t=1,n=0123456789abcdef,s=" + sig + ",x=1",
		AuthScheme + " t=1,n=0123456789ABCDEF,s=" + sig,
	} {
		_, err := ParseAuthHeader(bad)
		assert.ErrorIs(t, err, ErrAuth, "%q", bad)
	}
}

func FuzzParseAuthHeader(f *testing.F) {
	req, _ := http.NewRequest(http.MethodPost, "http://x/api/v1/register", nil)
	Sign(req, testKey, []byte("{}"), time.Unix(1700000000, 0))
	f.Add(req.Header.Get("Authorization"))
	f.Add(AuthScheme + " t=1,n=0123456789abcdef,s=" + strings.Repeat("0", 64))
	f.Add("Basic dXNlcjpwdw==")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseAuthHeader(s)
		if err == nil && (len(h.Signature) != 64 || len(h.Nonce) < 16) {
			t.Fatalf("accepted %q as %+v", s, h)
		}
	})
}
