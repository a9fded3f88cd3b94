package proxy

import (
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// frame is one gRPC message as it came off the wire, never decoded.
type frame struct {
	data mem.BufferSlice
}

// free releases the buffers of a frame that was not sent.
func (f *frame) free() {
	if f.data != nil {
		f.data.Free()
		f.data = nil
	}
}

// codec passes frames through: Unmarshal keeps a reference to the received
// buffers and Marshal hands them on to gRPC, which frees them once written,
// so a message crosses the proxy without a copy. Other values (the proxy's
// own health service) go to the proto codec.
type codec struct{}

var _ encoding.CodecV2 = codec{}

var protoCodec = encoding.GetCodecV2(grpcproto.Name)

// Name is "proto" so that calls carry the usual content type; with
// ForceServerCodecV2 and ForceCodecV2 the name selects nothing.
func (codec) Name() string { return grpcproto.Name }

func (codec) Marshal(v any) (mem.BufferSlice, error) {
	f, ok := v.(*frame)
	if !ok {
		return protoCodec.Marshal(v)
	}
	out := f.data
	f.data = nil
	return out, nil
}

func (codec) Unmarshal(data mem.BufferSlice, v any) error {
	f, ok := v.(*frame)
	if !ok {
		return protoCodec.Unmarshal(data, v)
	}
	data.Ref()
	f.data = data
	return nil
}
