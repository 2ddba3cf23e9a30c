// Command events is an SDK handler written as plain net/http code that receives
// CloudEvents (binary mode, as the host delivers them) and NATS messages, and answers
// with what it saw, so tests can check the delivery end to end.
package main

import (
	"encoding/json"
	"io"
	"net/http"

	platform "github.com/platform-dev/platform/sdk/go"
)

// seen is what a delivery looked like from inside the guest.
type seen struct {
	Path        string `json:"path"`
	Method      string `json:"method"`
	Type        string `json:"type"`
	ID          string `json:"id"`
	Source      string `json:"source"`
	Subject     string `json:"subject"`
	Extension   string `json:"extension"`
	ContentType string `json:"contentType"`
	NatsSubject string `json:"natsSubject"`
	Header      string `json:"header"`
	Body        string `json:"body"`
}

func describe(r *http.Request) seen {
	body, _ := io.ReadAll(r.Body)
	return seen{
		Path:        r.URL.Path,
		Method:      r.Method,
		Type:        r.Header.Get("Ce-Type"),
		ID:          r.Header.Get("Ce-Id"),
		Source:      r.Header.Get("Ce-Source"),
		Subject:     r.Header.Get("Ce-Subject"),
		Extension:   r.Header.Get("Ce-Comexampleext"),
		ContentType: r.Header.Get("Content-Type"),
		NatsSubject: r.Header.Get("Nats-Subject"),
		Header:      r.Header.Get("X-Test"),
		Body:        string(body),
	}
}

func main() {
	mux := http.NewServeMux()
	// CloudEvents: answer with a reply event in binary mode.
	mux.HandleFunc("POST /events", func(w http.ResponseWriter, r *http.Request) {
		s := describe(r)
		w.Header().Set("Ce-Specversion", "1.0")
		w.Header().Set("Ce-Type", s.Type+".handled")
		w.Header().Set("Ce-Source", "/events-guest")
		w.Header().Set("Ce-Id", s.ID+"-reply")
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(s)
	})
	// NATS messages and anything else: echo what was seen.
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s := describe(r)
		if s.Body == "fail" {
			w.WriteHeader(http.StatusInternalServerError)
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(s)
	})
	platform.Handle(mux)
}
