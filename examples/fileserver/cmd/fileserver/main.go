// Command fileserver serves FileSrv on framework.App: the standard svckit
// flags (see docs/configuration.md) plus --root and --max-file-size.
package main

import (
	"fmt"
	"os"

	"github.com/svckit/svckit/examples/fileserver"
)

// version is stamped at build time: -ldflags "-X main.version=1.2.3".
var version = "dev"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "fileserver:", err)
		os.Exit(1)
	}
}

func run(args []string) error { return fileserver.Main(args, version) }
