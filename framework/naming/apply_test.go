package naming

import (
	"fmt"
	"log/slog"
	"slices"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/grpc/resolver"
)

// FuzzWatchEvents applies a sequence of watch events (puts of good and bad
// records, deletes) to a watch and checks what it publishes against a plain
// map model: the endpoints are the distinct addresses of the keys whose last
// event put a good record, sorted, and the skipped count is the keys whose
// last event put a bad one.
func FuzzWatchEvents(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5})
	f.Add([]byte{0x10, 0x11, 0x20, 0x01, 0x31})
	f.Add([]byte{0x07, 0x17, 0x27, 0x07})
	f.Fuzz(func(t *testing.T, ops []byte) {
		quiet := slog.New(slog.DiscardHandler)
		w := &watch{
			b:       &Builder{log: quiet},
			log:     quiet,
			subs:    map[*etcdResolver]struct{}{},
			entries: map[string]resolver.Endpoint{},
			bad:     map[string]struct{}{},
		}
		good := map[string]string{} // key → addr
		bad := map[string]bool{}
		for _, op := range ops {
			k := fmt.Sprintf("services/x/k%d", op&7)
			addr := fmt.Sprintf("127.0.0.1:%d", 1000+int(op>>3&3)) // keys may share addresses
			switch op >> 5 % 3 {
			case 0:
				v, _ := Record{Addr: addr}.Encode()
				w.apply(w.entries, &mvccpb.KeyValue{Key: []byte(k), Value: v})
				good[k] = addr
				delete(bad, k)
			case 1:
				w.apply(w.entries, &mvccpb.KeyValue{Key: []byte(k), Value: []byte("{garbage")})
				delete(good, k)
				bad[k] = true
			case 2:
				w.remove(k)
				delete(good, k)
				delete(bad, k)
			}
			w.publish()
			var want []string
			for _, a := range good {
				want = append(want, a)
			}
			slices.Sort(want)
			want = slices.Compact(want)
			var have []string
			for _, ep := range w.snap.state.Endpoints {
				have = append(have, ep.Addresses[0].Addr)
			}
			if !slices.Equal(have, want) {
				t.Fatalf("after ops %v: endpoints %v, model %v", ops, have, want)
			}
			if len(w.snap.state.Addresses) != len(have) {
				t.Fatalf("Addresses %d, Endpoints %d", len(w.snap.state.Addresses), len(have))
			}
			if w.status.Skipped != len(bad) {
				t.Fatalf("after ops %v: skipped %d, model %d", ops, w.status.Skipped, len(bad))
			}
		}
	})
}
