package fileserver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/go-kit/kit/endpoint"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/svckit/svckit/examples/fileserver/proto/fileserver/v1"
	"github.com/svckit/svckit/framework/kit"
)

// ErrLocalWrite is the error of Client.Get when the writer it was given
// fails; the writer's own error is wrapped too. It is never retried.
var ErrLocalWrite = errors.New("local write failed")

// Client is FileSrv's client over a connection from client.Client.Dial.
type Client struct {
	rpc                pb.FileServiceClient
	list, stat, delete endpoint.Endpoint
}

// NewClient returns a client of cc.
func NewClient(cc *grpc.ClientConn) *Client {
	svc := pb.FileService_ServiceDesc.ServiceName
	return &Client{
		rpc: pb.NewFileServiceClient(cc),
		list: kit.ClientEndpoint(cc, svc, "List",
			func(_ context.Context, r any) (any, error) { return &pb.ListRequest{Dir: r.(ListRequest).Dir}, nil },
			func(_ context.Context, r any) (any, error) {
				var out ListResponse
				for _, e := range r.(*pb.ListResponse).GetEntries() {
					out.Entries = append(out.Entries, fromPB(e))
				}
				return out, nil
			}, new(pb.ListResponse)),
		stat: kit.ClientEndpoint(cc, svc, "Stat",
			func(_ context.Context, r any) (any, error) { return &pb.StatRequest{Path: r.(StatRequest).Path}, nil },
			func(_ context.Context, r any) (any, error) {
				s := r.(*pb.StatResponse)
				return StatResponse{Info: fromPB(s.GetInfo()), SHA256: s.GetSha256()}, nil
			}, new(pb.StatResponse)),
		delete: kit.ClientEndpoint(cc, svc, "Delete",
			func(_ context.Context, r any) (any, error) {
				return &pb.DeleteRequest{Path: r.(DeleteRequest).Path}, nil
			},
			func(context.Context, any) (any, error) { return DeleteResponse{}, nil }, new(pb.DeleteResponse)),
	}
}

// List lists a directory.
func (c *Client) List(ctx context.Context, dir string) ([]FileInfo, error) {
	r, err := c.list(ctx, ListRequest{Dir: dir})
	if err != nil {
		return nil, err
	}
	return r.(ListResponse).Entries, nil
}

// Stat describes a file and returns its SHA-256.
func (c *Client) Stat(ctx context.Context, path string) (FileInfo, string, error) {
	r, err := c.stat(ctx, StatRequest{Path: path})
	if err != nil {
		return FileInfo{}, "", err
	}
	s := r.(StatResponse)
	return s.Info, s.SHA256, nil
}

// Delete removes a file.
func (c *Client) Delete(ctx context.Context, path string) error {
	_, err := c.delete(ctx, DeleteRequest{Path: path})
	return err
}

// Put uploads size bytes of r, whose SHA-256 is sum, to path.
func (c *Client) Put(ctx context.Context, path string, r io.Reader, size int64, sum string, progress func(int64)) (FileInfo, error) {
	stream, err := c.rpc.Upload(ctx, grpc.ForceCodecV2(codec))
	if err != nil {
		return FileInfo{}, err
	}
	if err := stream.Send(&pb.UploadRequest{Msg: &pb.UploadRequest_Header{Header: &pb.UploadHeader{Path: path, Size: size, Sha256: sum}}}); err != nil {
		_, err = stream.CloseAndRecv()
		return FileInfo{}, err
	}
	var sent int64
	for {
		// Each chunk is read into a buffer of its own, which gRPC sends
		// without copying and returns to chunkBufs once written.
		bp := chunkBufs.Get(ChunkSize)
		n, rerr := io.ReadFull(r, *bp)
		if n > 0 {
			*bp = (*bp)[:n]
			if err := sendChunk(stream, &pb.UploadRequest{Msg: &pb.UploadRequest_Chunk{Chunk: *bp}}, bp); err != nil {
				break // the server ended the stream; CloseAndRecv says why
			}
			sent += int64(n)
			if progress != nil {
				progress(sent)
			}
		} else {
			chunkBufs.Put(bp)
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return FileInfo{}, fmt.Errorf("fileserver: read %s: %w", path, rerr)
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return FileInfo{}, err
	}
	return fromPB(resp.GetInfo()), nil
}

// Get downloads path into w, verifying its SHA-256. A stream that breaks
// (the instance died) is resumed from the bytes w has accepted, on
// whichever instance the connection's balancer picks, up to 5 times. An
// error of w itself (including a short write) is not retried: Get returns
// it at once, wrapped with ErrLocalWrite, and w then holds an incomplete
// prefix of the file.
func (c *Client) Get(ctx context.Context, path string, w io.Writer, progress func(done, total int64)) (FileInfo, error) {
	h := sha256.New()
	var got int64
	var info FileInfo
	want := ""
	var lastErr error
	for attempt := 0; attempt < 6; attempt++ {
		// Each attempt's stream ends with its context, also when Get stops
		// reading it early.
		sctx, cancel := context.WithCancel(ctx)
		stream, err := c.rpc.Download(sctx, &pb.DownloadRequest{Path: path, Offset: got}, grpc.WaitForReady(true), grpc.ForceCodecV2(codec))
		if err != nil {
			cancel()
			return FileInfo{}, err
		}
		err = c.receive(stream, w, h, &got, &info, &want, progress)
		cancel()
		if errors.Is(err, ErrLocalWrite) {
			return FileInfo{}, fmt.Errorf("fileserver: get %s: %w", path, err)
		}
		if err == nil {
			if sum := hex.EncodeToString(h.Sum(nil)); sum != want || got != info.Size {
				return FileInfo{}, status.Errorf(codes.DataLoss, "fileserver: %s: got %d bytes with SHA-256 %s, want %d and %s", path, got, sum, info.Size, want)
			}
			return info, nil
		}
		if c := status.Code(err); c != codes.Unavailable && c != codes.Canceled && c != codes.Internal && c != codes.Unknown || ctx.Err() != nil {
			return FileInfo{}, err
		}
		lastErr = err
	}
	return FileInfo{}, fmt.Errorf("fileserver: get %s: gave up resuming: %w", path, lastErr)
}

// receive copies one download stream into w and h, counting bytes into got.
// h and got only ever see the bytes w accepted, so a resume starts exactly
// where w stopped; an error of w wraps ErrLocalWrite.
func (c *Client) receive(stream grpc.ServerStreamingClient[pb.DownloadResponse], w, h io.Writer, got *int64, info *FileInfo, want *string, progress func(int64, int64)) error {
	m := inChunk{Message: new(pb.DownloadResponse)}
	defer m.free()
	var pieces [][]byte
	for {
		m.free()
		err := stream.RecvMsg(&m)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if !m.isChunk() {
			i := m.Message.(*pb.DownloadResponse).GetInfo()
			if i == nil {
				continue // an empty message
			}
			if *want != "" && i.GetSha256() != *want {
				return status.Errorf(codes.Aborted, "fileserver: %s changed during the download", i.GetInfo().GetPath())
			}
			*info, *want = fromPB(i.GetInfo()), i.GetSha256()
			continue
		}
		// The chunk arrives in the transport's buffers, written out as
		// they are: no copy.
		pieces = m.pieces(pieces[:0])
		for _, p := range pieces {
			n, err := w.Write(p)
			h.Write(p[:n])
			*got += int64(n)
			if err == nil && n < len(p) {
				err = io.ErrShortWrite
			}
			if err != nil {
				return fmt.Errorf("%w after %d bytes: %w", ErrLocalWrite, *got, err)
			}
		}
		if progress != nil {
			progress(*got, info.Size)
		}
	}
}
