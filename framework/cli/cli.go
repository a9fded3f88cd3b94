// Package cli is how every svckit command reads its command line and
// exits: the CLI, the examples, the services `svckit new` generates and the
// test servers. It imports only the standard library, so a program that
// wants nothing else of svckit (a plain grpc-go client) can use it too.
//
// A main is one line, cli.Main("name", run), where run parses its flags
// with Parse. A bad command line then ends the process with one line and
// exit code 2, -h prints the usage to stdout and exits 0, and any other
// error is one line and exit code 1.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// UsageError is a bad command line: an unknown flag, a value its flag
// cannot parse, an unexpected argument. Main exits 2 on it. A value that
// parses but is refused later (framework.Config.Validate, which also
// checks the environment) is an ordinary error: exit 1.
type UsageError struct {
	// Cmd is the command, the name of its FlagSet.
	Cmd string
	Err error
}

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Parse parses args with fs, and keeps the flag package from printing the
// usage on every error: -h or --help writes the usage to stdout and
// returns flag.ErrHelp; any other parse error returns a *UsageError, one
// line, and writes nothing.
func Parse(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		if fs.Usage != nil {
			fs.Usage()
		} else {
			fmt.Fprintf(stdout, "usage of %s:\n", fs.Name())
			fs.PrintDefaults()
		}
		return flag.ErrHelp
	default:
		return &UsageError{Cmd: fs.Name(), Err: err}
	}
}

// Main runs run on the command line's arguments and exits with the code
// Exit gives.
func Main(name string, run func(args []string) error) {
	os.Exit(Exit(name, run(os.Args[1:]), os.Stderr))
}

// Exit writes err to stderr as one line and returns the exit code of a
// command called name that ended with err: 0 for nil and flag.ErrHelp (the
// usage was printed), 2 for a *UsageError ("CMD: ERR (see CMD -h)", CMD
// being the error's Cmd, else name), 1 for any other error ("name: ERR").
func Exit(name string, err error, stderr io.Writer) int {
	var usage *UsageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &usage):
		cmd := usage.Cmd
		if cmd == "" {
			cmd = name
		}
		fmt.Fprintf(stderr, "%s: %v (see %s -h)\n", cmd, err, cmd)
		return 2
	default:
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
}
