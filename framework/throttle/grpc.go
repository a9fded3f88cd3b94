package throttle

import (
	"context"
	"errors"
	"io"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrThrottled is the error of a call rejected locally: UNAVAILABLE, as
// the backend would most likely have answered.
var ErrThrottled = status.Error(codes.Unavailable, "throttle: the backend rejects most calls; call rejected by the client")

// accepted reports whether the backend accepted a call that ended with
// err: every outcome but a shed (RESOURCE_EXHAUSTED) or no answer
// (UNAVAILABLE). An application's error is an accepted call.
func accepted(err error) bool {
	switch status.Code(err) {
	case codes.ResourceExhausted, codes.Unavailable:
		return false
	}
	return true
}

// UnaryClientInterceptor throttles unary calls.
func (t *Throttle) UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if !t.Allow() {
			return ErrThrottled
		}
		err := invoker(ctx, method, req, reply, cc, opts...)
		t.Done(accepted(err))
		return err
	}
}

// StreamClientInterceptor throttles streams when they open; a stream is
// accepted once its first message arrives, or when it ends otherwise than
// shed or unavailable (io.EOF: accepted). A stream that never gets a
// message and is never read to its end (cancelled) counts as a request
// only.
func (t *Throttle) StreamClientInterceptor() grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		if !t.Allow() {
			return nil, ErrThrottled
		}
		s, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			t.Done(accepted(err))
			return nil, err
		}
		return &stream{ClientStream: s, t: t}, nil
	}
}

// stream reports its outcome to the throttle once, at its first message
// or its end.
type stream struct {
	grpc.ClientStream
	t    *Throttle
	once sync.Once
}

func (s *stream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	s.once.Do(func() { s.t.Done(err == nil || errors.Is(err, io.EOF) || accepted(err)) })
	return err
}
