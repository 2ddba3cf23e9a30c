package platform

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/platform-dev/platform/sdk/go/internal/abi"
	"github.com/platform-dev/platform/sdk/go/internal/wire"
)

// Results of platform_handle.
const (
	handleOK       = 0
	handleNoRoute  = 1 // no handler registered
	handlePanicked = 2 // the handler panicked (the instance should be retired)
	handleBadHead  = 3 // the request head could not be read
)

// host is the ABI the request path uses; tests replace it with a fake.
type hostABI interface {
	requestHead() ([]byte, error)
	bodyRead(p []byte) int32
	send(status int, head, body []byte, flags int32) int32
	write(body []byte) int32
	trailers(block []byte) int32
}

type realHost struct{}

// headBuf receives every request's head. An instance serves one request at a time and
// decoding copies everything out of it, so one buffer does: allocating (and clearing) a
// fresh 4 KiB per request was ~9% of a pooled hello's CPU samples (benches/README.md).
var headBuf = make([]byte, 4096)

// respHeadBuf holds each response's encoded header block while the host copies it out.
var respHeadBuf = make([]byte, 0, 256)

// maxKeptHead bounds the head buffers kept after a request or response with a larger head.
const maxKeptHead = 64 << 10

func (realHost) requestHead() ([]byte, error) {
	b, err := abi.SizedInto(headBuf, abi.RequestHead)
	if err == nil && cap(b) > cap(headBuf) && cap(b) <= maxKeptHead {
		headBuf = b[:cap(b)]
	}
	return b, err
}

func (realHost) bodyRead(p []byte) int32 { return abi.RequestBodyRead(p) }
func (realHost) send(status int, head, body []byte, flags int32) int32 {
	return abi.ResponseSend(int32(status), head, body, flags)
}
func (realHost) write(body []byte) int32     { return abi.ResponseWrite(body) }
func (realHost) trailers(block []byte) int32 { return abi.ResponseTrailers(block) }

var host hostABI = realHost{}

// serveOne handles the request the host is offering: the body of platform_handle.
func serveOne() (code int32) {
	if handler == nil {
		return handleNoRoute
	}
	abi.RequestSeq++
	raw, err := host.requestHead()
	if err != nil {
		fmt.Fprintln(stderr, "platform: cannot read the request:", err)
		return handleBadHead
	}
	head, err := wire.DecodeRequestHead(raw)
	if err != nil {
		fmt.Fprintln(stderr, "platform: malformed request head:", err)
		return handleBadHead
	}
	if err := syncEnv(head.EnvGeneration); err != nil {
		fmt.Fprintln(stderr, "platform: cannot refresh configuration:", err)
	}
	req, err := newRequest(head)
	if err != nil {
		w := newResponseWriter()
		http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
		w.finish()
		return handleOK
	}
	w := newResponseWriter()
	defer func() {
		if p := recover(); p != nil {
			fmt.Fprintf(stderr, "panic: %v\n\n%s", p, debug.Stack())
			if !w.sent {
				w.header = http.Header{"Content-Type": {"text/plain; charset=utf-8"}}
				w.status = 0
				w.WriteHeader(http.StatusInternalServerError)
				w.buf.Reset()
				w.buf.WriteString("the function panicked\n")
			}
			w.finish()
			code = handlePanicked
		}
	}()
	handler.ServeHTTP(w, req)
	w.finish()
	return handleOK
}

// newRequest builds the *http.Request a handler sees.
func newRequest(h wire.RequestHead) (*http.Request, error) {
	u, err := url.ParseRequestURI(h.URI)
	if err != nil {
		return nil, err
	}
	major, minor, ok := http.ParseHTTPVersion(h.Proto)
	if !ok {
		major, minor = 1, 1
	}
	r := &http.Request{
		Method:        h.Method,
		URL:           u,
		Proto:         h.Proto,
		ProtoMajor:    major,
		ProtoMinor:    minor,
		Header:        h.Header,
		Host:          h.Host,
		RemoteAddr:    h.RemoteAddr,
		RequestURI:    h.URI,
		ContentLength: h.ContentLength,
	}
	if r.Header == nil {
		r.Header = http.Header{}
	}
	if h.ContentLength == 0 {
		r.Body = http.NoBody
	} else {
		r.Body = &bodyReader{}
	}
	return r.WithContext(withRequestID(context.Background(), h.RequestID)), nil
}

// bodyReader streams the request body from the host.
type bodyReader struct {
	done bool
	err  error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	if b.err != nil {
		return 0, b.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if len(p) > 1<<20 {
		p = p[:1<<20]
	}
	n := host.bodyRead(p)
	switch {
	case n > 0:
		return int(n), nil
	case n == 0:
		b.done = true
		return 0, io.EOF
	default:
		b.err = abi.Err(n)
		return 0, b.err
	}
}

func (b *bodyReader) Close() error { return nil }

// chunk is how much response body is buffered before it goes to the host.
const chunk = 32 << 10

// responseWriter implements http.ResponseWriter and http.Flusher over the host.
type responseWriter struct {
	header http.Header
	// sentHeader is the header as it was at WriteHeader: like net/http, changes made to
	// Header() after WriteHeader (or the first Write) do not reach the client, except
	// declared trailers.
	sentHeader http.Header
	status     int
	buf        bytes.Buffer
	sent       bool
	err        error
}

func newResponseWriter() *responseWriter {
	return &responseWriter{header: http.Header{}}
}

func (w *responseWriter) Header() http.Header { return w.header }

func (w *responseWriter) WriteHeader(code int) {
	if w.sent || w.status != 0 {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	w.status = code
	w.sentHeader = w.header.Clone()
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if _, set := w.sentHeader["Content-Type"]; !w.sent && !set && w.buf.Len() == 0 && len(p) > 0 {
		w.sentHeader.Set("Content-Type", http.DetectContentType(p))
	}
	written := 0
	for len(p) > 0 {
		room := chunk - w.buf.Len()
		if room <= 0 {
			if err := w.flush(false); err != nil {
				return written, err
			}
			room = chunk
		}
		n := min(room, len(p))
		w.buf.Write(p[:n])
		p = p[n:]
		written += n
	}
	return written, nil
}

// WriteString avoids a copy for io.WriteString.
func (w *responseWriter) WriteString(s string) (int, error) { return w.Write([]byte(s)) }

// Flush sends what is buffered now (streaming responses).
func (w *responseWriter) Flush() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	_ = w.flush(false)
}

func (w *responseWriter) declaredTrailers() []string {
	var names []string
	for _, v := range w.header.Values("Trailer") {
		for _, n := range strings.Split(v, ",") {
			if n = strings.TrimSpace(n); n != "" {
				names = append(names, http.CanonicalHeaderKey(n))
			}
		}
	}
	for k := range w.header {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			names = append(names, k)
		}
	}
	return names
}

func (w *responseWriter) flush(end bool) error {
	if w.err != nil {
		return w.err
	}
	var n int32
	if !w.sent {
		if w.status == 0 {
			w.WriteHeader(http.StatusOK)
		}
		// Straight from the header as sent: no copy of it per response.
		var length string
		if end && w.sentHeader.Get("Content-Length") == "" && !bodyless(w.status) {
			length = strconv.Itoa(w.buf.Len())
		}
		hw := wire.Writer{B: respHeadBuf[:0]}
		if length != "" {
			hw.ResponseHeaders(w.sentHeader, http.TrailerPrefix, "Content-Length", length)
		} else {
			hw.ResponseHeaders(w.sentHeader, http.TrailerPrefix, "", "")
		}
		flags := int32(0)
		if end {
			flags = abi.FlagEnd
		}
		n = host.send(w.status, hw.B, w.buf.Bytes(), flags)
		if cap(hw.B) <= maxKeptHead {
			respHeadBuf = hw.B[:0]
		}
		w.sent = true
	} else if w.buf.Len() > 0 {
		n = host.write(w.buf.Bytes())
	}
	w.buf.Reset()
	if n < 0 {
		w.err = abi.Err(n)
	}
	return w.err
}

// finish sends whatever is left, then the trailers.
func (w *responseWriter) finish() {
	trailers := w.declaredTrailers()
	_ = w.flush(len(trailers) == 0)
	if len(trailers) == 0 || w.err != nil {
		return
	}
	t := http.Header{}
	for _, name := range trailers {
		key := strings.TrimPrefix(name, http.TrailerPrefix)
		if vs := w.header.Values(name); len(vs) > 0 {
			t[http.CanonicalHeaderKey(key)] = vs
		}
	}
	var tw wire.Writer
	tw.Headers(t)
	host.trailers(tw.B)
}

func bodyless(status int) bool {
	return status == http.StatusNoContent || status == http.StatusNotModified || (status >= 100 && status < 200)
}
