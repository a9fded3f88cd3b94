// Command protogen generates Go and gRPC code from .proto files without
// protoc: `go run ./cmd/protogen -root DIR file.proto…` (see
// internal/protogen). Used by `go generate` in examples/fileserver.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/svckit/svckit/internal/protogen"
)

func main() {
	root := flag.String("root", ".", "directory the .proto paths are relative to; output goes beside them")
	flag.Parse()
	err := protogen.Generate(context.Background(), *root, flag.Args(), []string{"go", "tool", "protoc-gen-go-grpc"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
