// Command fileserver serves FileSrv on framework.App: the standard svckit
// flags (see docs/configuration.md) plus --root and --max-file-size.
package main

import (
	"github.com/svckit/svckit/examples/fileserver"
	"github.com/svckit/svckit/framework/cli"
)

// version is stamped at build time: -ldflags "-X main.version=1.2.3".
var version = "dev"

// main exits 2 after a bad command line, printed on one line, 0 after -h,
// and 1 after any other error (cli.Main).
func main() { cli.Main("fileserver", run) }

func run(args []string) error { return fileserver.Main(args, version) }
