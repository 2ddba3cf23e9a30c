//go:build wasip1

package platform

// Exports the host calls (sdk/ABI.md).

//go:wasmexport platform_init
func platformInit() int32 {
	if handler == nil {
		runMain()
	}
	if handler == nil {
		return handleNoRoute
	}
	return 0
}

//go:wasmexport platform_handle
func platformHandle(_ int32) int32 {
	return serveOne()
}

//go:wasmexport platform_warmup
func platformWarmup() {
	for _, f := range warmups {
		f()
	}
	warmServePath()
}
