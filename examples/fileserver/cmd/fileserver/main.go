// Command fileserver serves FileSrv on framework.App: the standard svckit
// flags (see docs/configuration.md) plus --root and --max-file-size.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/svckit/svckit/examples/fileserver"
	"github.com/svckit/svckit/framework"
)

// version is stamped at build time: -ldflags "-X main.version=1.2.3".
var version = "dev"

// main exits 2 after a bad command line, printed on one line, and 1 after
// any other error.
func main() {
	err := run(os.Args[1:])
	var usageErr *framework.UsageError
	switch {
	case err == nil:
	case errors.As(err, &usageErr):
		fmt.Fprintf(os.Stderr, "fileserver: %v (see -h)\n", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "fileserver:", err)
		os.Exit(1)
	}
}

func run(args []string) error { return fileserver.Main(args, version) }
