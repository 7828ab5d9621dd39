package agent

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/herd-cluster/herd/pxe/httpboot"
)

// ErrRefused means the herd server refused this machine for good (for
// this boot): its agent key is unknown, spent or replaced, its session
// is not the server's, or it is not approved. Trying again does not help;
// the operator does (herd pxe list shows why, herd pxe set MAC new gives
// the machine a fresh key).
var ErrRefused = errors.New("agent: refused by the herd server")

// Client calls the herd server's API as an agent: every call signed (see
// httpboot.Sign), the registration's answer opened. It follows the
// server's clock when a refusal says the agent's is off (machines in an
// initramfs often have no good clock). Its methods may be called
// concurrently.
type Client struct {
	// Server is the server's IP:PORT.
	Server string
	// HTTP is the client to use (default http.DefaultClient).
	HTTP *http.Client
	// Say receives a line for the console when the client starts
	// following the server's clock (optional).
	Say func(format string, args ...any)

	mu     sync.Mutex
	offset time.Duration // server clock minus ours, once learned
}

// Register sends req (whose Pub must be priv's public half, see
// httpboot.NewAnswerKey) signed with signer: the agent key (RoleAgent),
// or for an agent running in its stage 2 the machine key (RoleMachine).
// It returns what the sealed answer holds: the chain key and this
// machine's machine key. A refusal wraps ErrRefused.
func (c *Client) Register(ctx context.Context, req httpboot.RegisterRequest, signer httpboot.Credential, priv *ecdh.PrivateKey) (httpboot.Credentials, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return httpboot.Credentials{}, err
	}
	rep, nonce, err := c.call(ctx, http.MethodPost, httpboot.PathRegister, b, signer, httpboot.MaxReply)
	if err != nil {
		return httpboot.Credentials{}, err
	}
	creds, err := httpboot.OpenAnswer(priv, signer, req.MAC, nonce, rep.Answer)
	if err != nil {
		return httpboot.Credentials{}, fmt.Errorf("POST %s: %w", httpboot.PathRegister, err)
	}
	return creds, nil
}

// Report sends the outcome of a transfer, signed with the machine key.
func (c *Client) Report(ctx context.Context, rep httpboot.ReportRequest, machine httpboot.Credential) error {
	b, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	_, _, err = c.call(ctx, http.MethodPost, httpboot.PathReport, b, machine, 1<<16)
	return err
}

// Known asks the server whether it still knows mac, signed with that
// machine's key: nil when it answers with the machine.
func (c *Client) Known(ctx context.Context, mac string, machine httpboot.Credential) error {
	_, _, err := c.call(ctx, http.MethodGet, httpboot.PathMachines+"/"+mac, nil, machine, 1<<16)
	return err
}

// call sends one signed request and checks its Reply. It returns the
// reply and the request's nonce. It reads at most limit bytes of the
// reply.
func (c *Client) call(ctx context.Context, method, path string, body []byte, cred httpboot.Credential, limit int64) (httpboot.Reply, string, error) {
	for retried := false; ; retried = true {
		req, err := http.NewRequestWithContext(ctx, method, "http://"+c.Server+path, bytes.NewReader(body))
		if err != nil {
			return httpboot.Reply{}, "", err
		}
		if body == nil {
			req.Body = http.NoBody
		} else {
			req.Header.Set("Content-Type", "application/json")
		}
		c.mu.Lock()
		now := time.Now().Add(c.offset)
		c.mu.Unlock()
		nonce := httpboot.Sign(req, cred, body, now)
		hc := c.HTTP
		if hc == nil {
			hc = http.DefaultClient
		}
		resp, err := hc.Do(req)
		if err != nil {
			return httpboot.Reply{}, "", err
		}
		data, _ := io.ReadAll(io.LimitReader(resp.Body, limit))
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized && !retried && c.followClock(resp.Header.Get("Date")) {
			continue
		}
		var rep httpboot.Reply
		jerr := json.Unmarshal(data, &rep)
		if method == http.MethodGet && resp.StatusCode == http.StatusOK && jerr == nil {
			return rep, nonce, nil // a machine, not a Reply
		}
		if jerr != nil || resp.StatusCode != http.StatusOK || !rep.OK {
			msg := rep.Error
			if msg == "" {
				msg = strings.TrimSpace(string(data))
			}
			err := fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, msg)
			switch resp.StatusCode {
			case http.StatusUnauthorized, http.StatusForbidden, http.StatusConflict:
				err = fmt.Errorf("%w: %w", ErrRefused, err)
			}
			return rep, nonce, err
		}
		return rep, nonce, nil
	}
}

// followClock adopts the server's clock from a 401's Date header when
// ours is off by more than half of httpboot.MaxSkew; it reports whether
// the request is worth sending again.
func (c *Client) followClock(date string) bool {
	d, err := http.ParseTime(date)
	if err != nil {
		return false
	}
	off := time.Until(d)
	if off <= httpboot.MaxSkew/2 && off >= -httpboot.MaxSkew/2 {
		return false
	}
	c.mu.Lock()
	c.offset = off
	c.mu.Unlock()
	if c.Say != nil {
		c.Say("clock is %v off the server's, following the server", off.Round(time.Second))
	}
	return true
}
