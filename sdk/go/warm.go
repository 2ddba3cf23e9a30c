package platform

import (
	"net/http"

	"github.com/platform-dev/platform/sdk/go/internal/wire"
)

// warmRequestHead is the wire encoding of the request the snapshot's warm-up serves
// (serveWarmRequest), with its header names in lower case as the host sends them: see
// serveWarmRequest for why that matters.
func warmRequestHead() []byte {
	return wire.EncodeRequestHead(wire.RequestHead{
		Method: "GET",
		URI:    "/",
		Host:   "warmup.invalid",
		Proto:  "HTTP/1.1",
		Header: http.Header{"accept": {"*/*"}, "user-agent": {"platform-warmup"}},
	})
}
