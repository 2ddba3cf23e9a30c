package kv

import (
	"fmt"
	"strings"

	"github.com/platform-dev/platform/sdk/go/internal/abi"
)

// MaxKeySize is the longest key, in bytes.
const MaxKeySize = 1024

// ErrInvalid is wrapped by the errors for keys (and store names) the host refuses.
var ErrInvalid = abi.ErrInvalid

// keyRule is what every refusal says: the same rule as the host's (NATS KV's key rule),
// on every backend.
const keyRule = "keys are 1 to 1024 characters of A-Z a-z 0-9 - _ / = . that do not start or end with '.' or contain '..'"

// CheckKey reports whether key is a valid key: 1 to MaxKeySize characters of
// A-Z a-z 0-9 - _ / = . that do not start or end with '.' or contain "..". This is NATS
// KV's key rule, which the host applies to every store, so a key that works under
// `platform up` works in a cluster. Get, Set and Delete check their key with it before
// calling the host; the error wraps ErrInvalid.
func CheckKey(key string) error {
	if key == "" {
		return fmt.Errorf("kv: empty key: %s: %w", keyRule, ErrInvalid)
	}
	if len(key) > MaxKeySize {
		return fmt.Errorf("kv: key of %d bytes is too long: %s: %w", len(key), keyRule, ErrInvalid)
	}
	for _, c := range key {
		if !keyChar(c) {
			return fmt.Errorf("kv: invalid key %q: %q is not allowed; %s: %w", key, c, keyRule, ErrInvalid)
		}
	}
	if strings.HasPrefix(key, ".") || strings.HasSuffix(key, ".") || strings.Contains(key, "..") {
		return fmt.Errorf("kv: invalid key %q: %s: %w", key, keyRule, ErrInvalid)
	}
	return nil
}

func keyChar(c rune) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.ContainsRune("-_/=.", c)
}
