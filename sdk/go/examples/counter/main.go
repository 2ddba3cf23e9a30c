// Command counter counts visits in the app's key-value store.
package main

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	platform "github.com/platform-dev/platform/sdk/go"
	"github.com/platform-dev/platform/sdk/go/kv"
)

func main() {
	// Opened once; each request's calls reach the host's store for this app.
	store, err := kv.Open("default")
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /count/{name}", func(w http.ResponseWriter, r *http.Request) {
		key := "visits/" + r.PathValue("name")
		n := 0
		switch v, err := store.Get(key); {
		case err == nil:
			n, _ = strconv.Atoi(string(v))
		case !errors.Is(err, kv.ErrNotFound):
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		n++
		if err := store.Set(key, []byte(strconv.Itoa(n))); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, n)
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		keys, err := store.Keys(r.URL.Query().Get("prefix"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, strings.Join(keys, ","))
	})
	mux.HandleFunc("DELETE /count/{name}", func(w http.ResponseWriter, r *http.Request) {
		if err := store.Delete("visits/" + r.PathValue("name")); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("PUT /big", func(w http.ResponseWriter, r *http.Request) {
		size, _ := strconv.Atoi(r.URL.Query().Get("bytes"))
		err := store.Set("big", make([]byte, size))
		if err != nil {
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		fmt.Fprintln(w, "stored", size)
	})
	platform.Handle(mux)
}
