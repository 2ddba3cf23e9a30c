//go:build !wasip1

package abi

const unavailable = -CodeUnavailable

// RequestHead is unavailable off wasip1.
func RequestHead(buf []byte) int32 { return unavailable }

// RequestBodyRead is unavailable off wasip1.
func RequestBodyRead(buf []byte) int32 { return unavailable }

// ResponseSend is unavailable off wasip1.
func ResponseSend(status int32, head []byte, body []byte, flags int32) int32 { return unavailable }

// ResponseWrite is unavailable off wasip1.
func ResponseWrite(body []byte) int32 { return unavailable }

// ResponseTrailers is unavailable off wasip1.
func ResponseTrailers(block []byte) int32 { return unavailable }

// EnvGet is unavailable off wasip1.
func EnvGet(buf []byte) int32 { return unavailable }

// ConfigGet is unavailable off wasip1.
func ConfigGet(key string, buf []byte) int32 { return unavailable }

// HTTPSend is unavailable off wasip1.
func HTTPSend(head []byte, body []byte) int32 { return unavailable }

// HTTPResponseHead is unavailable off wasip1.
func HTTPResponseHead(h int32, buf []byte) int32 { return unavailable }

// HTTPBodyRead is unavailable off wasip1.
func HTTPBodyRead(h int32, buf []byte) int32 { return unavailable }

// HTTPClose is unavailable off wasip1.
func HTTPClose(h int32) int32 { return unavailable }

// KVOpen is unavailable off wasip1.
func KVOpen(name string) int32 { return unavailable }

// KVGet is unavailable off wasip1.
func KVGet(h int32, key string, buf []byte) int32 { return unavailable }

// KVSet is unavailable off wasip1.
func KVSet(h int32, key string, val []byte) int32 { return unavailable }

// KVDelete is unavailable off wasip1.
func KVDelete(h int32, key string) int32 { return unavailable }

// KVKeys is unavailable off wasip1.
func KVKeys(h int32, prefix string, buf []byte) int32 { return unavailable }

// ErrorMessage is unavailable off wasip1.
func ErrorMessage(buf []byte) int32 { return 0 }

// Available reports whether the host ABI is present (false off wasip1).
const Available = false
