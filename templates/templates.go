// Package templates holds the skeleton of a new svckit service, as plain
// text/template files embedded in the binary, and renders a tree from it (or
// from a team's own template directory) for `svckit new`.
//
// A template tree is rendered file by file: "__name__" in a path becomes the
// service name, a ".tmpl" suffix is dropped, "gitignore" becomes
// ".gitignore", every file is executed as a text/template with Data, and Go
// files go through go/format. Code generation and `go mod tidy` are the
// caller's steps; the package leaves them out.
package templates

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"go/format"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"

	"golang.org/x/mod/module"
)

// skeleton is the embedded template tree, read-only.
//
//go:embed all:skeleton
var skeleton embed.FS

// Skeleton returns the built-in template tree.
func Skeleton() fs.FS {
	sub, err := fs.Sub(skeleton, "skeleton")
	if err != nil {
		panic(err) // the embedded tree is known to have it
	}
	return sub
}

// Data is what templates see.
type Data struct {
	// Name is the service name, also its Go package name.
	Name string
	// Pascal is Name with an upper-case first letter, for Go and proto
	// identifiers.
	Pascal string
	// Module is the new module's path.
	Module string
	// SvckitVersion is the framework version required.
	SvckitVersion string
	// SvckitDir, if set, is a local checkout the new module builds against
	// (a replace directive).
	SvckitDir string
	// GRPCGenVersion is the protoc-gen-go-grpc version used as a go tool.
	GRPCGenVersion string
}

// NewData returns the data for a service name and module path, validated.
func NewData(name, modulePath string) (Data, error) {
	if err := ValidateName(name); err != nil {
		return Data{}, err
	}
	if modulePath == "" {
		modulePath = "example.com/" + name
	}
	if err := module.CheckPath(modulePath); err != nil {
		return Data{}, fmt.Errorf("module path %q: %w", modulePath, err)
	}
	return Data{
		Name:           name,
		Pascal:         strings.ToUpper(name[:1]) + name[1:],
		Module:         modulePath,
		SvckitVersion:  "v0.0.0-00010101000000-000000000000",
		GRPCGenVersion: "v1.6.2",
	}, nil
}

// nameRE matches a service name; a compiled regexp is read-only.
var nameRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,62}$`)

// ValidateName reports whether name can name a new service: lower-case
// letters and digits, starting with a letter (it is also a Go package and a
// proto package name), and not a Go keyword.
func ValidateName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("service name %q: want lower-case letters and digits, starting with a letter (e.g. greeter)", name)
	}
	switch name {
	case "break", "case", "chan", "const", "continue", "default", "defer", "else", "fallthrough", "for", "func",
		"go", "goto", "if", "import", "interface", "map", "package", "range", "return", "select", "struct",
		"switch", "type", "var", "main", "test":
		return fmt.Errorf("service name %q is reserved in Go", name)
	}
	return nil
}

// Render renders the template tree src into dst, which must not exist or
// be empty unless force, and returns the written paths, relative to dst.
// On error nothing is left half-written: the files are rendered in memory
// first.
func Render(src fs.FS, dst string, d Data, force bool) ([]string, error) {
	if ents, err := os.ReadDir(dst); err == nil && len(ents) > 0 && !force {
		return nil, fmt.Errorf("%s exists and is not empty (use --force to write into it)", dst)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	type file struct {
		rel  string
		body []byte
	}
	var files []file
	err := fs.WalkDir(src, ".", func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		raw, err := fs.ReadFile(src, p)
		if err != nil {
			return err
		}
		t, err := template.New(p).Option("missingkey=error").Parse(string(raw))
		if err != nil {
			return fmt.Errorf("template %s: %w", p, err)
		}
		var out bytes.Buffer
		if err := t.Execute(&out, d); err != nil {
			return fmt.Errorf("template %s: %w", p, err)
		}
		rel := strings.TrimSuffix(strings.ReplaceAll(p, "__name__", d.Name), ".tmpl")
		if path.Base(rel) == "gitignore" {
			rel = path.Join(path.Dir(rel), ".gitignore")
		}
		body := out.Bytes()
		if strings.HasSuffix(rel, ".go") {
			if body, err = format.Source(body); err != nil {
				return fmt.Errorf("template %s renders invalid Go: %w", p, err)
			}
		}
		files = append(files, file{rel, body})
		return nil
	})
	if err != nil {
		return nil, err
	}
	var written []string
	for _, f := range files {
		target := filepath.Join(dst, filepath.FromSlash(f.rel))
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return written, err
		}
		if err := os.WriteFile(target, f.body, 0o644); err != nil {
			return written, err
		}
		written = append(written, f.rel)
	}
	return written, nil
}
