package cli_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/svckit/svckit/framework/cli"
)

func TestParseAndExit(t *testing.T) {
	for _, tc := range []struct {
		args           []string
		code           int
		stdout, stderr string
	}{
		{[]string{"-n", "3"}, 0, "", ""},
		{[]string{"-h"}, 0, "-n int", ""},
		{[]string{"--help"}, 0, "-n int", ""},
		{[]string{"-n", "x"}, 2, "", "tool sub: invalid value \"x\" for flag -n: parse error (see tool sub -h)\n"},
		{[]string{"-nope"}, 2, "", "tool sub: flag provided but not defined: -nope (see tool sub -h)\n"},
		{[]string{"-n", "-1"}, 1, "", "tool: n must be positive\n"},
	} {
		var stdout, stderr bytes.Buffer
		err := func() error {
			fs := flag.NewFlagSet("tool sub", flag.ContinueOnError)
			n := fs.Int("n", 1, "count")
			if err := cli.Parse(fs, tc.args, &stdout); err != nil {
				return err
			}
			if *n < 0 {
				return errors.New("n must be positive")
			}
			return nil
		}()
		if code := cli.Exit("tool", err, &stderr); code != tc.code {
			t.Errorf("%q: exit %d, want %d", tc.args, code, tc.code)
		}
		if !strings.Contains(stdout.String(), tc.stdout) || tc.stdout == "" && stdout.Len() > 0 {
			t.Errorf("%q: stdout %q, want %q", tc.args, stdout.String(), tc.stdout)
		}
		if stderr.String() != tc.stderr {
			t.Errorf("%q: stderr %q, want %q", tc.args, stderr.String(), tc.stderr)
		}
	}
}

func ExampleExit() {
	fs := flag.NewFlagSet("greeter", flag.ContinueOnError)
	fs.Duration("timeout", 0, "per call")
	err := cli.Parse(fs, []string{"--timeout", "soon"}, os.Stdout)
	fmt.Println("exit", cli.Exit("greeter", err, os.Stdout))
	// Output:
	// greeter: invalid value "soon" for flag -timeout: parse error (see greeter -h)
	// exit 2
}
