// Package protogen compiles .proto files and generates their Go and gRPC
// code with pure-Go tools: github.com/bufbuild/protocompile parses and links
// the files, protoc-gen-go's generator runs in-process, and
// protoc-gen-go-grpc (a `go tool` of this module) runs as a plugin on the
// same CodeGeneratorRequest protoc would send. No protoc is needed.
//
// It leaves out plugins other than these two, and options other than
// paths=source_relative.
package protogen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/bufbuild/protocompile"
	"google.golang.org/protobuf/cmd/protoc-gen-go/internal_gengo"
	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/pluginpb"
)

// Generate compiles files (paths relative to root) and writes the generated
// .pb.go and _grpc.pb.go files beside them, under root. grpcPlugin is the
// command that runs protoc-gen-go-grpc, e.g. {"go", "tool",
// "protoc-gen-go-grpc"}.
func Generate(ctx context.Context, root string, files []string, grpcPlugin []string) error {
	if len(files) == 0 {
		return errors.New("protogen: no .proto files")
	}
	c := protocompile.Compiler{
		Resolver:       protocompile.WithStandardImports(&protocompile.SourceResolver{ImportPaths: []string{root}}),
		SourceInfoMode: protocompile.SourceInfoStandard,
	}
	linked, err := c.Compile(ctx, files...)
	if err != nil {
		return fmt.Errorf("protogen: %w", err)
	}
	req := &pluginpb.CodeGeneratorRequest{
		FileToGenerate: files,
		Parameter:      proto.String("paths=source_relative"),
	}
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imports := fd.Imports()
		for i := range imports.Len() {
			add(imports.Get(i).FileDescriptor)
		}
		req.ProtoFile = append(req.ProtoFile, protodesc.ToFileDescriptorProto(fd))
	}
	for _, f := range linked {
		add(f)
	}

	goResp, err := genGo(req)
	if err != nil {
		return err
	}
	grpcResp, err := runPlugin(ctx, grpcPlugin, req)
	if err != nil {
		return err
	}
	for _, resp := range []*pluginpb.CodeGeneratorResponse{goResp, grpcResp} {
		if resp.Error != nil {
			return fmt.Errorf("protogen: %s", resp.GetError())
		}
		for _, f := range resp.File {
			path := filepath.Join(root, f.GetName())
			if err := os.WriteFile(path, []byte(f.GetContent()), 0o644); err != nil {
				return fmt.Errorf("protogen: %w", err)
			}
		}
	}
	return nil
}

// genGo runs protoc-gen-go's generator in-process.
func genGo(req *pluginpb.CodeGeneratorRequest) (*pluginpb.CodeGeneratorResponse, error) {
	gen, err := protogen.Options{}.New(req)
	if err != nil {
		return nil, fmt.Errorf("protogen: go: %w", err)
	}
	for _, f := range gen.Files {
		if f.Generate {
			internal_gengo.GenerateFile(gen, f)
		}
	}
	gen.SupportedFeatures = internal_gengo.SupportedFeatures
	return gen.Response(), nil
}

// runPlugin runs a protoc plugin command on req.
func runPlugin(ctx context.Context, argv []string, req *pluginpb.CodeGeneratorRequest) (*pluginpb.CodeGeneratorResponse, error) {
	in, err := proto.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("protogen: %w", err)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = bytes.NewReader(in)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("protogen: %v: %w: %s", argv, err, errb.String())
	}
	resp := &pluginpb.CodeGeneratorResponse{}
	if err := proto.Unmarshal(out.Bytes(), resp); err != nil {
		return nil, fmt.Errorf("protogen: %v output: %w", argv, err)
	}
	return resp, nil
}
