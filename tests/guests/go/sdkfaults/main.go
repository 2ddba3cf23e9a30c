// Command sdkfaults misbehaves on purpose in SDK mode, one way per path, and keeps a
// counter in instance memory so tests can tell when an instance was replaced.
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	platform "github.com/platform-dev/platform/sdk/go"
)

var (
	served int
	sink   [][]byte
)

func main() {
	mux := http.NewServeMux()
	mux.HandleFunc("/getenv", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, os.Getenv(r.URL.Query().Get("name")))
	})
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		served++
		fmt.Fprintf(w, "ok %d\n", served)
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		for {
		}
	})
	mux.HandleFunc("/sleep", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Hour)
	})
	mux.HandleFunc("/membomb", func(w http.ResponseWriter, r *http.Request) {
		for {
			b := make([]byte, 1<<20)
			for i := range b {
				b[i] = byte(i)
			}
			sink = append(sink, b)
		}
	})
	mux.HandleFunc("/panic", func(w http.ResponseWriter, r *http.Request) {
		var m map[string]int
		m["boom"] = 1
	})
	mux.HandleFunc("/exit", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(os.Stderr, "giving up with status 3")
		os.Exit(3)
	})
	mux.HandleFunc("/garbage", func(w http.ResponseWriter, r *http.Request) {
		os.Stdout.Write([]byte{0, 1, 2, 'g', 'a', 'r', 'b', 'a', 'g', 'e', 0xff, 0xfe, '\n', 0x1b, '['})
		fmt.Fprintln(w, "garbage went to the log")
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, "read: "+err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		fmt.Fprintf(w, "%d bytes\n", n)
	})
	mux.HandleFunc("/slow-stream", func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < 50; i++ {
			if _, err := io.WriteString(w, strings.Repeat("s", 1<<16)); err != nil {
				fmt.Fprintln(os.Stderr, "client gone:", err)
				return
			}
			w.(http.Flusher).Flush()
			time.Sleep(20 * time.Millisecond)
		}
	})
	mux.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s %s %s %s", r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("X-Test"), platform.RequestID(r))
	})
	platform.Handle(mux)
}
