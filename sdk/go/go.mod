module github.com/platform-dev/platform/sdk/go

go 1.24
