package proxy_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The late service: Send answers the request with three messages and only
// then sets its trailer, x-late: after-<request>. A request of "fail" then
// ends with FailedPrecondition, any other with OK.
const (
	lateService = "svckit.proxytest.Late"
	lateMethod  = "/" + lateService + "/Send"
)

var lateStream = &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}

var lateDesc = grpc.ServiceDesc{
	ServiceName: lateService,
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName:    "Send",
		ServerStreams: true,
		ClientStreams: true,
		Handler: func(_ any, s grpc.ServerStream) error {
			req := new(wrapperspb.StringValue)
			if err := s.RecvMsg(req); err != nil {
				return err
			}
			for range 3 {
				if err := s.SendMsg(wrapperspb.String("chunk")); err != nil {
					return err
				}
			}
			s.SetTrailer(metadata.Pairs("x-late", "after-"+req.GetValue()))
			if req.GetValue() == "fail" {
				return status.Error(codes.FailedPrecondition, "late: failed after sending")
			}
			return nil
		},
	}},
}

// TestLateTrailerReachesClient: a backend sets its trailer after its last
// message, on a bidi stream the client never half-closes; the client
// through the proxy gets every message, the status and the trailer, on
// success and on error. Run it under -race.
func TestLateTrailerReachesClient(t *testing.T) {
	c, cli := startEtcd(t)
	startApp(t, c, cli, "late", func(s *grpc.Server) { s.RegisterService(&lateDesc, struct{}{}) })
	p, addr := startProxy(t, cli)
	waitRoute(t, p, lateService, "late")
	cc := dialProxy(t, addr)
	for _, tc := range []struct {
		req  string
		want codes.Code
	}{
		{"ok", codes.OK},
		{"fail", codes.FailedPrecondition},
	} {
		for i := range 20 {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			st, err := cc.NewStream(ctx, lateStream, lateMethod)
			if err == nil {
				err = st.SendMsg(wrapperspb.String(tc.req))
			}
			if err != nil {
				cancel()
				t.Fatalf("%s %d: %v", tc.req, i, err)
			}
			n := 0
			for err = st.RecvMsg(new(wrapperspb.StringValue)); err == nil; err = st.RecvMsg(new(wrapperspb.StringValue)) {
				n++
			}
			if errors.Is(err, io.EOF) {
				err = nil
			}
			tr := st.Trailer()
			cancel()
			if have := status.Code(err); have != tc.want || n != 3 {
				t.Fatalf("%s %d: %d messages, status %v; want 3, %v", tc.req, i, n, err, tc.want)
			}
			if v := tr.Get("x-late"); len(v) != 1 || v[0] != "after-"+tc.req {
				t.Fatalf("%s %d: client trailer x-late %q, want after-%s", tc.req, i, v, tc.req)
			}
		}
	}
}
