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
	"strings"
	"sync"
	"testing"
	"testing/iotest"

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
