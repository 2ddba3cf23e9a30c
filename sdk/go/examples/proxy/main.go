// Command proxy fetches a URL through the host with an ordinary http.Client over
// platform.Transport. The host allows only the release's allowed_outbound_hosts.
package main

import (
	"io"
	"net/http"
	"time"

	platform "github.com/platform-dev/platform/sdk/go"
)

var client = &http.Client{Transport: platform.Transport, Timeout: 10 * time.Second}

func main() {
	platform.HandleFunc(func(w http.ResponseWriter, r *http.Request) {
		target := r.URL.Query().Get("url")
		if target == "" {
			http.Error(w, "pass ?url=", http.StatusBadRequest)
			return
		}
		resp, err := client.Get(target)
		if err != nil {
			http.Error(w, "upstream: "+err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.Header().Set("X-Upstream-Status", resp.Status)
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	})
}
