//go:build wasip1

package platform

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/platform-dev/platform/sdk/go/internal/wire"
)

// spareHeap is how much heap the warm-up allocates and gives back before the snapshot.
const spareHeap = 6 << 20

// warmServePath readies a per-request snapshot for the requests its fresh instances serve.
//
// Without it, the first request in every fresh instance found no free heap span for some
// size class and grew the Go heap: memory.grow, then the runtime clearing the alignment
// slack of the new arena (megabytes). Profiled on the hello example (perf, page-faults
// event, guest frames named) that was ~100 page faults per request and most of a
// per-request instance's time. So the warm-up grows the heap by a spare arena and frees
// it (later spans come from free pages), then serves the SDK's own request path against
// an in-memory host (the app's handler is not called: it could have side effects), which
// leaves the size classes a request uses cached. Measured: ~6 faults per request.
func warmServePath() {
	// Grow the heap by a spare arena and free it: later spans come from free pages.
	spare := make([][]byte, 0, spareHeap/(64<<10))
	for len(spare) < cap(spare) {
		spare = append(spare, make([]byte, 64<<10))
	}
	runtime.KeepAlive(spare)
	spare = nil
	runtime.GC()
	// After the collection every size class's cache is empty: serving a request now refills
	// the ones the request path uses, so a fresh instance's first request allocates from
	// cached spans instead of touching the allocator's central structures (each refill
	// dirties pages of its own).
	saved := host
	host = warmHost{}
	defer func() { host = saved }()
	for i := 0; i < 2; i++ {
		serveWarmRequest()
	}
}

// serveWarmRequest runs the SDK's request path once against warmHost, from the request
// head's wire encoding on, as a real request arrives.
//
// The header names are lower case because the host sends them so (hyper and HTTP/2
// lower-case every name): decoding one takes net/textproto's slow path, whose first use
// builds its table of common header names (initCommonHeader, a sync.Once). A warm-up
// with canonical names left that to every fresh instance: 19% of a per-request request's
// CPU in the profile (benches/README.md, "The snapshot's warm-up missed a lazy table").
//
// Kept small on purpose: warming more (a browser's header set, a 4 KiB head buffer) made
// fresh instances fault more, not less (13.7 against 8.4 faults per request): the pages a
// request dirties must stay within the 32 regions wasmtime 48 resets in place
// (benches/README.md).
func serveWarmRequest() {
	head, err := wire.DecodeRequestHead(warmRequestHead())
	if err != nil {
		return
	}
	req, err := newRequest(head)
	if err != nil {
		return
	}
	w := newResponseWriter()
	w.Header().Set("X-Warmup", "1")
	fmt.Fprintln(w, "warm", req.URL.Path, req.Host)
	w.finish()
}

// warmHost is the host during warmServePath: it takes responses and gives nothing.
type warmHost struct{}

func (warmHost) requestHead() ([]byte, error)          { return nil, errors.New("warm-up") }
func (warmHost) bodyRead([]byte) int32                 { return 0 }
func (warmHost) send(int, []byte, []byte, int32) int32 { return 0 }
func (warmHost) write([]byte) int32                    { return 0 }
func (warmHost) trailers([]byte) int32                 { return 0 }
