//go:build wasip1 && !tinygo

package platform

import _ "unsafe" // for go:linkname

// In -buildmode=c-shared Go runs package initialisers but never main.main. The host calls
// platform_init once per instance (before any request, and before a snapshot is taken),
// and the SDK runs the program's main then: main calls Handle, which registers the handler
// and returns.
//
//go:linkname mainMain main.main
func mainMain()

func runMain() { mainMain() }
