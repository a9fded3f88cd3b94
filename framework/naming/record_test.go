package naming_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/svckit/svckit/framework/naming"
)

func TestRecordRoundTrip(t *testing.T) {
	want := naming.Record{Addr: "10.0.0.1:8080", Metadata: naming.Metadata{
		InstanceID: "abc", Version: "1.0", Zone: "eu-1", Weight: 7,
		StartTime: time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC),
		Services:  []string{"svc.v1.Svc"}, Labels: map[string]string{"team": "core"},
	}}
	b, err := want.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), `{"Op":0,"Addr":"10.0.0.1:8080","Metadata":{`) {
		t.Fatalf("wire format: %s", b)
	}
	have, err := naming.DecodeRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if have.Addr != want.Addr || !have.Metadata.Equal(want.Metadata) {
		t.Fatalf("round trip: have %+v, want %+v", have, want)
	}
}

func TestDecodeRecord(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		wantErr     bool
		wantWeight  uint32
	}{
		{"svckit record", `{"Op":0,"Addr":"127.0.0.1:1","Metadata":{"weight":4}}`, false, 4},
		{"etcd manager, no metadata", `{"Op":0,"Addr":"127.0.0.1:1","Metadata":null}`, false, 0},
		{"etcd manager, string metadata", `{"Op":0,"Addr":"127.0.0.1:1","Metadata":"x"}`, false, 0},
		{"hostname", `{"Addr":"svc.local:443"}`, false, 0},
		{"ipv6", `{"Addr":"[::1]:443"}`, false, 0},
		{"not json", `hello`, true, 0},
		{"array", `[1]`, true, 0},
		{"delete op", `{"Op":1,"Addr":"127.0.0.1:1"}`, true, 0},
		{"no address", `{"Op":0}`, true, 0},
		{"address without port", `{"Addr":"127.0.0.1"}`, true, 0},
		{"weight of wrong type", `{"Addr":"127.0.0.1:1","Metadata":{"weight":"x"}}`, true, 0},
		{"negative weight", `{"Addr":"127.0.0.1:1","Metadata":{"weight":-1}}`, true, 0},
		{"weight too large", `{"Addr":"127.0.0.1:1","Metadata":{"weight":2000000}}`, true, 0},
		{"too large", `{"Addr":"127.0.0.1:1","Metadata":{"zone":"` + strings.Repeat("z", naming.MaxRecordBytes) + `"}}`, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := naming.DecodeRecord([]byte(tc.value))
			if tc.wantErr {
				if !errors.Is(err, naming.ErrInvalid) {
					t.Fatalf("have %v, want an error wrapping ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("have %v, want nil", err)
			}
			if r.Metadata.Weight != tc.wantWeight {
				t.Fatalf("weight: have %d, want %d", r.Metadata.Weight, tc.wantWeight)
			}
		})
	}
}

func FuzzDecodeRecord(f *testing.F) {
	for _, s := range []string{
		`{"Op":0,"Addr":"127.0.0.1:1","Metadata":{"weight":4,"zone":"a","services":["x"],"labels":{"k":"v"}}}`,
		`{"Op":0,"Addr":"127.0.0.1:1","Metadata":"plain"}`,
		`{"Op":0,"Addr":"[::1]:80","Metadata":{"start_time":"2026-11-29T09:00:00Z"}}`,
		`{"Op":1,"Addr":"127.0.0.1:1"}`,
		`{"Addr":"0.0.0.0:1"}`,
		`{"Addr":"h:99999"}`,
		`not json`, `{}`, `null`, `[]`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, value []byte) {
		r, err := naming.DecodeRecord(value)
		if err != nil {
			if !errors.Is(err, naming.ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if err := naming.ValidateAddr(r.Addr); err != nil {
			t.Fatalf("decoded an invalid address: %v", err)
		}
		b, err := r.Encode()
		if err != nil {
			return // e.g. a label that looks like a secret: readable, not writable
		}
		again, err := naming.DecodeRecord(b)
		if err != nil {
			t.Fatalf("re-decode of %s: %v", b, err)
		}
		if again.Addr != r.Addr || !again.Metadata.Equal(r.Metadata) {
			t.Fatalf("round trip changed the record: %+v → %+v", r, again)
		}
	})
}

func TestValidateService(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"fileserver", true}, {"file-server.v2", true}, {"A1", true},
		{"", false}, {"a/b", false}, {"..", false}, {"-x", false}, {"my svc", false},
		{strings.Repeat("a", 254), false},
	} {
		err := naming.ValidateService(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateService(%q): have %v, want ok=%t", tc.name, err, tc.ok)
		}
	}
}

func FuzzValidators(f *testing.F) {
	for _, s := range []string{"127.0.0.1:80", "[::1]:443", "host:0", ":80", "0.0.0.0:1", "a/b", "svc", "-x", "h:99999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if err := naming.ValidateAddr(s); err == nil {
			// A valid address makes a valid key and record.
			if _, err := (naming.Record{Addr: s}).Encode(); err != nil {
				t.Fatalf("ValidateAddr(%q) ok, Encode fails: %v", s, err)
			}
		} else if !errors.Is(err, naming.ErrInvalid) {
			t.Fatalf("ValidateAddr error %v does not wrap ErrInvalid", err)
		}
		if err := naming.ValidateService(s); err == nil && strings.ContainsAny(s, "/ \x00") {
			t.Fatalf("ValidateService accepted %q", s)
		}
	})
}
