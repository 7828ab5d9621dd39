package main

// herd key: the session key files every node and the sender read with
// --key-file.

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

// keySize is how many random bytes herd key new writes.
const keySize = 32

// maxKeyFile bounds what readKey reads.
const maxKeyFile = 64 << 10

// minKeySize is the shortest key readKey accepts: a guessable key
// protects nothing.
const minKeySize = 16

func newKeyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Make a session key file (herd key new FILE), or show a key's id",
		Long: `A session key is a file of random bytes that the sender and every node read
with --key-file: a node writes only for a sender that proves it holds the same
key. Make one with herd key new, copy it (mode 0600) to every node and to the
golden node, and compare the ids herd key show-id prints on two machines to
check they hold the same key.

herd reads a key file as its bytes, less a trailing newline; it refuses a file
of fewer than 16 bytes and one that group or others may read or write.`,
	}
	var force bool
	newCmd := &cobra.Command{
		Use:   "new FILE",
		Short: "Write a new random 32-byte key to FILE (mode 0600); never overwrites without --force",
		Long: `New writes 32 random bytes (from the system's cryptographic generator) to FILE
with mode 0600 and prints its id. An existing FILE is left alone unless --force
is given (the nodes still holding the old key would refuse the sender); then
the new key replaces it in one rename. On any error nothing is created.

Exit codes:
  0  the key was written
  2  usage error, or FILE exists without --force
  3  the file could not be written`,
		Example: `  herd key new /etc/herd/key
  scp -p /etc/herd/key node1:/etc/herd/key    # and every other node
  herd recv --key-file /etc/herd/key --allow /dev/sda`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := writeNewKey(args[0], force)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "herd key: new %d-byte key in %s (mode 0600), id %s\n", len(key), args[0], keyID(key))
			return nil
		},
	}
	newCmd.Flags().BoolVar(&force, "force", false, "replace FILE if it exists")
	showCmd := &cobra.Command{
		Use:   "show-id FILE...",
		Short: "Print the id of each key file (the first 8 bytes of the key's SHA-256, hex): equal ids, equal keys",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, p := range args {
				key, err := readKey(p)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s  %s\n", keyID(key), p)
			}
			return nil
		},
	}
	cmd.AddCommand(newCmd, showCmd)
	return cmd
}

// keyID returns a short public fingerprint of key: the first 8 bytes of
// its SHA-256, in hex. It tells keys apart; it does not reveal them.
func keyID(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:8])
}

// newKey returns keySize random bytes. The last byte is never a newline
// or carriage return: readKey drops those at the end of a file, and the
// key read back must be the key written.
func newKey() []byte {
	key := make([]byte, keySize)
	for {
		rand.Read(key) // never fails (crypto/rand crashes the program instead)
		if last := key[keySize-1]; last != '\n' && last != '\r' {
			return key
		}
	}
}

// writeNewKey writes a new key to path with mode 0600 and returns it. It
// refuses an existing path unless force, and leaves nothing behind on
// error.
func writeNewKey(path string, force bool) ([]byte, error) {
	key := newKey()
	if !force {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			return nil, usagef("%s exists: herd key new does not overwrite a key (the nodes holding it would refuse the sender); give --force to replace it", path)
		}
		if err != nil {
			return nil, exitError{code: ExitFailed, err: fmt.Errorf("create key: %w", err)}
		}
		if err := writeClose(f, key); err != nil {
			os.Remove(path)
			return nil, exitError{code: ExitFailed, err: fmt.Errorf("write key %s: %w", path, err)}
		}
		return key, nil
	}
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return nil, usagef("%s is not a regular file (%s): not replaced", path, fi.Mode().Type())
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".herd-key-*")
	if err != nil {
		return nil, exitError{code: ExitFailed, err: fmt.Errorf("create key: %w", err)}
	}
	tmp := f.Name()
	err = f.Chmod(0o600)
	if err == nil {
		err = writeClose(f, key)
	} else {
		f.Close()
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return nil, exitError{code: ExitFailed, err: fmt.Errorf("write key %s: %w", path, err)}
	}
	return key, nil
}

// writeClose writes b to f, flushes it to disk and closes it.
func writeClose(f *os.File, b []byte) error {
	_, err := f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// readKey reads a session key file: its bytes, less trailing newlines
// ("\r\n" too), so a key typed or pasted with a newline works. It refuses
// a file group or others may read or write (anyone who reads the key can
// write to every node) and a key shorter than 16 bytes. An empty path
// returns a nil key.
func readKey(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, usageError{fmt.Errorf("read key: %w", err)}
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o077 != 0 {
		return nil, usagef("key file %s has mode %04o: others than its owner may read or change it; run chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	key, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, usageError{fmt.Errorf("read key %s: %w", path, err)}
	}
	if len(key) > maxKeyFile {
		return nil, usagef("key file %s is larger than %d bytes: is it a key? (herd key new FILE makes one)", path, maxKeyFile)
	}
	key = []byte(strings.TrimRight(string(key), "\r\n"))
	if len(key) < minKeySize {
		return nil, usagef("key file %s holds %d bytes; use at least %d (herd key new %s makes one)", path, len(key), minKeySize, path)
	}
	return key, nil
}

// sendKey reads herd send's key: --key-file, or none with --insecure;
// neither (or both) is a usage error.
func sendKey(o sendOptions) ([]byte, error) {
	return chooseKey(o.keyFile, o.insecure, "herd send needs a key: pass --key-file FILE holding the nodes' key (herd key new FILE makes one), or --insecure to send to nodes started with herd recv --insecure")
}

// recvKey reads herd recv's key: --key-file, or none with --insecure;
// neither (or both) is a usage error, before anything listens.
func recvKey(o recvOptions) ([]byte, error) {
	return chooseKey(o.keyFile, o.insecure, fmt.Sprintf("herd recv needs a key: make one with herd key new FILE, copy it to every node and the sender, and pass --key-file FILE (or --insecure to let any machine that reaches %s write here)", o.listen))
}

// chooseKey reads keyFile, or returns no key with insecure; neither is a
// usage error saying missing, both one saying they contradict.
func chooseKey(keyFile string, insecure bool, missing string) ([]byte, error) {
	switch {
	case insecure && keyFile != "":
		return nil, usagef("--insecure and --key-file contradict each other: give one")
	case insecure:
		return nil, nil
	case keyFile == "":
		return nil, usagef("%s", missing)
	}
	return readKey(keyFile)
}

// freshKeyFile writes a new random session key (64 hex characters) to a
// private temporary file and returns its path.
func freshKeyFile() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("session key: %w", err)
	}
	f, err := os.CreateTemp("", "herd-deploy-key-")
	if err != nil {
		return "", fmt.Errorf("session key file: %w", err)
	}
	_, werr := f.WriteString(hex.EncodeToString(b[:]))
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("session key file: %w", werr)
	}
	return f.Name(), nil
}
