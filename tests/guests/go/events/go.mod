module platform.test/guests/events

go 1.24

require github.com/platform-dev/platform/sdk/go v0.0.0

replace github.com/platform-dev/platform/sdk/go => ../../../../sdk/go
