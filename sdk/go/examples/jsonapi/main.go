// Command jsonapi is a small JSON API on a Go 1.22 ServeMux with method and wildcard
// patterns, middleware, streaming bodies, configuration and logs.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	platform "github.com/platform-dev/platform/sdk/go"
)

type todo struct {
	ID    int    `json:"id"`
	Title string `json:"title"`
	Done  bool   `json:"done"`
}

// The list lives in this instance's memory: fine for a demo of pooled instances, not a
// database (use the kv package for data that must outlive an instance).
var (
	mu    sync.Mutex
	todos = map[int]todo{}
	next  = 1
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func logged(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		next.ServeHTTP(w, r)
		log.Printf("%s %s in %v", r.Method, r.URL.Path, time.Since(start).Round(time.Microsecond))
	})
}

func main() {
	log.SetOutput(os.Stderr)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /todos", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		list := make([]todo, 0, len(todos))
		for i := 1; i < next; i++ {
			if t, ok := todos[i]; ok {
				list = append(list, t)
			}
		}
		writeJSON(w, http.StatusOK, list)
	})
	mux.HandleFunc("POST /todos", func(w http.ResponseWriter, r *http.Request) {
		var t todo
		if err := json.NewDecoder(r.Body).Decode(&t); err != nil || t.Title == "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "send {\"title\": \"...\"}"})
			return
		}
		mu.Lock()
		t.ID = next
		next++
		todos[t.ID] = t
		mu.Unlock()
		w.Header().Set("Location", fmt.Sprintf("/todos/%d", t.ID))
		writeJSON(w, http.StatusCreated, t)
	})
	mux.HandleFunc("GET /todos/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, _ := strconv.Atoi(r.PathValue("id"))
		mu.Lock()
		t, ok := todos[id]
		mu.Unlock()
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such todo"})
			return
		}
		writeJSON(w, http.StatusOK, t)
	})
	mux.HandleFunc("GET /config", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{
			"greeting_getenv": os.Getenv("GREETING"),
			"greeting_config": platform.Config.Get("GREETING"),
			"request_id":      platform.RequestID(r),
		})
	})
	// Streams the request body through a hash and answers with its size and digest:
	// a 100 MB upload never sits in memory.
	mux.HandleFunc("POST /digest", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"bytes": n, "sha256": hex.EncodeToString(h.Sum(nil))})
	})
	// Streams a generated body of ?mb= megabytes.
	mux.HandleFunc("GET /download", func(w http.ResponseWriter, r *http.Request) {
		mb, _ := strconv.Atoi(r.URL.Query().Get("mb"))
		block := make([]byte, 1<<20)
		for i := range block {
			block[i] = byte('a' + i%26)
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(mb<<20))
		for i := 0; i < mb; i++ {
			if _, err := w.Write(block); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("GET /trailers", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		io.WriteString(w, "body with a trailer\n")
		w.Header().Set("X-Checksum", "abc123")
	})
	platform.Handle(logged(mux))
	// In per-request isolation, fill encoding/json's caches for our types once, before the
	// snapshot, instead of in every fresh instance: every type a handler encodes or
	// decodes, the way it does (the list is a []todo, and reflection caches each type on
	// its own: warming todo alone left GET /todos a scan of the binary's type table per
	// request, a quarter of its CPU).
	platform.Warmup(func() {
		enc := json.NewEncoder(io.Discard)
		enc.Encode([]todo{{ID: 1, Title: "warm-up"}})
		enc.Encode(todo{ID: 1, Title: "warm-up"})
		enc.Encode(map[string]string{"error": "warm-up"})
		enc.Encode(map[string]any{"bytes": 1, "sha256": "warm-up"})
		json.NewDecoder(strings.NewReader(`{"title":"warm-up"}`)).Decode(&todo{})
	})
}
