// Command sdkfaults misbehaves on purpose in SDK mode, one way per path, and keeps a
// counter in instance memory so tests can tell when an instance was replaced.
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"time"

	platform "github.com/platform-dev/platform/sdk/go"
)

var (
	served int
	sink   [][]byte
)

// recurse goes deeper until Go's goroutine stack limit stops it.
func recurse(n int) int {
	var pad [64]byte
	pad[n%64] = byte(n)
	return recurse(n+1) + int(pad[0])
}

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
	mux.HandleFunc("/recurse", func(w http.ResponseWriter, r *http.Request) {
		debug.SetMaxStack(8 << 20)
		fmt.Fprintln(w, recurse(0))
	})
	mux.HandleFunc("/stdout-flood", func(w http.ResponseWriter, r *http.Request) {
		chunk := strings.Repeat("o", 1<<16)
		for {
			os.Stdout.WriteString(chunk)
		}
	})
	mux.HandleFunc("/stderr-flood", func(w http.ResponseWriter, r *http.Request) {
		chunk := strings.Repeat("e", 1<<10) + "\n"
		for {
			os.Stderr.WriteString(chunk)
		}
	})
	mux.HandleFunc("/response-flood", func(w http.ResponseWriter, r *http.Request) {
		// Ignores write errors: only the host can stop it.
		chunk := strings.Repeat("r", 1<<16)
		for {
			io.WriteString(w, chunk)
		}
	})
	mux.HandleFunc("/ignore-body", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "body ignored")
	})
	mux.HandleFunc("/slow-read", func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 1024)
		n := 0
		for {
			k, err := r.Body.Read(buf)
			n += k
			if err != nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		fmt.Fprintf(w, "read %d bytes slowly\n", n)
	})
	mux.HandleFunc("/spin-sleep", func(w http.ResponseWriter, r *http.Request) {
		for {
			time.Sleep(time.Microsecond)
		}
	})
	mux.HandleFunc("/big-stream", func(w http.ResponseWriter, r *http.Request) {
		chunk := strings.Repeat("b", 1<<16)
		for i := 0; i < 512; i++ {
			if _, err := io.WriteString(w, chunk); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strings.Repeat("b", 4<<20))
	})
	mux.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s %s %s %s", r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("X-Test"), platform.RequestID(r))
	})
	platform.Handle(mux)
}
