package fileserver_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/svckit/svckit/examples/fileserver"
)

func newService(t *testing.T, max int64) (*fileserver.DirService, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := fileserver.NewDirService(dir, max)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, dir
}

func sum(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }

func TestCleanPathRefusesEscapes(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"a.txt", "a.txt", true}, {"d/e/f.bin", "d/e/f.bin", true}, {"./a//b", "a/b", true},
		{"../x", "", false}, {"a/../../x", "", false}, {"/etc/passwd", "", false},
		{"a\x00b", "", false}, {`a\..\b`, "", false}, {"", "", false}, {".", "", false},
		{"d/.upload-123.tmp", "", false},
	} {
		have, err := fileserver.CleanPath(tc.in, false)
		if (err == nil) != tc.ok || have != tc.want {
			t.Errorf("CleanPath(%q): have %q, %v; want %q, ok=%t", tc.in, have, err, tc.want, tc.ok)
		}
		if err != nil && !errors.Is(err, fileserver.ErrInvalidPath) {
			t.Errorf("CleanPath(%q): error %v does not wrap ErrInvalidPath", tc.in, err)
		}
	}
}

func TestUploadStatOpenListDelete(t *testing.T) {
	s, _ := newService(t, 1<<20)
	ctx := context.Background()
	data := []byte(strings.Repeat("svckit ", 1000))
	info, err := s.Upload(ctx, "docs/a.txt", int64(len(data)), sum(data), bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if info.Path != "docs/a.txt" || info.Size != int64(len(data)) {
		t.Fatalf("upload info: %+v", info)
	}
	st, h, err := s.Stat(ctx, "docs/a.txt")
	if err != nil || h != sum(data) || st.Size != int64(len(data)) {
		t.Fatalf("stat: %+v %s %v", st, h, err)
	}
	f, _, h2, err := s.Open(ctx, "docs/a.txt")
	if err != nil || h2 != sum(data) {
		t.Fatalf("open: %v", err)
	}
	got, _ := io.ReadAll(f)
	_ = f.Close()
	if !bytes.Equal(got, data) {
		t.Fatal("read back different bytes")
	}
	ls, err := s.List(ctx, "")
	if err != nil || len(ls) != 1 || ls[0].Path != "docs" || !ls[0].Dir {
		t.Fatalf("list root: %+v %v", ls, err)
	}
	if err := s.Delete(ctx, "docs/a.txt"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Stat(ctx, "docs/a.txt"); !errors.Is(err, fileserver.ErrNotFound) {
		t.Fatalf("stat after delete: %v", err)
	}
	if err := s.Delete(ctx, "docs/a.txt"); !errors.Is(err, fileserver.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

// entries lists every name under dir on disk, hidden ones included.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

func TestFailedUploadsLeaveNothing(t *testing.T) {
	s, dir := newService(t, 1000)
	ctx := context.Background()
	data := []byte("hello")
	for name, up := range map[string]func() error{
		"wrong checksum": func() error {
			_, err := s.Upload(ctx, "x", 5, sum([]byte("other")), bytes.NewReader(data))
			return err
		},
		"short body": func() error {
			_, err := s.Upload(ctx, "x", 10, sum(data), bytes.NewReader(data))
			return err
		},
		"long body": func() error {
			_, err := s.Upload(ctx, "x", 3, sum(data[:3]), bytes.NewReader(data))
			return err
		},
		"too large": func() error {
			_, err := s.Upload(ctx, "x", 1001, sum(data), bytes.NewReader(data))
			return err
		},
		"broken stream": func() error {
			_, err := s.Upload(ctx, "x", 5, sum(data), iotest.TimeoutReader(bytes.NewReader(data)))
			return err
		},
		"escape": func() error {
			_, err := s.Upload(ctx, "../x", 5, sum(data), bytes.NewReader(data))
			return err
		},
	} {
		if err := up(); err == nil {
			t.Errorf("%s: have nil error", name)
		}
		if e := entries(t, dir); len(e) != 0 {
			t.Fatalf("%s left %v", name, e)
		}
	}
	if _, err := s.Upload(ctx, "x", 1001, sum(data), bytes.NewReader(data)); !errors.Is(err, fileserver.ErrTooLarge) {
		t.Errorf("too large: %v", err)
	}
}

func TestSymlinkOutOfTheRootIsRefused(t *testing.T) {
	s, dir := newService(t, 1000)
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Stat(context.Background(), "link/secret"); !errors.Is(err, fileserver.ErrInvalidPath) {
		t.Fatalf("stat through a symlink out of the root: have %v, want ErrInvalidPath", err)
	}
	data := []byte("x")
	if _, err := s.Upload(context.Background(), "link/new", 1, sum(data), bytes.NewReader(data)); err == nil {
		t.Fatal("upload through a symlink out of the root succeeded")
	}
	if e := entries(t, outside); len(e) != 1 {
		t.Fatalf("outside the root: %v", e)
	}
}

func TestConcurrentUploadsOfOnePathNeverMix(t *testing.T) {
	s, _ := newService(t, 1<<20)
	ctx := context.Background()
	var bodies [][]byte
	for i := range 8 {
		bodies = append(bodies, bytes.Repeat([]byte{byte('a' + i)}, 256<<10))
	}
	var wg sync.WaitGroup
	for _, b := range bodies {
		wg.Go(func() {
			// Small reads interleave the writers.
			if _, err := s.Upload(ctx, "same", int64(len(b)), sum(b), iotest.HalfReader(bytes.NewReader(b))); err != nil {
				t.Errorf("upload: %v", err)
			}
		})
	}
	wg.Wait()
	_, h, err := s.Stat(ctx, "same")
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bodies {
		if h == sum(b) {
			return
		}
	}
	t.Fatalf("stored file %s matches none of the uploads: mixed", h)
}

func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"a", "a/b/c", "./a", "a//b", "../a", "a/../../b", "/abs", "a\x00b", `a\b`, "", ".", "..", ".upload-x", "d/.upload-1.tmp/x", "é/ü", "a/./b/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		for _, allowRoot := range []bool{false, true} {
			c, err := fileserver.CleanPath(p, allowRoot)
			if err != nil {
				if !errors.Is(err, fileserver.ErrInvalidPath) {
					t.Fatalf("CleanPath(%q): error %v does not wrap ErrInvalidPath", p, err)
				}
				continue
			}
			if c == "" {
				if !allowRoot {
					t.Fatalf("CleanPath(%q) gave the root without allowRoot", p)
				}
				continue
			}
			if !filepath.IsLocal(c) || strings.ContainsRune(c, 0) || strings.Contains(c, `\`) {
				t.Fatalf("CleanPath(%q) = %q is not a local path", p, c)
			}
			if again, err := fileserver.CleanPath(c, allowRoot); err != nil || again != c {
				t.Fatalf("CleanPath not idempotent on %q: %q, %v", c, again, err)
			}
			for _, el := range strings.Split(c, "/") {
				if el == ".." || el == "." || el == "" || strings.HasPrefix(el, ".upload-") {
					t.Fatalf("CleanPath(%q) = %q has element %q", p, c, el)
				}
			}
		}
	})
}

func TestChecksumBelongsToTheFileRenamed(t *testing.T) {
	// Two instances on one root; b's upload of the same path lands just
	// after a's rename, before a caches its checksum.
	a, dir := newService(t, 1<<20)
	b, err := fileserver.NewDirService(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	ctx := context.Background()
	x, y := bytes.Repeat([]byte("x"), 100<<10), bytes.Repeat([]byte("y"), 100<<10)
	raced := false
	fileserver.SetAfterRename(a, func(p string) {
		if raced {
			return
		}
		raced = true
		if _, err := b.Upload(ctx, p, int64(len(y)), sum(y), bytes.NewReader(y)); err != nil {
			t.Errorf("racing upload: %v", err)
		}
	})
	if _, err := a.Upload(ctx, "same", int64(len(x)), sum(x), bytes.NewReader(x)); err != nil {
		t.Fatal(err)
	}
	if !raced {
		t.Fatal("the racing upload did not run")
	}
	onDisk, err := os.ReadFile(filepath.Join(dir, "same"))
	if err != nil {
		t.Fatal(err)
	}
	want := sum(onDisk)
	for name, s := range map[string]*fileserver.DirService{"a": a, "b": b} {
		if _, have, err := s.Stat(ctx, "same"); err != nil || have != want {
			t.Errorf("%s: stat: have %s, %v; want the sum on disk %s", name, have, err, want)
		}
		f, _, have, err := s.Open(ctx, "same")
		if err != nil {
			t.Fatalf("%s: open: %v", name, err)
		}
		_ = f.Close()
		if have != want {
			t.Errorf("%s: open: have sum %s, want the sum on disk %s", name, have, want)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var got bytes.Buffer
	if _, err := serve(t, a).Get(ctx, "same", &got, nil); err != nil {
		t.Fatalf("get from a: %v", err)
	}
	if !bytes.Equal(got.Bytes(), onDisk) {
		t.Fatal("get from a: bytes differ from the file on disk")
	}
}

func TestNewDirServiceRemovesStaleUploads(t *testing.T) {
	dir := t.TempDir()
	stale := time.Now().Add(-fileserver.StaleUploadAge - time.Minute)
	for _, f := range []struct {
		name string
		mod  time.Time
	}{
		{".upload-crashed.tmp", stale},
		{"d/e/.upload-crashed.tmp", stale},
		{".upload-in-progress.tmp", time.Now()}, // another instance's
		{"old.txt", stale},
	} {
		p := filepath.Join(dir, f.name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, f.mod, f.mod); err != nil {
			t.Fatal(err)
		}
	}
	s, err := fileserver.NewDirService(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	have, want := entries(t, dir), []string{".upload-in-progress.tmp", "old.txt"}
	if !slices.Equal(have, want) {
		t.Fatalf("after start: have %v, want %v", have, want)
	}
}
