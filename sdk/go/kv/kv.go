// Package kv is key-value storage for Platform apps: small values (up to 1 MiB) by key,
// scoped to the app. The host keeps them in a local store under `platform up`, and in
// NATS JetStream key-value buckets in a cluster. Keys follow NATS KV's rule on both
// (CheckKey): letters, digits and - _ / = . only.
//
//	store, err := kv.Open("default")
//	n, _ := store.Get("visits")
//	store.Set("visits", []byte("1"))
package kv

import (
	"errors"

	"github.com/platform-dev/platform/sdk/go/internal/abi"
	"github.com/platform-dev/platform/sdk/go/internal/wire"
)

// MaxValueSize is the largest value a store accepts.
const MaxValueSize = 1 << 20

// ErrNotFound is returned by Get for a key that is not set.
var ErrNotFound = abi.ErrNotFound

// ErrTooLarge is returned by Set for a value over MaxValueSize.
var ErrTooLarge = abi.ErrTooLarge

// Store is an open key-value store. It may be opened once (in main, or in a global) and
// used from every request: the host's handles last one request, so the Store reopens
// its handle when a new request has started since it last used it.
type Store struct {
	handle int32
	seq    uint64
	name   string
}

// Open opens the app's store called name ("default" unless you need several). It may be
// called from main: the host is asked for the store on first use, inside a request, so
// an unknown or unavailable store is reported by that first Get, Set, Delete or Keys.
func Open(name string) (*Store, error) {
	if name == "" {
		return nil, errors.New("kv: the store needs a name, e.g. \"default\"")
	}
	return &Store{name: name}, nil
}

// h returns a handle valid for the request being served.
func (s *Store) h() (int32, error) {
	if s.handle > 0 && s.seq == abi.RequestSeq {
		return s.handle, nil
	}
	h := abi.KVOpen(s.name)
	if h < 0 {
		return 0, abi.Err(h)
	}
	s.handle, s.seq = h, abi.RequestSeq
	return h, nil
}

// Get returns the value of key, or ErrNotFound.
func (s *Store) Get(key string) ([]byte, error) {
	if err := CheckKey(key); err != nil {
		return nil, err
	}
	h, err := s.h()
	if err != nil {
		return nil, err
	}
	return abi.Sized(1024, func(buf []byte) int32 { return abi.KVGet(h, key, buf) })
}

// Set stores value under key (at most MaxValueSize bytes; the key as CheckKey says).
func (s *Store) Set(key string, value []byte) error {
	if len(value) > MaxValueSize {
		return errors.Join(ErrTooLarge, errors.New("kv: values are limited to 1 MiB"))
	}
	if err := CheckKey(key); err != nil {
		return err
	}
	h, err := s.h()
	if err != nil {
		return err
	}
	return abi.Err(abi.KVSet(h, key, value))
}

// Delete removes key (deleting a missing key is not an error).
func (s *Store) Delete(key string) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	h, err := s.h()
	if err != nil {
		return err
	}
	return abi.Err(abi.KVDelete(h, key))
}

// Keys lists the keys that start with prefix ("" for all), sorted.
func (s *Store) Keys(prefix string) ([]string, error) {
	h, err := s.h()
	if err != nil {
		return nil, err
	}
	b, err := abi.Sized(4096, func(buf []byte) int32 { return abi.KVKeys(h, prefix, buf) })
	if err != nil {
		return nil, err
	}
	return wire.Strings(b)
}
