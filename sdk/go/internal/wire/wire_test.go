package wire

import (
	"net/http"
	"reflect"
	"testing"
)

func TestRequestHeadRoundTrip(t *testing.T) {
	in := RequestHead{
		Method:        "POST",
		URI:           "/shop/items/a%20b?x=1",
		Host:          "api.example.com:8080",
		RemoteAddr:    "10.0.0.1:5555",
		Proto:         "HTTP/1.1",
		RoutePrefix:   "/shop",
		RequestID:     "rid",
		ContentLength: -1,
		EnvGeneration: 42,
		Header:        http.Header{"Set-Cookie": {"a=1", "b=2"}, "Content-Type": {"text/plain"}},
	}
	out, err := DecodeRequestHead(EncodeRequestHead(in))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip:\n got %#v\nwant %#v", out, in)
	}
}

func TestTruncatedInputIsAnError(t *testing.T) {
	b := EncodeRequestHead(RequestHead{Method: "GET", URI: "/", Header: http.Header{"A": {"b"}}})
	for i := 0; i < len(b); i++ {
		if _, err := DecodeRequestHead(b[:i]); err == nil {
			t.Fatalf("prefix of %d bytes decoded without error", i)
		}
	}
}

func TestHeadersSkipInvalidNames(t *testing.T) {
	var w Writer
	w.Headers(http.Header{"Good": {"1"}, "Bad Name": {"x"}, "": {"y"}})
	h := NewReader(w.B).Headers()
	if len(h) != 1 || h.Get("Good") != "1" {
		t.Fatalf("got %v", h)
	}
}

func TestHeaderValuesShareNoSpace(t *testing.T) {
	var w Writer
	w.U32(4)
	for _, kv := range [][2]string{{"a", "1"}, {"b", "2"}, {"a", "3"}, {"c", "4"}} {
		w.Str16(kv[0])
		w.Str32(kv[1])
	}
	r := NewReader(w.B)
	h := r.Headers()
	if r.Err() != nil {
		t.Fatal(r.Err())
	}
	want := http.Header{"A": {"1", "3"}, "B": {"2"}, "C": {"4"}}
	if !reflect.DeepEqual(h, want) {
		t.Fatalf("got %v, want %v", h, want)
	}
	// A handler appending to one header must not write into another's value.
	h["B"] = append(h["B"], "x")
	h.Add("A", "y")
	if h.Get("C") != "4" || len(h["C"]) != 1 || !reflect.DeepEqual(h["A"], []string{"1", "3", "y"}) {
		t.Fatalf("values overlap: %v", h)
	}
}

func TestHeaderCountBeyondTheBufferIsAnError(t *testing.T) {
	var w Writer
	w.U32(1000)
	w.Str16("a")
	w.Str32("1")
	r := NewReader(w.B)
	if h := r.Headers(); h != nil || r.Err() == nil {
		t.Fatalf("decoded %v", h)
	}
}

func TestListsAndPairs(t *testing.T) {
	var w Writer
	w.U32(2)
	w.Str32("a")
	w.Str32("b")
	got, err := Strings(w.B)
	if err != nil || !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("%v %v", got, err)
	}
	var p Writer
	p.U32(1)
	p.Str32("K")
	p.Str32("V")
	m, err := Pairs(p.B)
	if err != nil || m["K"] != "V" {
		t.Fatalf("%v %v", m, err)
	}
	if _, err := Strings([]byte{9, 0, 0, 0}); err == nil {
		t.Fatal("short list decoded")
	}
}

func TestResponseHeadersSkipsAndReplaces(t *testing.T) {
	h := http.Header{
		"Content-Type":       {"text/plain"},
		"Trailer:X-Checksum": {"abc"},
		"Content-Length":     {""},
		"X-Many":             {"1", "2"},
		"bad name":           {"dropped"},
	}
	var w Writer
	w.ResponseHeaders(h, http.TrailerPrefix, "Content-Length", "12")
	got := NewReader(w.B).Headers()
	want := http.Header{
		"Content-Type":   {"text/plain"},
		"Content-Length": {"12"},
		"X-Many":         {"1", "2"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	var plain Writer
	plain.ResponseHeaders(http.Header{"A": {"b"}}, "", "", "")
	if got := NewReader(plain.B).Headers(); !reflect.DeepEqual(got, http.Header{"A": {"b"}}) {
		t.Fatalf("got %v", got)
	}
}
