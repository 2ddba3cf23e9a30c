// Package wire encodes and decodes the byte layouts that cross the Platform host ABI
// (sdk/ABI.md): request heads from the host, header blocks and key lists from the guest.
// Everything is little-endian and length-prefixed; it has no dependency on the host, so
// it is tested with plain `go test`.
package wire

import (
	"encoding/binary"
	"errors"
	"net/http"
	"strings"
)

// ErrShort reports a truncated or malformed buffer.
var ErrShort = errors.New("platform/wire: truncated or malformed data")

// RequestHead is what the host tells the guest about an incoming request.
type RequestHead struct {
	Method        string
	URI           string // request target as received: path and query, not decoded
	Host          string
	RemoteAddr    string // "ip:port"
	Proto         string // "HTTP/1.1"
	RoutePrefix   string // the matched route prefix ("/" for the root)
	RequestID     string
	ContentLength int64 // -1 when unknown (streamed)
	EnvGeneration uint64
	Header        http.Header
}

// Reader walks a buffer. It copies the buffer into one string up front and hands out
// substrings of it, so decoding a request head costs one allocation for all its strings
// instead of one per field and header (decoding the head was a sixth of a pooled hello's
// CPU samples, benches/README.md); the caller's buffer can be reused at once.
type Reader struct {
	s   string
	off int
	err error
}

// NewReader reads b.
func NewReader(b []byte) *Reader { return &Reader{s: string(b)} }

// Err is the first error met.
func (r *Reader) Err() error { return r.err }

func (r *Reader) take(n int) string {
	if r.err != nil || n < 0 || r.off+n > len(r.s) {
		r.err = ErrShort
		return ""
	}
	s := r.s[r.off : r.off+n]
	r.off += n
	return s
}

// U16 reads a uint16.
func (r *Reader) U16() uint16 {
	s := r.take(2)
	if len(s) < 2 {
		return 0
	}
	return uint16(s[0]) | uint16(s[1])<<8
}

// U32 reads a uint32.
func (r *Reader) U32() uint32 {
	s := r.take(4)
	if len(s) < 4 {
		return 0
	}
	return uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
}

// U64 reads a uint64.
func (r *Reader) U64() uint64 {
	lo := uint64(r.U32())
	hi := uint64(r.U32())
	return lo | hi<<32
}

// Str16 reads a string with a uint16 length.
func (r *Reader) Str16() string { return r.take(int(r.U16())) }

// Str32 reads a string with a uint32 length.
func (r *Reader) Str32() string { return r.take(int(r.U32())) }

// Headers reads a header block: uint32 count, then (Str16 name, Str32 value) pairs.
func (r *Reader) Headers() http.Header {
	n := int(r.U32())
	// Each header takes at least its two length prefixes (6 bytes): a count the rest of
	// the buffer cannot hold is malformed, and must not size the allocations below.
	if r.err != nil || n > 100000 || n > (len(r.s)-r.off)/6 {
		r.err = ErrShort
		return nil
	}
	h := make(http.Header, n)
	// One backing array for the values, as net/textproto's ReadMIMEHeader has: a value
	// slice per header would be an allocation per header. Each slice is capped at its own
	// element, so a repeated name's append copies instead of overwriting its neighbour.
	vals := make([]string, n)
	for i := 0; i < n && r.err == nil; i++ {
		k := http.CanonicalHeaderKey(r.Str16())
		v := r.Str32()
		if prev, ok := h[k]; ok {
			h[k] = append(prev, v)
			continue
		}
		vals[i] = v
		h[k] = vals[i : i+1 : i+1]
	}
	return h
}

// DecodeRequestHead decodes the host's request head.
func DecodeRequestHead(b []byte) (RequestHead, error) {
	r := NewReader(b)
	var h RequestHead
	if v := r.U32(); v != 1 && r.err == nil {
		return h, errors.New("platform/wire: unknown request head version")
	}
	h.Method = r.Str16()
	h.URI = r.Str32()
	h.Host = r.Str16()
	h.RemoteAddr = r.Str16()
	h.Proto = r.Str16()
	h.RoutePrefix = r.Str16()
	h.RequestID = r.Str16()
	h.ContentLength = int64(r.U64())
	h.EnvGeneration = r.U64()
	h.Header = r.Headers()
	return h, r.Err()
}

// Writer builds a buffer.
type Writer struct{ B []byte }

// U16 appends a uint16.
func (w *Writer) U16(v uint16) { w.B = binary.LittleEndian.AppendUint16(w.B, v) }

// U32 appends a uint32.
func (w *Writer) U32(v uint32) { w.B = binary.LittleEndian.AppendUint32(w.B, v) }

// U64 appends a uint64.
func (w *Writer) U64(v uint64) { w.B = binary.LittleEndian.AppendUint64(w.B, v) }

// Str16 appends a string with a uint16 length (cut at 65535 bytes).
func (w *Writer) Str16(s string) {
	if len(s) > 0xffff {
		s = s[:0xffff]
	}
	w.U16(uint16(len(s)))
	w.B = append(w.B, s...)
}

// Str32 appends a string with a uint32 length.
func (w *Writer) Str32(s string) {
	w.U32(uint32(len(s)))
	w.B = append(w.B, s...)
}

// Headers appends a header block, skipping names that are not valid header tokens.
func (w *Writer) Headers(h http.Header) { w.ResponseHeaders(h, "", "", "") }

// ResponseHeaders appends the header block of a response: h without the names that start
// with skipPrefix (net/http's trailer prefix), plus extraName: extraValue in place of any
// value h has for it when extraName is not empty. It reads h in place, so a response
// costs no copy of its header map.
func (w *Writer) ResponseHeaders(h http.Header, skipPrefix, extraName, extraValue string) {
	keep := func(k string) bool {
		return validName(k) &&
			(skipPrefix == "" || !strings.HasPrefix(k, skipPrefix)) &&
			(extraName == "" || k != extraName)
	}
	// One pass over the map: the count goes in front once it is known.
	at := len(w.B)
	w.U32(0)
	n := 0
	for k, vs := range h {
		if !keep(k) {
			continue
		}
		for _, v := range vs {
			w.Str16(k)
			w.Str32(v)
			n++
		}
	}
	if extraName != "" {
		w.Str16(extraName)
		w.Str32(extraValue)
		n++
	}
	binary.LittleEndian.PutUint32(w.B[at:], uint32(n))
}

// EncodeRequestHead encodes a request head (used by tests and fakes).
func EncodeRequestHead(h RequestHead) []byte {
	var w Writer
	w.U32(1)
	w.Str16(h.Method)
	w.Str32(h.URI)
	w.Str16(h.Host)
	w.Str16(h.RemoteAddr)
	w.Str16(h.Proto)
	w.Str16(h.RoutePrefix)
	w.Str16(h.RequestID)
	w.U64(uint64(h.ContentLength))
	w.U64(h.EnvGeneration)
	w.Headers(h.Header)
	return w.B
}

// Strings decodes a list: uint32 count, then Str32 items.
func Strings(b []byte) ([]string, error) {
	r := NewReader(b)
	n := int(r.U32())
	if r.err != nil || n > 10_000_000 {
		return nil, ErrShort
	}
	out := make([]string, 0, n)
	for i := 0; i < n && r.err == nil; i++ {
		out = append(out, r.Str32())
	}
	return out, r.Err()
}

// Pairs decodes key/value pairs: uint32 count, then (Str32 key, Str32 value).
func Pairs(b []byte) (map[string]string, error) {
	r := NewReader(b)
	n := int(r.U32())
	if r.err != nil || n > 1_000_000 {
		return nil, ErrShort
	}
	out := make(map[string]string, n)
	for i := 0; i < n && r.err == nil; i++ {
		k := r.Str32()
		out[k] = r.Str32()
	}
	return out, r.Err()
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == ':' {
			return false
		}
	}
	return true
}
