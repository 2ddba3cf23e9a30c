package platform

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/platform-dev/platform/sdk/go/internal/abi"
	"github.com/platform-dev/platform/sdk/go/internal/wire"
)

// Transport is an http.RoundTripper that sends requests through the host:
//
//	client := &http.Client{Transport: platform.Transport}
//
// The host only lets requests through to the hosts listed in the release's
// allowed_outbound_hosts, connects only to public addresses (private ones only where the
// operator allows them, never to the platform itself), and enforces timeouts. Request
// bodies are sent whole (read into memory); response bodies stream.
var Transport http.RoundTripper = transport{}

type transport struct{}

// ErrOutboundDenied wraps refusals by the host's outbound policy.
var ErrOutboundDenied = abi.ErrDenied

func (transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil {
		return nil, errors.New("platform: request has no URL")
	}
	var body []byte
	if req.Body != nil && req.Body != http.NoBody {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		body = b
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	h := req.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	if req.Host != "" && req.Host != req.URL.Host {
		h.Set("Host", req.Host)
	}
	var w wire.Writer
	w.Str16(method)
	w.Str32(req.URL.String())
	w.Headers(h)
	handle := abi.HTTPSend(w.B, body)
	if handle < 0 {
		return nil, fmt.Errorf("%s %s: %w", method, req.URL.Redacted(), abi.Err(handle))
	}
	raw, err := abi.Sized(4096, func(buf []byte) int32 { return abi.HTTPResponseHead(handle, buf) })
	if err != nil {
		abi.HTTPClose(handle)
		return nil, err
	}
	r := wire.NewReader(raw)
	status := int(r.U32())
	header := r.Headers()
	if r.Err() != nil {
		abi.HTTPClose(handle)
		return nil, r.Err()
	}
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", status, http.StatusText(status)),
		StatusCode:    status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        header,
		Body:          &outboundBody{handle: handle},
		ContentLength: contentLength(header),
		Request:       req,
	}, nil
}

func contentLength(h http.Header) int64 {
	var n int64 = -1
	if v := h.Get("Content-Length"); v != "" {
		fmt.Sscan(v, &n)
	}
	return n
}

type outboundBody struct {
	handle int32
	done   bool
	closed bool
}

func (b *outboundBody) Read(p []byte) (int, error) {
	if b.closed {
		return 0, errors.New("platform: read after close")
	}
	if b.done || len(p) == 0 {
		if b.done {
			return 0, io.EOF
		}
		return 0, nil
	}
	n := abi.HTTPBodyRead(b.handle, p)
	switch {
	case n > 0:
		return int(n), nil
	case n == 0:
		b.done = true
		return 0, io.EOF
	default:
		return 0, abi.Err(n)
	}
}

func (b *outboundBody) Close() error {
	if !b.closed {
		b.closed = true
		abi.HTTPClose(b.handle)
	}
	return nil
}

var _ io.ReadCloser = (*outboundBody)(nil)
