// Package kv is key-value storage for Platform apps: small values (up to 1 MiB) by string
// key, scoped to the app. The host keeps them in a local store under `platform up`, and in
// NATS JetStream key-value buckets in a cluster.
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

// Store is an open key-value store.
type Store struct {
	handle int32
	name   string
}

// Open opens the app's store called name ("default" unless you need several).
func Open(name string) (*Store, error) {
	h := abi.KVOpen(name)
	if h < 0 {
		return nil, abi.Err(h)
	}
	return &Store{handle: h, name: name}, nil
}

// Get returns the value of key, or ErrNotFound.
func (s *Store) Get(key string) ([]byte, error) {
	return abi.Sized(1024, func(buf []byte) int32 { return abi.KVGet(s.handle, key, buf) })
}

// Set stores value under key (at most MaxValueSize bytes).
func (s *Store) Set(key string, value []byte) error {
	if len(value) > MaxValueSize {
		return errors.Join(ErrTooLarge, errors.New("kv: values are limited to 1 MiB"))
	}
	return abi.Err(abi.KVSet(s.handle, key, value))
}

// Delete removes key (deleting a missing key is not an error).
func (s *Store) Delete(key string) error {
	return abi.Err(abi.KVDelete(s.handle, key))
}

// Keys lists the keys that start with prefix ("" for all), sorted.
func (s *Store) Keys(prefix string) ([]string, error) {
	b, err := abi.Sized(4096, func(buf []byte) int32 { return abi.KVKeys(s.handle, prefix, buf) })
	if err != nil {
		return nil, err
	}
	return wire.Strings(b)
}
