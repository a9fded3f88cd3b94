package fileserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	grpctransport "github.com/go-kit/kit/transport/grpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/svckit/svckit/examples/fileserver/proto/fileserver/v1"
	"github.com/svckit/svckit/framework/kit"
)

// ChunkSize is the size of the chunks Download and Client.Put send;
// MaxChunk bounds what the server accepts. Measured in bench/
// (BenchmarkFileSrv): 1 MiB chunks move a file several times faster than
// 64 KiB ones, whose per-message cost dominates.
const (
	ChunkSize = 1 << 20
	MaxChunk  = 1 << 20
)

// StatusOf converts the service's errors to gRPC status at the transport
// edge.
func StatusOf(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrInvalidPath):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, ErrTooLarge):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, ErrMismatch):
		return status.Error(codes.DataLoss, err.Error())
	}
	return kit.GRPCStatus(err)
}

// server implements pb.FileServiceServer over a Service and its endpoints.
type server struct {
	pb.UnimplementedFileServiceServer
	svc                Service
	list, stat, delete *grpctransport.Server
}

// NewGRPCServer returns the gRPC face of svc: the unary methods through
// eps, the streaming ones through svc.
func NewGRPCServer(svc Service, eps Endpoints) pb.FileServiceServer {
	return &server{
		svc: svc,
		list: kit.ServerHandler(eps.List,
			func(_ context.Context, r any) (any, error) {
				return ListRequest{Dir: r.(*pb.ListRequest).GetDir()}, nil
			},
			func(_ context.Context, r any) (any, error) {
				out := &pb.ListResponse{}
				for _, e := range r.(ListResponse).Entries {
					out.Entries = append(out.Entries, toPB(e))
				}
				return out, nil
			}),
		stat: kit.ServerHandler(eps.Stat,
			func(_ context.Context, r any) (any, error) {
				return StatRequest{Path: r.(*pb.StatRequest).GetPath()}, nil
			},
			func(_ context.Context, r any) (any, error) {
				s := r.(StatResponse)
				return &pb.StatResponse{Info: toPB(s.Info), Sha256: s.SHA256}, nil
			}),
		delete: kit.ServerHandler(eps.Delete,
			func(_ context.Context, r any) (any, error) {
				return DeleteRequest{Path: r.(*pb.DeleteRequest).GetPath()}, nil
			},
			func(context.Context, any) (any, error) { return &pb.DeleteResponse{}, nil }),
	}
}

// Register registers FileSrv on s.
func Register(s grpc.ServiceRegistrar, svc Service, eps Endpoints) {
	pb.RegisterFileServiceServer(s, NewGRPCServer(svc, eps))
}

func toPB(f FileInfo) *pb.FileInfo {
	return &pb.FileInfo{Path: f.Path, Size: f.Size, Dir: f.Dir, ModTimeUnixNano: f.ModTime.UnixNano()}
}

func fromPB(f *pb.FileInfo) FileInfo {
	return FileInfo{Path: f.GetPath(), Size: f.GetSize(), Dir: f.GetDir(), ModTime: time.Unix(0, f.GetModTimeUnixNano())}
}

func (s *server) List(ctx context.Context, r *pb.ListRequest) (*pb.ListResponse, error) {
	_, resp, err := s.list.ServeGRPC(ctx, r)
	if err != nil {
		return nil, StatusOf(err)
	}
	return resp.(*pb.ListResponse), nil
}

func (s *server) Stat(ctx context.Context, r *pb.StatRequest) (*pb.StatResponse, error) {
	_, resp, err := s.stat.ServeGRPC(ctx, r)
	if err != nil {
		return nil, StatusOf(err)
	}
	return resp.(*pb.StatResponse), nil
}

func (s *server) Delete(ctx context.Context, r *pb.DeleteRequest) (*pb.DeleteResponse, error) {
	_, resp, err := s.delete.ServeGRPC(ctx, r)
	if err != nil {
		return nil, StatusOf(err)
	}
	return resp.(*pb.DeleteResponse), nil
}

// Upload reads the header, then hands the chunks to the service as a
// stream of bytes.
func (s *server) Upload(stream grpc.ClientStreamingServer[pb.UploadRequest, pb.UploadResponse]) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	h := first.GetHeader()
	if h == nil {
		return status.Error(codes.InvalidArgument, "upload: the first message must be the header")
	}
	r := &chunkReader{recv: func() ([]byte, error) {
		m, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		c := m.GetChunk()
		if m.GetHeader() != nil || len(c) > MaxChunk {
			return nil, status.Errorf(codes.InvalidArgument, "upload: expected a chunk of at most %d bytes", MaxChunk)
		}
		return c, nil
	}}
	info, err := s.svc.Upload(stream.Context(), h.GetPath(), h.GetSize(), h.GetSha256(), r)
	if err != nil {
		if st, ok := status.FromError(r.err); ok && r.err != nil {
			return st.Err()
		}
		return StatusOf(err)
	}
	return stream.SendAndClose(&pb.UploadResponse{Info: toPB(info), Sha256: h.GetSha256()})
}

// Download sends the file's info, then its bytes from the offset.
func (s *server) Download(req *pb.DownloadRequest, stream grpc.ServerStreamingServer[pb.DownloadResponse]) error {
	f, info, sum, err := s.svc.Open(stream.Context(), req.GetPath())
	if err != nil {
		return StatusOf(err)
	}
	defer f.Close()
	if info.Dir {
		return status.Errorf(codes.InvalidArgument, "download: %s is a directory", info.Path)
	}
	off := req.GetOffset()
	if off < 0 || off > info.Size {
		return status.Errorf(codes.OutOfRange, "download: offset %d outside 0..%d", off, info.Size)
	}
	if err := stream.Send(&pb.DownloadResponse{Msg: &pb.DownloadResponse_Info{Info: &pb.DownloadInfo{Info: toPB(info), Sha256: sum}}}); err != nil {
		return err
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return StatusOf(fmt.Errorf("download: seek: %w", err))
	}
	buf := make([]byte, ChunkSize)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if err := stream.Send(&pb.DownloadResponse{Msg: &pb.DownloadResponse_Chunk{Chunk: buf[:n]}}); err != nil {
				return err
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return StatusOf(fmt.Errorf("download: read: %w", err))
		}
	}
}

// chunkReader is an io.Reader over a stream of chunks.
type chunkReader struct {
	recv func() ([]byte, error)
	buf  []byte
	err  error
}

func (c *chunkReader) Read(p []byte) (int, error) {
	for len(c.buf) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		b, err := c.recv()
		if err != nil {
			c.err = err
			if errors.Is(err, io.EOF) {
				return 0, io.EOF
			}
			return 0, err
		}
		c.buf = b
	}
	n := copy(p, c.buf)
	c.buf = c.buf[n:]
	return n, nil
}

// Flow-control windows for bulk transfers: gRPC's default 64 KiB window
// (grown by BDP estimation) keeps a single stream far below the link's speed
// on fast networks.
const (
	streamWindow = 8 << 20
	connWindow   = 16 << 20
)

// ServerWindows returns the server options that size flow-control windows
// for file transfer.
func ServerWindows() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.InitialWindowSize(streamWindow), grpc.InitialConnWindowSize(connWindow)}
}

// ClientWindows returns the dial options that size flow-control windows for
// file transfer.
func ClientWindows() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithInitialWindowSize(streamWindow), grpc.WithInitialConnWindowSize(connWindow)}
}
