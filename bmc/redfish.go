package bmc

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// redfishBMC speaks Redfish to a BMC: HTTPS with basic authentication,
// the certificate checked against the credentials' CA (or the system's
// roots) unless they say insecure-tls.
type redfishBMC struct {
	addr   Addr
	creds  Credentials
	base   string // https://host:port
	client *http.Client

	mu     sync.Mutex
	system string // the system's path, once known
}

func newRedfish(a Addr, c Credentials) (*redfishBMC, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case c.InsecureTLS:
		tc.InsecureSkipVerify = true
	case c.CA != "":
		pool, err := certPool(c.CA)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = pool
	}
	tr := &http.Transport{TLSClientConfig: tc, Proxy: nil, MaxIdleConnsPerHost: 1, ResponseHeaderTimeout: Timeout}
	return &redfishBMC{
		addr: a, creds: c, system: a.System,
		base: "https://" + net.JoinHostPort(a.Host, strconv.Itoa(a.Port)),
		client: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
			// A redirect would carry the password elsewhere.
			return errors.New("redirect refused")
		}},
	}, nil
}

// do sends one request; out, if not nil, gets the JSON answer. It
// returns the answer's ETag.
func (b *redfishBMC) do(ctx context.Context, method, path string, body any, etag string, out any) (string, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return "", err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, b.base+path, rd)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrBMC, b.addr, err)
	}
	req.SetBasicAuth(b.creds.User, b.creds.Password)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("OData-Version", "4.0")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if etag != "" {
		req.Header.Set("If-Match", etag)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %s %s: %v", ErrBMC, b.addr, method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponse+1))
	if err != nil {
		return "", fmt.Errorf("%w: %s: %s %s: %v", ErrBMC, b.addr, method, path, err)
	}
	if len(data) > MaxResponse {
		return "", fmt.Errorf("%w: %s: %s %s: answer larger than %d bytes", ErrBMC, b.addr, method, path, MaxResponse)
	}
	if resp.StatusCode/100 != 2 {
		return "", fmt.Errorf("%w: %s: %s %s: %s%s", ErrBMC, b.addr, method, path, resp.Status, redfishError(data))
	}
	if out != nil && resp.StatusCode != http.StatusNoContent && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return "", fmt.Errorf("%w: %s: %s %s: answer not understood: %v", ErrBMC, b.addr, method, path, err)
		}
	}
	return resp.Header.Get("ETag"), nil
}

// redfishError returns ": message" from a Redfish error answer, or "".
func redfishError(data []byte) string {
	var e struct {
		Error struct {
			Message string `json:"message"`
			Info    []struct {
				Message string
			} `json:"@Message.ExtendedInfo"`
		} `json:"error"`
	}
	if json.Unmarshal(data, &e) != nil {
		return ""
	}
	msg := e.Error.Message
	for _, i := range e.Error.Info {
		if i.Message != "" {
			msg = i.Message // the specific one
			break
		}
	}
	if msg == "" {
		return ""
	}
	return ": " + firstLine(msg)
}

// redfishSystem is what herd reads of a ComputerSystem.
type redfishSystem struct {
	PowerState string
	Actions    struct {
		Reset struct {
			Target  string   `json:"target"`
			Allowed []string `json:"ResetType@Redfish.AllowableValues"`
		} `json:"#ComputerSystem.Reset"`
	}
}

// systemPath finds the system: the address's, else the BMC's only one.
func (b *redfishBMC) systemPath(ctx context.Context) (string, error) {
	b.mu.Lock()
	sys := b.system
	b.mu.Unlock()
	if sys != "" {
		return sys, nil
	}
	var coll struct {
		Members []struct {
			ID string `json:"@odata.id"`
		}
	}
	if _, err := b.do(ctx, http.MethodGet, "/redfish/v1/Systems", nil, "", &coll); err != nil {
		return "", err
	}
	var ids []string
	for _, m := range coll.Members {
		ids = append(ids, m.ID)
	}
	switch {
	case len(ids) == 0:
		return "", fmt.Errorf("%w: %s: no system", ErrBMC, b.addr)
	case len(ids) > 1:
		return "", fmt.Errorf("%w: %s: %d systems (%s): name one, as redfish://HOST%s", ErrBMC, b.addr, len(ids), strings.Join(ids, " "), ids[0])
	}
	if _, err := ParseAddr("redfish://h" + ids[0]); err != nil {
		return "", fmt.Errorf("%w: %s: system path %q not understood", ErrBMC, b.addr, ids[0])
	}
	b.mu.Lock()
	b.system = strings.TrimSuffix(ids[0], "/")
	b.mu.Unlock()
	return b.system, nil
}

func (b *redfishBMC) get(ctx context.Context) (string, redfishSystem, string, error) {
	var s redfishSystem
	path, err := b.systemPath(ctx)
	if err != nil {
		return "", s, "", err
	}
	etag, err := b.do(ctx, http.MethodGet, path, nil, "", &s)
	return path, s, etag, err
}

func (b *redfishBMC) State(ctx context.Context) (PowerState, error) {
	_, s, _, err := b.get(ctx)
	if err != nil {
		return "", err
	}
	return redfishPower(s.PowerState)
}

// redfishPower maps a Redfish PowerState: a machine powering on is on.
func redfishPower(s string) (PowerState, error) {
	switch s {
	case "On", "PoweringOn", "Paused":
		return On, nil
	case "Off", "PoweringOff":
		return Off, nil
	}
	return "", fmt.Errorf("%w: power state %q not understood", ErrBMC, s)
}

func (b *redfishBMC) Power(ctx context.Context, a Action) error {
	path, s, _, err := b.get(ctx)
	if err != nil {
		return err
	}
	st, err := redfishPower(s.PowerState)
	if err != nil {
		return err
	}
	target := s.Actions.Reset.Target
	if target == "" {
		target = path + "/Actions/ComputerSystem.Reset"
	}
	if !strings.HasPrefix(target, "/redfish/v1/") || strings.Contains(target, "..") {
		return fmt.Errorf("%w: %s: reset target %q refused", ErrBMC, b.addr, target)
	}
	var kind string
	switch a {
	case PowerOn:
		kind = "On"
	case PowerOff:
		kind = "ForceOff"
	case PowerCycle:
		switch {
		case st == Off:
			kind = "On"
		case allows(s.Actions.Reset.Allowed, "PowerCycle"):
			kind = "PowerCycle"
		default:
			kind = "ForceRestart"
		}
	default:
		return fmt.Errorf("%w: power action %q", ErrBMC, a)
	}
	if (kind == "On" && st == On) || (kind == "ForceOff" && st == Off) {
		return nil // already so: some BMCs answer an error
	}
	if len(s.Actions.Reset.Allowed) > 0 && !allows(s.Actions.Reset.Allowed, kind) {
		return fmt.Errorf("%w: %s: reset type %s not offered (offered: %s)", ErrBMC, b.addr, kind, strings.Join(s.Actions.Reset.Allowed, ", "))
	}
	_, err = b.do(ctx, http.MethodPost, target, map[string]string{"ResetType": kind}, "", nil)
	return err
}

func allows(list []string, v string) bool {
	for _, s := range list {
		if s == v {
			return true
		}
	}
	return false
}

func (b *redfishBMC) SetBoot(ctx context.Context, bt Boot) error {
	target := map[Device]string{PXE: "Pxe", Disk: "Hdd"}[bt.Device]
	if target == "" {
		return fmt.Errorf("%w: boot device %q", ErrBMC, bt.Device)
	}
	path, _, etag, err := b.get(ctx)
	if err != nil {
		return err
	}
	boot := map[string]string{"BootSourceOverrideTarget": target, "BootSourceOverrideEnabled": "Once"}
	if bt.Persistent {
		boot["BootSourceOverrideEnabled"] = "Continuous"
	}
	if bt.EFI {
		boot["BootSourceOverrideMode"] = "UEFI"
	}
	_, err = b.do(ctx, http.MethodPatch, path, map[string]any{"Boot": boot}, etag, nil)
	return err
}
