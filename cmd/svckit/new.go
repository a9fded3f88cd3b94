package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/svckit/svckit/framework/cli"
	"github.com/svckit/svckit/internal/protogen"
	"github.com/svckit/svckit/templates"
)

func runNew(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs0 := flag.NewFlagSet("svckit new", flag.ContinueOnError)
	modulePath := fs0.String("module", "", "module path of the new service (default example.com/NAME)")
	dir := fs0.String("dir", "", "directory to write (default ./NAME)")
	tmpl := fs0.String("template", "", "render this template directory instead of the built-in one")
	force := fs0.Bool("force", false, "write into a directory that is not empty")
	svckitDir := fs0.String("svckit", "", "local svckit checkout to build against (default: the one this command runs from)")
	// Flags may follow NAME.
	var name string
	rest := args
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		name, rest = rest[0], rest[1:]
	}
	if err := cli.Parse(fs0, rest, stdout); err != nil {
		return err
	}
	if name == "" && fs0.NArg() == 1 {
		name = fs0.Arg(0)
	} else if fs0.NArg() > 0 {
		return errors.New("usage: svckit new NAME [--module PATH] [--dir DIR] [--template DIR] [--force]")
	}
	d, err := templates.NewData(name, *modulePath)
	if err != nil {
		return err
	}
	if *dir == "" {
		*dir = name
	}
	src := templates.Skeleton()
	if *tmpl != "" {
		if st, err := os.Stat(*tmpl); err != nil || !st.IsDir() {
			return fmt.Errorf("--template %s: not a directory", *tmpl)
		}
		src = os.DirFS(*tmpl)
	}
	if *svckitDir == "" {
		*svckitDir, err = localSvckit(ctx)
		if err != nil {
			return err
		}
	}
	if d.SvckitDir, err = filepath.Abs(*svckitDir); err != nil {
		return err
	}
	files, err := templates.Render(src, *dir, d, *force)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %d files to %s (builds against the local framework at %s: replace directive in go.mod)\n", len(files), *dir, d.SvckitDir)

	if protos := protoFiles(*dir); len(protos) > 0 {
		plugin := []string{"go", "run", "google.golang.org/grpc/cmd/protoc-gen-go-grpc@" + d.GRPCGenVersion}
		if err := protogen.Generate(ctx, filepath.Join(*dir, "proto"), protos, plugin); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "generated Go code for %s\n", strings.Join(protos, ", "))
	}
	if err := goCmd(ctx, *dir, "mod", "tidy"); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "next:\n  cd %s\n  go test ./...\n  go tool svckit etcd &   # a development etcd (go.mod names svckit as a tool)\n  go run ./cmd/%s\n", *dir, name)
	return nil
}

// runGen regenerates the Go code of every .proto under DIR/proto.
func runGen(ctx context.Context, args []string, stdout io.Writer) error {
	dir := "."
	if len(args) == 1 {
		dir = args[0]
	} else if len(args) > 1 {
		return errors.New("usage: svckit gen [DIR]")
	}
	protos := protoFiles(dir)
	if len(protos) == 0 {
		return fmt.Errorf("no .proto files under %s", filepath.Join(dir, "proto"))
	}
	if err := protogen.Generate(ctx, filepath.Join(dir, "proto"), protos, []string{"go", "-C", dir, "tool", "protoc-gen-go-grpc"}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "generated Go code for %s\n", strings.Join(protos, ", "))
	return nil
}

// protoFiles lists the .proto files under dir/proto, relative to it.
func protoFiles(dir string) []string {
	root := filepath.Join(dir, "proto")
	var out []string
	_ = filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() && strings.HasSuffix(p, ".proto") {
			rel, _ := filepath.Rel(root, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	return out
}

// localSvckit finds the svckit checkout this command runs from.
func localSvckit(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "github.com/svckit/svckit").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		return "", errors.New("svckit is not published yet: run svckit new inside a svckit checkout, or pass --svckit DIR")
	}
	return strings.TrimSpace(string(out)), nil
}

func goCmd(ctx context.Context, dir string, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s in %s: %w\n%s", strings.Join(args, " "), dir, err, out)
	}
	return nil
}
