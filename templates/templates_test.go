package templates_test

import (
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/svckit/svckit/templates"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// The rendered tree for one name is pinned: a change to the skeleton shows
// up here as a diff (go test ./templates -update to accept it).
func TestGoldenTree(t *testing.T) {
	d, err := templates.NewData("greeter", "example.com/greeter")
	if err != nil {
		t.Fatal(err)
	}
	d.SvckitDir = "/path/to/svckit"
	dst := t.TempDir()
	files, err := templates.Render(templates.Skeleton(), dst, d, false)
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "golden", "greeter")
	if *update {
		_ = os.RemoveAll(golden)
		if err := os.CopyFS(golden, os.DirFS(dst)); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range files {
		have, err := os.ReadFile(filepath.Join(dst, f))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join(golden, f))
		if err != nil {
			t.Fatalf("%s: no golden file (run with -update): %v", f, err)
		}
		if string(have) != string(want) {
			t.Errorf("%s differs from its golden file (run with -update if intended)", f)
		}
	}
	var goldenFiles int
	_ = filepath.WalkDir(golden, func(_ string, e fs.DirEntry, _ error) error {
		if e != nil && !e.IsDir() {
			goldenFiles++
		}
		return nil
	})
	if goldenFiles != len(files) {
		t.Errorf("rendered %d files, golden has %d", len(files), goldenFiles)
	}
	for _, want := range []string{"go.mod", "cmd/greeter/main.go", "proto/greeter/v1/greeter.proto", "service.go",
		"endpoints.go", "transport.go", "client.go", "greeter_test.go", "README.md", "Dockerfile", ".gitignore"} {
		found := false
		for _, f := range files {
			found = found || f == want
		}
		if !found {
			t.Errorf("rendered tree lacks %s", want)
		}
	}
}

func TestInvalidInputIsRefusedAndNothingWritten(t *testing.T) {
	for _, name := range []string{"My Service", "1svc", "a/b", "..", "", "Greeter", "my-svc", "func", strings.Repeat("a", 64)} {
		if _, err := templates.NewData(name, ""); err == nil {
			t.Errorf("name %q: have nil error", name)
		}
	}
	for _, mod := range []string{"Example.com/UPPER/..", "a b", "/abs", "example.com/x/../y"} {
		if _, err := templates.NewData("greeter", mod); err == nil {
			t.Errorf("module %q: have nil error", mod)
		}
	}
	d, _ := templates.NewData("greeter", "")
	dst := t.TempDir()
	if err := os.WriteFile(filepath.Join(dst, "keep.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := templates.Render(templates.Skeleton(), dst, d, false); err == nil {
		t.Fatal("non-empty directory without force: have nil error")
	}
	if ents, _ := os.ReadDir(dst); len(ents) != 1 {
		t.Fatalf("refused render wrote %d entries", len(ents)-1)
	}
	// A broken template fails before anything is written.
	bad := fstest.MapFS{"a.txt": {Data: []byte("ok")}, "b.go.tmpl": {Data: []byte("package {{.Nope}}")}}
	empty := t.TempDir()
	if _, err := templates.Render(bad, empty, d, false); err == nil {
		t.Fatal("template with an unknown field: have nil error")
	}
	if ents, _ := os.ReadDir(empty); len(ents) != 0 {
		t.Fatalf("failed render wrote %d entries", len(ents))
	}
}

func TestUserTemplateTree(t *testing.T) {
	src := fstest.MapFS{
		"__name__.txt.tmpl":    {Data: []byte("service {{.Name}} in {{.Module}}")},
		"pkg/__name__.go.tmpl": {Data: []byte("package {{.Name}}\nconst   X=1")},
	}
	d, _ := templates.NewData("house", "corp.example/house")
	dst := t.TempDir()
	if _, err := templates.Render(src, dst, d, false); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dst, "house.txt"))
	if string(b) != "service house in corp.example/house" {
		t.Fatalf("house.txt: %q", b)
	}
	g, _ := os.ReadFile(filepath.Join(dst, "pkg", "house.go"))
	if string(g) != "package house\n\nconst X = 1\n" {
		t.Fatalf("Go output not gofmt'ed: %q", g)
	}
}
