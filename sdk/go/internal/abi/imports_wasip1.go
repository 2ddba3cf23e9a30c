//go:build wasip1

package abi

import "unsafe"

func ptr(b []byte) unsafe.Pointer  { return unsafe.Pointer(unsafe.SliceData(b)) }
func sptr(s string) unsafe.Pointer { return unsafe.Pointer(unsafe.StringData(s)) }

//go:wasmimport platform_v1 request_head
func requestHead(buf unsafe.Pointer, cap int32) int32

//go:wasmimport platform_v1 request_body_read
func requestBodyRead(buf unsafe.Pointer, cap int32) int32

//go:wasmimport platform_v1 response_send
func responseSend(status int32, head unsafe.Pointer, headLen int32, body unsafe.Pointer, bodyLen int32, flags int32) int32

//go:wasmimport platform_v1 response_write
func responseWrite(body unsafe.Pointer, n int32) int32

//go:wasmimport platform_v1 response_trailers
func responseTrailers(block unsafe.Pointer, n int32) int32

//go:wasmimport platform_v1 env_get
func envGet(buf unsafe.Pointer, cap int32) int32

//go:wasmimport platform_v1 config_get
func configGet(key unsafe.Pointer, keyLen int32, buf unsafe.Pointer, cap int32) int32

//go:wasmimport platform_v1 http_send
func httpSend(head unsafe.Pointer, headLen int32, body unsafe.Pointer, bodyLen int32) int32

//go:wasmimport platform_v1 http_response_head
func httpResponseHead(h int32, buf unsafe.Pointer, cap int32) int32

//go:wasmimport platform_v1 http_body_read
func httpBodyRead(h int32, buf unsafe.Pointer, cap int32) int32

//go:wasmimport platform_v1 http_close
func httpClose(h int32) int32

//go:wasmimport platform_v1 kv_open
func kvOpen(name unsafe.Pointer, n int32) int32

//go:wasmimport platform_v1 kv_get
func kvGet(h int32, key unsafe.Pointer, keyLen int32, buf unsafe.Pointer, cap int32) int32

//go:wasmimport platform_v1 kv_set
func kvSet(h int32, key unsafe.Pointer, keyLen int32, val unsafe.Pointer, valLen int32) int32

//go:wasmimport platform_v1 kv_delete
func kvDelete(h int32, key unsafe.Pointer, keyLen int32) int32

//go:wasmimport platform_v1 kv_keys
func kvKeys(h int32, prefix unsafe.Pointer, prefixLen int32, buf unsafe.Pointer, cap int32) int32

//go:wasmimport platform_v1 error_message
func errorMessage(buf unsafe.Pointer, cap int32) int32

// RequestHead copies the request head into buf; see Sized.
func RequestHead(buf []byte) int32 { return requestHead(ptr(buf), int32(len(buf))) }

// RequestBodyRead reads request body bytes: n > 0, 0 at the end, < 0 an error.
func RequestBodyRead(buf []byte) int32 { return requestBodyRead(ptr(buf), int32(len(buf))) }

// ResponseSend sends status, headers and the first body bytes.
func ResponseSend(status int32, head []byte, body []byte, flags int32) int32 {
	return responseSend(status, ptr(head), int32(len(head)), ptr(body), int32(len(body)), flags)
}

// ResponseWrite sends more body bytes.
func ResponseWrite(body []byte) int32 { return responseWrite(ptr(body), int32(len(body))) }

// ResponseTrailers sends trailers after the body.
func ResponseTrailers(block []byte) int32 { return responseTrailers(ptr(block), int32(len(block))) }

// EnvGet copies the release's variables (pairs) into buf; see Sized.
func EnvGet(buf []byte) int32 { return envGet(ptr(buf), int32(len(buf))) }

// ConfigGet copies one variable into buf; see Sized.
func ConfigGet(key string, buf []byte) int32 {
	return configGet(sptr(key), int32(len(key)), ptr(buf), int32(len(buf)))
}

// HTTPSend starts an outbound request; returns a handle > 0.
func HTTPSend(head []byte, body []byte) int32 {
	return httpSend(ptr(head), int32(len(head)), ptr(body), int32(len(body)))
}

// HTTPResponseHead copies an outbound response head into buf; see Sized.
func HTTPResponseHead(h int32, buf []byte) int32 {
	return httpResponseHead(h, ptr(buf), int32(len(buf)))
}

// HTTPBodyRead reads outbound response body bytes.
func HTTPBodyRead(h int32, buf []byte) int32 { return httpBodyRead(h, ptr(buf), int32(len(buf))) }

// HTTPClose releases an outbound handle.
func HTTPClose(h int32) int32 { return httpClose(h) }

// KVOpen opens a key-value store by name; returns a handle > 0.
func KVOpen(name string) int32 { return kvOpen(sptr(name), int32(len(name))) }

// KVGet copies a value into buf; see Sized.
func KVGet(h int32, key string, buf []byte) int32 {
	return kvGet(h, sptr(key), int32(len(key)), ptr(buf), int32(len(buf)))
}

// KVSet stores a value.
func KVSet(h int32, key string, val []byte) int32 {
	return kvSet(h, sptr(key), int32(len(key)), ptr(val), int32(len(val)))
}

// KVDelete removes a key.
func KVDelete(h int32, key string) int32 { return kvDelete(h, sptr(key), int32(len(key))) }

// KVKeys lists keys with a prefix into buf; see Sized.
func KVKeys(h int32, prefix string, buf []byte) int32 {
	return kvKeys(h, sptr(prefix), int32(len(prefix)), ptr(buf), int32(len(buf)))
}

// ErrorMessage copies the last error's text into buf.
func ErrorMessage(buf []byte) int32 { return errorMessage(ptr(buf), int32(len(buf))) }

// Available reports whether the host ABI is present (true on wasip1).
const Available = true
