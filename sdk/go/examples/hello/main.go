// Command hello is the smallest Platform SDK app: a plain net/http handler.
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o hello.wasm .
package main

import (
	"fmt"
	"net/http"

	platform "github.com/platform-dev/platform/sdk/go"
)

func main() {
	platform.HandleFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "hello from the Go SDK")
	})
}
