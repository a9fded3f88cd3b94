// Command protogen generates Go and gRPC code from .proto files without
// protoc: `go run ./cmd/protogen -root DIR file.proto…` (see
// internal/protogen). Used by `go generate` in examples/fileserver.
package main

import (
	"context"
	"flag"
	"os"

	"github.com/svckit/svckit/framework/cli"
	"github.com/svckit/svckit/internal/protogen"
)

func main() { cli.Main("protogen", run) }

func run(args []string) error {
	fs := flag.NewFlagSet("protogen", flag.ContinueOnError)
	root := fs.String("root", ".", "directory the .proto paths are relative to; output goes beside them")
	if err := cli.Parse(fs, args, os.Stdout); err != nil {
		return err
	}
	return protogen.Generate(context.Background(), *root, fs.Args(), []string{"go", "tool", "protoc-gen-go-grpc"})
}
