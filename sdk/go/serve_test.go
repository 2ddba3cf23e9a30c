package platform

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/platform-dev/platform/sdk/go/internal/abi"
	"github.com/platform-dev/platform/sdk/go/internal/wire"
)

// fakeHost records what the SDK sends and serves a canned request.
type fakeHost struct {
	head        wire.RequestHead
	body        *bytes.Reader
	status      int
	headers     http.Header
	out         bytes.Buffer
	sends       int
	writes      int
	ended       bool
	gotTrailers http.Header
	closed      bool // the client went away
}

func (f *fakeHost) requestHead() ([]byte, error) { return wire.EncodeRequestHead(f.head), nil }
func (f *fakeHost) bodyRead(p []byte) int32 {
	n, err := f.body.Read(p)
	if err == io.EOF {
		return 0
	}
	return int32(n)
}
func (f *fakeHost) send(status int, head, body []byte, flags int32) int32 {
	f.sends++
	f.status = status
	f.headers = wire.NewReader(head).Headers()
	f.out.Write(body)
	f.ended = flags&abi.FlagEnd != 0
	if f.closed {
		return -abi.CodeClosed
	}
	return 0
}
func (f *fakeHost) write(body []byte) int32 {
	f.writes++
	f.out.Write(body)
	if f.closed {
		return -abi.CodeClosed
	}
	return 0
}
func (f *fakeHost) trailers(block []byte) int32 {
	f.gotTrailers = wire.NewReader(block).Headers()
	return 0
}

func serveWith(t *testing.T, h http.Handler, head wire.RequestHead, body string) (*fakeHost, int32) {
	t.Helper()
	f := &fakeHost{head: head, body: bytes.NewReader([]byte(body))}
	host, handler = f, h
	envGen = head.EnvGeneration // configuration sync is tested separately
	t.Cleanup(func() { host, handler = realHost{}, nil })
	return f, serveOne()
}

func get(uri string) wire.RequestHead {
	return wire.RequestHead{Method: "GET", URI: uri, Host: "example.com", RemoteAddr: "10.0.0.1:1234", Proto: "HTTP/1.1", RequestID: "rid-1", Header: http.Header{"Accept": {"*/*"}}}
}

func TestSmallResponseIsOneHostCall(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello/{name}", func(w http.ResponseWriter, r *http.Request) {
		if RequestID(r) != "rid-1" || r.RemoteAddr != "10.0.0.1:1234" || r.Host != "example.com" {
			t.Errorf("request facts: %q %q %q", RequestID(r), r.RemoteAddr, r.Host)
		}
		w.Header().Set("X-Name", r.PathValue("name"))
		io.WriteString(w, "hello "+r.PathValue("name")+" "+r.URL.Query().Get("q"))
	})
	f, code := serveWith(t, mux, get("/hello/gopher?q=1"), "")
	if code != handleOK || f.sends != 1 || f.writes != 0 || !f.ended {
		t.Fatalf("code %d sends %d writes %d ended %v", code, f.sends, f.writes, f.ended)
	}
	if f.status != 200 || f.out.String() != "hello gopher 1" || f.headers.Get("X-Name") != "gopher" {
		t.Fatalf("%d %q %v", f.status, f.out.String(), f.headers)
	}
	if f.headers.Get("Content-Length") != "14" || !strings.HasPrefix(f.headers.Get("Content-Type"), "text/plain") {
		t.Fatalf("headers %v", f.headers)
	}
}

func TestLargeAndFlushedResponsesStream(t *testing.T) {
	big := strings.Repeat("x", 3*chunk+10)
	f, _ := serveWith(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(201)
		w.Write([]byte("first"))
		w.(http.Flusher).Flush()
		io.WriteString(w, big)
	}), get("/"), "")
	if f.status != 201 || f.out.String() != "first"+big {
		t.Fatalf("status %d, %d bytes", f.status, f.out.Len())
	}
	if f.sends != 1 || f.writes < 3 || f.headers.Get("Content-Length") != "" {
		t.Fatalf("sends %d writes %d headers %v", f.sends, f.writes, f.headers)
	}
}

func TestRequestBodyStreamsAndTrailersAreSent(t *testing.T) {
	head := get("/upload")
	head.Method = "POST"
	head.ContentLength = -1
	payload := strings.Repeat("abc", 100000)
	f, _ := serveWith(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		n, _ := io.Copy(io.Discard, r.Body)
		w.Write([]byte("ok"))
		w.Header().Set("X-Sum", strings.Repeat("1", int(n%7)))
		w.Header().Set(http.TrailerPrefix+"X-Late", "yes")
	}), head, payload)
	if f.ended {
		t.Fatal("a response with trailers must not end with its first send")
	}
	if f.gotTrailers.Get("X-Sum") != strings.Repeat("1", len(payload)%7) || f.gotTrailers.Get("X-Late") != "yes" {
		t.Fatalf("trailers %v", f.gotTrailers)
	}
	if f.headers.Get(http.TrailerPrefix+"X-Late") != "" {
		t.Fatal("trailer-prefixed headers must not be sent as headers")
	}
}

func TestPanicsBecome500AndAreReported(t *testing.T) {
	var logged bytes.Buffer
	r, w, _ := os.Pipe()
	stderr = w
	defer func() { stderr = os.Stderr }()
	f, code := serveWith(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]int
		m["boom"] = 1
	}), get("/"), "")
	w.Close()
	io.Copy(&logged, r)
	if code != handlePanicked || f.status != 500 || f.out.String() != "the function panicked\n" {
		t.Fatalf("code %d status %d body %q", code, f.status, f.out.String())
	}
	if !strings.Contains(logged.String(), "panic: assignment to entry in nil map") {
		t.Fatalf("panic not logged: %q", logged.String())
	}
}

func TestWritesFailOnceTheClientIsGone(t *testing.T) {
	var err error
	f := &fakeHost{head: get("/"), body: bytes.NewReader(nil), closed: true}
	host, handler = f, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(make([]byte, chunk))
		_, err = w.Write(make([]byte, chunk+1))
	})
	defer func() { host, handler = realHost{}, nil }()
	serveOne()
	if err == nil {
		t.Fatal("write to a closed client succeeded")
	}
}

func TestNoHandlerAndBadHeads(t *testing.T) {
	handler = nil
	if serveOne() != handleNoRoute {
		t.Fatal("no handler must be reported")
	}
	bad := get("/")
	bad.URI = "not a uri"
	f, code := serveWith(t, http.NotFoundHandler(), bad, "")
	if code != handleOK || f.status != 400 {
		t.Fatalf("code %d status %d", code, f.status)
	}
}

func TestConfigFollowsTheRelease(t *testing.T) {
	applyEnv(7, map[string]string{"GREETING": "hi", "MODE": "a"})
	if Config.Get("GREETING") != "hi" || os.Getenv("MODE") != "a" {
		t.Fatal("first apply")
	}
	applyEnv(8, map[string]string{"GREETING": "hello"})
	if Config.Get("GREETING") != "hello" || os.Getenv("GREETING") != "hello" {
		t.Fatal("update")
	}
	if _, ok := Config.Lookup("MODE"); ok || os.Getenv("MODE") != "" {
		t.Fatal("removed variables must disappear")
	}
	if keys := Config.Keys(); len(keys) != 1 || keys[0] != "GREETING" {
		t.Fatalf("keys %v", keys)
	}
	if err := syncEnv(8); err != nil {
		t.Fatal("same generation must not call the host")
	}
}

func TestHeadersChangedAfterWriteHeaderAreNotSent(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Before", "1")
		w.Header().Set("Trailer", "X-Sum")
		w.WriteHeader(http.StatusAccepted)
		w.Header().Set("X-After", "1")
		io.WriteString(w, "body")
		w.Header().Set("X-Sum", "abc")
	})
	f, code := serveWith(t, h, get("/"), "")
	if code != 0 || f.status != http.StatusAccepted {
		t.Fatalf("code %d status %d", code, f.status)
	}
	if f.headers.Get("X-Before") != "1" || f.headers.Get("X-After") != "" || f.headers.Get("X-Sum") != "" {
		t.Fatalf("headers sent: %v", f.headers)
	}
	if f.headers.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("content type not sniffed: %v", f.headers)
	}
	if f.gotTrailers.Get("X-Sum") != "abc" {
		t.Fatalf("trailers: %v", f.gotTrailers)
	}
}

// The snapshot's warm-up must decode header names as the host sends them (lower case, as
// http::HeaderName::as_str gives them): only then does it take net/textproto's slow path
// and build its common-name table inside the snapshot instead of in every fresh instance.
func TestWarmRequestHeadCarriesNamesAsTheHostSendsThem(t *testing.T) {
	raw := warmRequestHead()
	r := wire.NewReader(raw)
	r.U32()
	for i := 0; i < 6; i++ {
		r.Str16()
		if i == 0 {
			r.Str32()
		}
	}
	r.U64()
	r.U64()
	n := int(r.U32())
	if n == 0 {
		t.Fatal("the warm request has no header")
	}
	for i := 0; i < n; i++ {
		name := r.Str16()
		r.Str32()
		if name != strings.ToLower(name) || name == http.CanonicalHeaderKey(name) {
			t.Errorf("header name %q: the host sends lower-case names, which decoding canonicalizes", name)
		}
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	head, err := wire.DecodeRequestHead(raw)
	if err != nil || head.Header.Get("User-Agent") == "" {
		t.Fatalf("the warm head does not decode: %v %v", head, err)
	}
}
