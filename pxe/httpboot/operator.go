package httpboot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/herd-cluster/herd/pxe/state"
)

// ErrServerURL is wrapped by the errors of an OperatorClient whose
// Server is no URL.
var ErrServerURL = errors.New("bad server URL")

// maxMachinesReply bounds the machine list an OperatorClient reads.
const maxMachinesReply = 64 << 20

// OperatorClient asks a running herd pxe server (herd pxe serve, herd
// deploy) for its machines and changes their state, every request signed
// with the operator's credential (Operator of the session key).
type OperatorClient struct {
	// Server is the server's base URL; "host:port" means http://host:port.
	Server string
	Cred   Credential
	// HTTP is the client used (nil: one with a 10 s timeout).
	HTTP *http.Client
}

func (c *OperatorClient) url(path string) string {
	u := strings.TrimRight(c.Server, "/") + path
	if !strings.Contains(c.Server, "://") {
		u = "http://" + u
	}
	return u
}

func (c *OperatorClient) do(ctx context.Context, method, path string, body []byte) (*http.Response, string, error) {
	u := c.url(path)
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return nil, u, fmt.Errorf("%w %q: %v", ErrServerURL, c.Server, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	Sign(req, c.Cred, body, time.Now())
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, u, fmt.Errorf("ask %s: %w", u, err)
	}
	return resp, u, nil
}

// Machines returns the server's machines.
func (c *OperatorClient) Machines(ctx context.Context) ([]state.Machine, error) {
	resp, u, err := c.do(ctx, http.MethodGet, PathMachines, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var r Reply
		json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&r)
		return nil, fmt.Errorf("ask %s: %s %s", u, resp.Status, r.Error)
	}
	var ms []state.Machine
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxMachinesReply)).Decode(&ms); err != nil {
		return nil, fmt.Errorf("ask %s: %w", u, err)
	}
	return ms, nil
}

// Set asks the server to set the state of mac.
func (c *OperatorClient) Set(ctx context.Context, mac string, body SetRequest) error {
	b, _ := json.Marshal(body)
	resp, u, err := c.do(ctx, http.MethodPost, PathMachines+"/"+mac, b)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var r Reply
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&r); err != nil || !r.OK {
		return fmt.Errorf("ask %s: %s %s", u, resp.Status, r.Error)
	}
	return nil
}
