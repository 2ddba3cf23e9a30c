//go:build wasip1 && tinygo

package platform

// TinyGo's reactor start-up (_initialize) runs main itself, so Handle has been called by
// the time the host calls platform_init.
func runMain() {}
