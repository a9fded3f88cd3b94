package protogen_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/svckit/svckit/internal/protogen"
)

// The committed FileSrv code is what the generator makes now: regenerate
// into a temporary directory and compare.
func TestFileSrvCodeIsUpToDate(t *testing.T) {
	const rel = "fileserver/v1"
	src := filepath.Join("..", "..", "examples", "fileserver", "proto")
	tmp := t.TempDir()
	if err := os.MkdirAll(filepath.Join(tmp, rel), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(src, rel, "fileserver.proto"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, rel, "fileserver.proto"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := protogen.Generate(ctx, tmp, []string{rel + "/fileserver.proto"}, []string{"go", "tool", "protoc-gen-go-grpc"}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"fileserver.pb.go", "fileserver_grpc.pb.go"} {
		have, err := os.ReadFile(filepath.Join(tmp, rel, f))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join(src, rel, f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(have, want) {
			t.Errorf("%s is stale: run go generate ./examples/fileserver", f)
		}
	}
}

func TestBadProtoIsAClearError(t *testing.T) {
	tmp := t.TempDir()
	if err := os.WriteFile(filepath.Join(tmp, "bad.proto"), []byte("syntax = \"proto3\";\nmessage {"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := protogen.Generate(context.Background(), tmp, []string{"bad.proto"}, []string{"false"})
	if err == nil {
		t.Fatal("have nil error for a broken proto")
	}
	t.Log(err)
}
