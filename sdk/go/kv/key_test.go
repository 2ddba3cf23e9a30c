package kv

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckKey(t *testing.T) {
	for _, good := range []string{"a", "visits/alice", "A-Z_0-9=/.x", "a.b", "x/./y", "tmp", strings.Repeat("k", MaxKeySize)} {
		if err := CheckKey(good); err != nil {
			t.Errorf("CheckKey(%q) = %v", good, err)
		}
	}
	for _, bad := range []struct{ key, says string }{
		{"", "empty key"},
		{".", "start or end with '.'"},
		{"..", "start or end with '.'"},
		{".tmp123", "start or end with '.'"},
		{"a.", "start or end with '.'"},
		{"a..b", "contain '..'"},
		{"x/../y", "contain '..'"},
		{"a b", "' ' is not allowed"},
		{"ünï", "'ü' is not allowed"},
		{"a*", "'*' is not allowed"},
		{"a>", "'>' is not allowed"},
		{"a:b", "':' is not allowed"},
		{strings.Repeat("k", MaxKeySize+1), "too long"},
	} {
		err := CheckKey(bad.key)
		if err == nil || !strings.Contains(err.Error(), bad.says) || !errors.Is(err, ErrInvalid) {
			t.Errorf("CheckKey(%q) = %v, want an ErrInvalid saying %q", bad.key, err, bad.says)
		}
	}
}

func TestBadKeysNeverReachTheHost(t *testing.T) {
	// Off wasip1 every host call fails with "unavailable": a key error proves the check
	// came first.
	s, err := Open("default")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("a b"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Get: %v", err)
	}
	if err := s.Set(".x", nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("Set: %v", err)
	}
	if err := s.Delete(""); !errors.Is(err, ErrInvalid) {
		t.Errorf("Delete: %v", err)
	}
}
