package httpboot

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// An OperatorClient signs what it sends, reads the server's answers, and
// turns a bad URL, an error status and a reply that is no machine list
// into errors (never a panic, never a list it made up).
func TestOperatorClient(t *testing.T) {
	key := []byte(strings.Repeat("k", 32))
	var reply string
	var status int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := ParseAuthHeader(r.Header.Get("Authorization")); err != nil {
			http.Error(w, "unsigned", http.StatusUnauthorized)
			return
		}
		w.WriteHeader(status)
		w.Write([]byte(reply))
	}))
	defer srv.Close()
	c := &OperatorClient{Server: srv.URL, Cred: Operator(key)}
	ctx := context.Background()

	status, reply = 200, `[{"mac":"52:54:00:00:00:01","state":"local"}]`
	ms, err := c.Machines(ctx)
	require.NoError(t, err)
	require.Len(t, ms, 1)
	assert.Equal(t, "52:54:00:00:00:01", ms[0].MAC)

	status, reply = 403, `{"ok":false,"error":"bad signature"}`
	_, err = c.Machines(ctx)
	assert.ErrorContains(t, err, "403 Forbidden bad signature")
	assert.ErrorContains(t, c.Set(ctx, "52:54:00:00:00:01", SetRequest{State: "new"}), "bad signature")

	for _, bad := range []string{`{"mac":1}`, `[{"mac":`, "\x00\xff", strings.Repeat("[", 1<<16)} {
		status, reply = 200, bad
		_, err = c.Machines(ctx)
		assert.Error(t, err, "%.20q", bad)
		assert.Error(t, c.Set(ctx, "52:54:00:00:00:01", SetRequest{State: "new"}))
	}
	status, reply = 200, `{"ok":true}`
	assert.NoError(t, c.Set(ctx, "52:54:00:00:00:01", SetRequest{State: "new"}))

	_, err = (&OperatorClient{Server: "http://[::1", Cred: Operator(key)}).Machines(ctx)
	assert.True(t, errors.Is(err, ErrServerURL), "%v", err)
}
