// Package abi is the raw Platform host ABI, version 1 (sdk/ABI.md): one Go function per
// host import, plus the error codes. Real imports on wasip1; on other platforms every call
// fails with ErrUnavailable, so the SDK builds, vets and tests anywhere.
package abi

import "errors"

// Error codes returned (negated) by host functions.
const (
	CodeInternal    = 1
	CodeInvalid     = 2
	CodeNotFound    = 3
	CodeDenied      = 4
	CodeClosed      = 5
	CodeTooLarge    = 6
	CodeTimeout     = 7
	CodeUnavailable = 8
	CodeState       = 9
	CodeLimit       = 10
)

// Flags of ResponseSend.
const (
	// FlagEnd says the body is complete with this call.
	FlagEnd = 1
)

// Errors for the codes.
var (
	ErrInternal    = errors.New("platform: host error")
	ErrInvalid     = errors.New("platform: invalid argument")
	ErrNotFound    = errors.New("platform: not found")
	ErrDenied      = errors.New("platform: denied by the host")
	ErrClosed      = errors.New("platform: stream closed")
	ErrTooLarge    = errors.New("platform: too large")
	ErrTimeout     = errors.New("platform: timed out")
	ErrUnavailable = errors.New("platform: host capability unavailable")
	ErrState       = errors.New("platform: call not allowed now")
	ErrLimit       = errors.New("platform: too many open handles")
)

// Err turns a negative host result into an error (nil for n >= 0), with the host's
// message when it gave one.
func Err(n int32) error {
	if n >= 0 {
		return nil
	}
	var base error
	switch -n {
	case CodeInvalid:
		base = ErrInvalid
	case CodeNotFound:
		base = ErrNotFound
	case CodeDenied:
		base = ErrDenied
	case CodeClosed:
		base = ErrClosed
	case CodeTooLarge:
		base = ErrTooLarge
	case CodeTimeout:
		base = ErrTimeout
	case CodeUnavailable:
		base = ErrUnavailable
	case CodeState:
		base = ErrState
	case CodeLimit:
		base = ErrLimit
	default:
		base = ErrInternal
	}
	if msg := LastError(); msg != "" {
		return &hostError{base: base, msg: msg}
	}
	return base
}

type hostError struct {
	base error
	msg  string
}

func (e *hostError) Error() string { return e.base.Error() + ": " + e.msg }
func (e *hostError) Unwrap() error { return e.base }

// Sized calls f with a buffer, growing it once when the host says the result is larger
// (host functions return the full length and write only when it fits).
func Sized(initial int, f func(buf []byte) int32) ([]byte, error) {
	return SizedInto(make([]byte, initial), f)
}

// SizedInto is Sized starting with buf, so a caller can reuse one buffer across calls.
// The result is buf itself when it fits, a new buffer when it did not.
func SizedInto(buf []byte, f func(buf []byte) int32) ([]byte, error) {
	n := f(buf)
	if n < 0 {
		return nil, Err(n)
	}
	if int(n) > len(buf) {
		buf = make([]byte, n)
		n = f(buf)
		if n < 0 {
			return nil, Err(n)
		}
		if int(n) > len(buf) {
			return nil, ErrInternal
		}
	}
	return buf[:n], nil
}

// LastError is the text of the host's last error for this request, if any.
func LastError() string {
	b := make([]byte, 512)
	n := ErrorMessage(b)
	if n <= 0 {
		return ""
	}
	if int(n) > len(b) {
		n = int32(len(b))
	}
	return string(b[:n])
}

// RequestSeq counts the requests this instance has started serving. Host handles (key-value
// stores, outbound responses) last one request; a value that keeps a handle across
// requests compares this to know when to reopen it.
var RequestSeq uint64
