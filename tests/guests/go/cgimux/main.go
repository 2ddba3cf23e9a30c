// Command cgimux is an ordinary Go net/http program served through net/http/cgi: a
// ServeMux with Go 1.22 method and wildcard patterns. Nothing in it knows about Platform.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cgi"
	"os"
	"strings"
)

func main() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "item %s\n", r.PathValue("id"))
	})
	mux.HandleFunc("GET /files/{path...}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "file %s\n", r.PathValue("path"))
	})
	mux.HandleFunc("GET /query", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"q":     r.URL.Query().Get("q"),
			"tags":  r.URL.Query()["tag"],
			"raw":   r.URL.RawQuery,
			"path":  r.URL.Path,
			"agent": r.UserAgent(),
		})
	})
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", r.Header.Get("Content-Type"))
		w.Header().Set("X-Body-Length", fmt.Sprint(r.ContentLength))
		io.Copy(w, r.Body)
	})
	mux.HandleFunc("GET /teapot", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
		fmt.Fprintln(w, "short and stout")
	})
	mux.HandleFunc("GET /redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, os.Getenv("SCRIPT_NAME")+"/items/42", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /cookies", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "a", Value: "1"})
		http.SetCookie(w, &http.Cookie{Name: "b", Value: "2", HttpOnly: true})
		fmt.Fprintln(w, "two cookies")
	})
	mux.HandleFunc("GET /cookies/echo", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "cookies: %s\n", strings.Join(r.Header.Values("Cookie"), " | "))
	})
	// A guest trying to plant the dashboard's session cookie.
	mux.HandleFunc("GET /cookies/plant", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "platform_session", Value: "planted", Path: "/"})
		http.SetCookie(w, &http.Cookie{Name: "__Host-platform_session", Value: "planted", Path: "/", Secure: true})
		http.SetCookie(w, &http.Cookie{Name: "mine", Value: "1"})
		fmt.Fprintln(w, "planted")
	})
	mux.HandleFunc("GET /big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write([]byte(strings.Repeat("0123456789abcdef", 65536))) // 1 MiB
	})
	mux.HandleFunc("GET /env", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "GREETING=%s\n", os.Getenv("GREETING"))
	})
	mux.HandleFunc("GET /getenv/{name}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, os.Getenv(r.PathValue("name")))
	})
	mux.HandleFunc("GET /whoami", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{
			"method":      r.Method,
			"host":        r.Host,
			"remote":      r.RemoteAddr,
			"path":        r.URL.Path,
			"script_name": os.Getenv("SCRIPT_NAME"),
			"path_info":   os.Getenv("PATH_INFO"),
			"request_id":  r.Header.Get("X-Request-Id"),
			"auth":        r.Header.Get("Authorization"),
		})
		fmt.Fprintln(os.Stderr, "whoami served")
	})
	// Mounted under a route prefix, the program sees the full path; strip the prefix the
	// host reports so the same mux works at any route.
	handler := http.StripPrefix(os.Getenv("SCRIPT_NAME"), mux)
	if err := cgi.Serve(handler); err != nil {
		fmt.Fprintln(os.Stderr, "cgi:", err)
		os.Exit(1)
	}
}
