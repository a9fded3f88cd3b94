package fileserver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	grpctransport "github.com/go-kit/kit/transport/grpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

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
	case errors.Is(err, ErrTooLarge), errors.Is(err, ErrNoSpace):
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
	r := &chunkReader{msg: inChunk{Message: new(pb.UploadRequest)}, recv: func(m *inChunk) error {
		if err := stream.RecvMsg(m); err != nil {
			return err
		}
		if !m.isChunk() || m.len() > MaxChunk {
			return status.Errorf(codes.InvalidArgument, "upload: expected a chunk of at most %d bytes", MaxChunk)
		}
		return nil
	}}
	defer r.close()
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
	for {
		// Each chunk is read into a buffer of its own, which gRPC sends
		// without copying and returns to chunkBufs once written.
		bp := chunkBufs.Get(ChunkSize)
		n, err := io.ReadFull(f, *bp)
		if n > 0 {
			*bp = (*bp)[:n]
			if err := sendChunk(stream, &pb.DownloadResponse{Msg: &pb.DownloadResponse_Chunk{Chunk: *bp}}, bp); err != nil {
				return err
			}
		} else {
			chunkBufs.Put(bp)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil
		}
		if err != nil {
			return StatusOf(fmt.Errorf("download: read: %w", err))
		}
	}
}

// chunkReader is an io.Reader over a stream of chunks.
type chunkReader struct {
	recv   func(*inChunk) error
	msg    inChunk
	pieces [][]byte // what is left of msg's chunk, from pieces[i]
	i      int
	err    error
}

func (c *chunkReader) Read(p []byte) (int, error) {
	for c.i == len(c.pieces) {
		c.msg.free()
		if c.err != nil {
			return 0, c.err
		}
		if err := c.recv(&c.msg); err != nil {
			c.err = err
			if errors.Is(err, io.EOF) {
				return 0, io.EOF
			}
			return 0, err
		}
		c.pieces, c.i = c.msg.pieces(c.pieces[:0]), 0
	}
	n := 0
	for n < len(p) && c.i < len(c.pieces) {
		k := copy(p[n:], c.pieces[c.i])
		n += k
		if c.pieces[c.i] = c.pieces[c.i][k:]; len(c.pieces[c.i]) == 0 {
			c.i++
		}
	}
	return n, nil
}

// close releases the last chunk received.
func (c *chunkReader) close() { c.msg.free() }

// The chunk codec. gRPC's proto codec copies every chunk three times: into
// a pooled buffer as the sender marshals it, then on receipt into one
// contiguous buffer, and from there into a new []byte that proto.Unmarshal
// allocates (a 256 MiB download allocated 256 MiB). chunkCodec is that
// codec with a fast path for messages that hold only a chunk (field
// "chunk" of UploadRequest and DownloadResponse): it sends a chunk from the
// buffer the file was read into (outChunk), and hands a received chunk
// over in the transport's own buffers (inChunk). The bytes on the wire are
// the same protobuf, and every other message goes through the proto codec
// unchanged. outChunk and inChunk are proto messages themselves, so they
// still work, at the proto codec's cost, on a server built without
// ServerWindows.
type chunkCodec struct{ base encoding.CodecV2 }

// codec is the chunk codec over gRPC's registered proto codec. A value
// set once at package load and only read after: not state.
var codec = chunkCodec{base: encoding.GetCodecV2(grpcproto.Name)}

// Name is the proto codec's: the content-subtype stays "proto".
func (chunkCodec) Name() string { return grpcproto.Name }

func (c chunkCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(*outChunk)
	if !ok {
		return c.base.Marshal(v)
	}
	hdr := protowire.AppendTag(make([]byte, 0, 2*binary.MaxVarintLen64), chunkField(m.Message), protowire.BytesType)
	hdr = protowire.AppendVarint(hdr, uint64(m.data.Len()))
	m.data.Ref() // gRPC frees it once written
	return mem.BufferSlice{mem.SliceBuffer(hdr), m.data}, nil
}

func (c chunkCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*inChunk)
	if !ok {
		return c.base.Unmarshal(data, v)
	}
	m.free()
	skip, ok := chunkOffset(data, chunkField(m.Message))
	if !ok {
		return c.base.Unmarshal(data, m.Message)
	}
	proto.Reset(m.Message)
	data.Ref() // gRPC frees its own reference when Unmarshal returns
	m.data, m.skip = data, skip
	return nil
}

// chunkField is the number of m's field "chunk".
func chunkField(m proto.Message) protowire.Number {
	return m.ProtoReflect().Descriptor().Fields().ByName("chunk").Number()
}

// chunkOffset reports whether data is a message holding only field, with
// bytes, and where those bytes start.
func chunkOffset(data mem.BufferSlice, field protowire.Number) (int, bool) {
	var head [2 * binary.MaxVarintLen64]byte
	n := 0
	for _, b := range data {
		if n += copy(head[n:], b.ReadOnlyData()); n == len(head) {
			break
		}
	}
	num, typ, tl := protowire.ConsumeTag(head[:n])
	if tl < 0 || num != field || typ != protowire.BytesType {
		return 0, false
	}
	size, sl := protowire.ConsumeVarint(head[tl:n])
	if sl < 0 || size != uint64(data.Len()-tl-sl) {
		return 0, false
	}
	return tl + sl, true
}

// outChunk is a chunk message whose bytes are data, a buffer from
// chunkBufs.
type outChunk struct {
	proto.Message // the same message, for the proto codec
	data          mem.Buffer
}

// sendChunk sends msg, a chunk message whose bytes are *bp, a buffer from
// chunkBufs that returns there once gRPC has written it.
func sendChunk(s interface{ SendMsg(any) error }, msg proto.Message, bp *[]byte) error {
	data := mem.NewBuffer(bp, chunkBufs)
	defer data.Free()
	return s.SendMsg(&outChunk{Message: msg, data: data})
}

// inChunk receives a message that is usually a chunk: through chunkCodec
// the chunk's bytes stay in data, from offset skip, and Message is empty;
// any other message is unmarshalled into Message.
type inChunk struct {
	proto.Message
	data mem.BufferSlice
	skip int
}

// isChunk reports whether the message received is a chunk.
func (m *inChunk) isChunk() bool {
	if m.data != nil {
		return true
	}
	switch r := m.Message.(type) {
	case *pb.UploadRequest:
		_, ok := r.GetMsg().(*pb.UploadRequest_Chunk)
		return ok
	case *pb.DownloadResponse:
		_, ok := r.GetMsg().(*pb.DownloadResponse_Chunk)
		return ok
	}
	return false
}

// pieces appends the chunk's bytes, in order, to dst.
func (m *inChunk) pieces(dst [][]byte) [][]byte {
	if m.data == nil {
		if c, ok := m.Message.(interface{ GetChunk() []byte }); ok && len(c.GetChunk()) > 0 {
			dst = append(dst, c.GetChunk())
		}
		return dst
	}
	skip := m.skip
	for _, b := range m.data {
		d := b.ReadOnlyData()
		if skip >= len(d) {
			skip -= len(d)
			continue
		}
		dst = append(dst, d[skip:])
		skip = 0
	}
	return dst
}

// len is the chunk's length.
func (m *inChunk) len() int {
	if m.data == nil {
		if c, ok := m.Message.(interface{ GetChunk() []byte }); ok {
			return len(c.GetChunk())
		}
		return 0
	}
	return m.data.Len() - m.skip
}

// free releases the transport's buffers.
func (m *inChunk) free() {
	m.data.Free()
	m.data, m.skip = nil, 0
}

// chunkBufs recycles the buffers chunks are read into. Unlike gRPC's
// default pool it does not clear them: a file read fills every byte sent.
// A pool is a cache, not state: a Get may return a fresh buffer any time.
var chunkBufs = &bufPool{size: ChunkSize}

// bufPool is a mem.BufferPool of buffers of one size, not cleared.
type bufPool struct {
	size int
	pool sync.Pool
}

func (p *bufPool) Get(n int) *[]byte {
	if b, ok := p.pool.Get().(*[]byte); ok && cap(*b) >= n {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, max(n, p.size))
	return &b
}

func (p *bufPool) Put(b *[]byte) {
	if cap(*b) >= p.size {
		p.pool.Put(b)
	}
}

// Flow-control windows for bulk transfers: gRPC's default 64 KiB window
// (grown by BDP estimation) keeps a single stream far below the link's speed
// on fast networks.
const (
	streamWindow = 8 << 20
	connWindow   = 16 << 20
)

// ServerWindows returns the server options for file transfer: the
// flow-control windows, and the chunk codec (see chunkCodec), which the
// server then uses for every message whatever its content-subtype; every
// message but a chunk goes through the proto codec as before.
func ServerWindows() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.InitialWindowSize(streamWindow), grpc.InitialConnWindowSize(connWindow),
		grpc.ForceServerCodecV2(codec)}
}

// ClientWindows returns the dial options that size flow-control windows for
// file transfer.
func ClientWindows() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithInitialWindowSize(streamWindow), grpc.WithInitialConnWindowSize(connWindow)}
}
