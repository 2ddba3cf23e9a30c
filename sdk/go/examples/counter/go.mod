module example.com/platform-examples/counter

go 1.24

require github.com/platform-dev/platform/sdk/go v0.0.0

replace github.com/platform-dev/platform/sdk/go => ../..
