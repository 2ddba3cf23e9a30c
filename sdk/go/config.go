package platform

import (
	"os"
	"sort"
	"sync"

	"github.com/platform-dev/platform/sdk/go/internal/abi"
	"github.com/platform-dev/platform/sdk/go/internal/wire"
)

// Config is the release's configuration: the environment variables set on the release.
// They are also in the process environment (os.Getenv), refreshed before each request
// from the host, so they are right in both isolation modes, including per-request
// instances made from a snapshot taken before the release existed.
var Config config

type config struct{}

var (
	envMu   sync.RWMutex
	envGen  uint64
	envVars = map[string]string{}
)

// Get returns a variable, or "" when unset.
func (config) Get(key string) string {
	v, _ := Config.Lookup(key)
	return v
}

// Lookup returns a variable and whether it is set.
func (config) Lookup(key string) (string, bool) {
	envMu.RLock()
	defer envMu.RUnlock()
	v, ok := envVars[key]
	return v, ok
}

// Keys lists the variable names, sorted.
func (config) Keys() []string {
	envMu.RLock()
	defer envMu.RUnlock()
	keys := make([]string, 0, len(envVars))
	for k := range envVars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// syncEnv makes Config and the process environment match the release's variables, when
// the host reports a different generation than the one last applied. Generation 0 is a
// release without variables, where every instance starts: nothing to fetch.
func syncEnv(gen uint64) error {
	envMu.RLock()
	same := gen == envGen
	envMu.RUnlock()
	if same {
		return nil
	}
	b, err := abi.Sized(1024, abi.EnvGet)
	if err != nil {
		return err
	}
	vars, err := wire.Pairs(b)
	if err != nil {
		return err
	}
	applyEnv(gen, vars)
	return nil
}

func applyEnv(gen uint64, vars map[string]string) {
	envMu.Lock()
	defer envMu.Unlock()
	for k := range envVars {
		if _, keep := vars[k]; !keep {
			os.Unsetenv(k)
		}
	}
	for k, v := range vars {
		if cur, ok := os.LookupEnv(k); !ok || cur != v {
			os.Setenv(k, v)
		}
	}
	envVars = vars
	envGen = gen
}
