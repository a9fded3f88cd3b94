module example.com/greeter

go 1.26

require (
	github.com/svckit/svckit v0.0.0-00010101000000-000000000000
	google.golang.org/grpc/cmd/protoc-gen-go-grpc v1.6.2
)

// The framework is not published: build against a local checkout.
replace github.com/svckit/svckit => /path/to/svckit

tool (
	github.com/svckit/svckit/cmd/protogen
	github.com/svckit/svckit/cmd/svckit
	google.golang.org/grpc/cmd/protoc-gen-go-grpc
)
