// Package platform runs ordinary net/http handlers on Platform, the WebAssembly host.
//
//	func main() {
//		mux := http.NewServeMux()
//		mux.HandleFunc("GET /hello/{name}", hello)
//		platform.Handle(mux)
//	}
//
// Build it as a WASI reactor and deploy the .wasm:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o app.wasm .
//
// Go's start-up runs once per instance, not per request: a request costs a few
// microseconds of host overhead instead of Go's whole runtime start. Request and response
// bodies stream. Outbound HTTP goes through Transport, configuration through Config and
// os.Getenv, key-value storage through the kv package; stdout and stderr go to the app's
// log with the request id. The host ABI underneath is documented in sdk/ABI.md.
package platform

import (
	"context"
	"net/http"
	"os"
)

var handler http.Handler

// Handle registers h as the app's handler. Call it from main; it returns at once (the host
// calls the handler for each request after main returns).
func Handle(h http.Handler) {
	if h == nil {
		h = http.DefaultServeMux
	}
	handler = h
}

// HandleFunc registers a function as the app's handler.
func HandleFunc(f func(http.ResponseWriter, *http.Request)) { Handle(http.HandlerFunc(f)) }

var warmups []func()

// Warmup registers f to run once after main, before the host takes the pre-initialized
// snapshot that per-request releases start from. Work done here (filling encoding/json's
// reflection caches, compiling templates and regular expressions, parsing embedded data)
// is then part of every fresh instance instead of being repeated per request. Pooled
// releases do not call it. Do not read configuration or randomness here: both would be
// frozen into the snapshot.
func Warmup(f func()) {
	if f != nil {
		warmups = append(warmups, f)
	}
}

type ctxKey int

const requestIDKey ctxKey = 0

// RequestID is the id the host gave the request (also in the response's x-request-id and
// on every log line the request produced).
func RequestID(r *http.Request) string {
	id, _ := r.Context().Value(requestIDKey).(string)
	return id
}

func withRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey, id)
}

// stderr is where the SDK reports handler panics.
var stderr = os.Stderr
