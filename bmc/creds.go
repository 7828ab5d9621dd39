package bmc

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// MaxCredentialsFile bounds a credentials file.
const MaxCredentialsFile = 64 << 10

// Credentials open a BMC.
type Credentials struct {
	User, Password string
	// CA, for Redfish, is the PEM file of the CA that signed the BMC's
	// certificate (empty: the system's roots).
	CA string
	// InsecureTLS, for Redfish, skips the check of the BMC's
	// certificate: anyone on the path can then read the password.
	// Only when the file says so.
	InsecureTLS bool
	// Path is the file they came from (for messages).
	Path string
}

// ParseCredentials reads a credentials file's text: one setting per
// line, KEY=VALUE, # starts a comment line.
//
//	user=admin
//	password=the rest of the line, spaces and = included
//	ca=/etc/herd/bmc-ca.pem      (Redfish; relative to the file's folder)
//	insecure-tls=yes             (Redfish; no certificate check)
//
// user and password are required. Errors name the line.
func ParseCredentials(data []byte) (Credentials, error) {
	var c Credentials
	seen := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 4096), MaxCredentialsFile)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), "\r")
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		key = strings.TrimSpace(key)
		if !ok {
			return c, fmt.Errorf("%w: line %d: want KEY=VALUE", ErrCredentials, n)
		}
		if prev, dup := seen[key]; dup {
			return c, fmt.Errorf("%w: line %d: %s set again (first on line %d)", ErrCredentials, n, key, prev)
		}
		seen[key] = n
		if strings.ContainsRune(val, 0) {
			return c, fmt.Errorf("%w: line %d: NUL byte", ErrCredentials, n)
		}
		switch key {
		case "user":
			c.User = strings.TrimSpace(val)
		case "password":
			c.Password = val // as written: a password may end in a space
		case "ca":
			c.CA = strings.TrimSpace(val)
		case "insecure-tls":
			switch strings.TrimSpace(val) {
			case "yes", "true":
				c.InsecureTLS = true
			case "no", "false":
			default:
				return c, fmt.Errorf("%w: line %d: insecure-tls is yes or no", ErrCredentials, n)
			}
		default:
			return c, fmt.Errorf("%w: line %d: unknown key %q (want user, password, ca, insecure-tls)", ErrCredentials, n, key)
		}
	}
	if err := sc.Err(); err != nil {
		return c, fmt.Errorf("%w: %v", ErrCredentials, err)
	}
	switch {
	case c.User == "":
		return c, fmt.Errorf("%w: no user", ErrCredentials)
	case c.Password == "":
		return c, fmt.Errorf("%w: no password", ErrCredentials)
	case c.CA != "" && c.InsecureTLS:
		return c, fmt.Errorf("%w: ca and insecure-tls=yes together", ErrCredentials)
	}
	return c, nil
}

// LoadCredentials reads and parses the credentials file at path. A file
// that group or others may read is refused, as ssh refuses such keys.
func LoadCredentials(path string) (Credentials, error) {
	f, err := os.Open(path)
	if err != nil {
		return Credentials{}, fmt.Errorf("%w: %v", ErrCredentials, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Credentials{}, fmt.Errorf("%w: %v", ErrCredentials, err)
	}
	if !fi.Mode().IsRegular() {
		return Credentials{}, fmt.Errorf("%w: %s is not a regular file", ErrCredentials, path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return Credentials{}, fmt.Errorf("%w: %s may be read by others (mode %04o): chmod 600 it", ErrCredentials, path, fi.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxCredentialsFile+1))
	if err != nil {
		return Credentials{}, fmt.Errorf("%w: %s: %v", ErrCredentials, path, err)
	}
	if len(data) > MaxCredentialsFile {
		return Credentials{}, fmt.Errorf("%w: %s is larger than %d bytes", ErrCredentials, path, MaxCredentialsFile)
	}
	c, err := ParseCredentials(data)
	if err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	c.Path = path
	if c.CA != "" && !filepath.IsAbs(c.CA) {
		c.CA = filepath.Join(filepath.Dir(path), c.CA)
	}
	return c, nil
}

// certPool reads the PEM file of a CA.
func certPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: ca: %v", ErrCredentials, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%w: ca: no PEM certificate in %s", ErrCredentials, path)
	}
	return pool, nil
}

// Opener opens the BMCs of many machines, reading each credentials file
// once (an inventory names the same file for a whole rack). The zero
// Opener is ready to use.
type Opener struct {
	creds map[string]Credentials
}

// Open opens the BMC at a with the credentials in the file at credPath.
// A credentials file herd cannot use is an error wrapping
// ErrCredentials.
func (o *Opener) Open(a Addr, credPath string) (Controller, error) {
	c, ok := o.creds[credPath]
	if !ok {
		var err error
		if c, err = LoadCredentials(credPath); err != nil {
			return nil, err
		}
		if o.creds == nil {
			o.creds = map[string]Credentials{}
		}
		o.creds[credPath] = c
	}
	return Open(a, c)
}
