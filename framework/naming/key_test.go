package naming_test

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"google.golang.org/grpc/resolver"

	"github.com/svckit/svckit/framework/naming"
)

func TestParseKey(t *testing.T) {
	for _, tc := range []struct {
		name, prefix, key string
		wantService       string
		wantAddr          string
		wantErr           string // a fragment of the error; "" for none
	}{
		{"svckit key", "services/", "services/fileserver/127.0.0.1:50051", "fileserver", "127.0.0.1:50051", ""},
		{"ipv6", "services/", "services/fs/[::1]:443", "fs", "[::1]:443", ""},
		{"hostname", "services/", "services/fs/fs-0.fs.svc:443", "fs", "fs-0.fs.svc:443", ""},
		{"sibling service is its own", "services/", "services/svc-a-admin/127.0.0.1:1", "svc-a-admin", "127.0.0.1:1", ""},
		{"empty prefix", "", "fs/127.0.0.1:1", "fs", "127.0.0.1:1", ""},
		{"nested prefix", "prod/services/", "prod/services/fs/127.0.0.1:1", "fs", "127.0.0.1:1", ""},

		{"prefix without slash", "services", "services/fs/127.0.0.1:1", "", "", "must end in '/'"},
		{"wrong prefix", "services/", "other/fs/127.0.0.1:1", "", "", "not under prefix"},
		{"sibling prefix", "services/", "services-old/fs/127.0.0.1:1", "", "", "not under prefix"},
		{"prefix alone", "services/", "services/", "", "", "no service"},
		{"empty service", "services/", "services//127.0.0.1:1", "", "", "no service"},
		{"service alone", "services/", "services/fs", "", "", "no address"},
		{"empty address", "services/", "services/fs/", "", "", "no address"},
		{"nested slash", "services/", "services/fs/v2/127.0.0.1:1", "", "", "not one address"},
		{"trailing slash", "services/", "services/fs/127.0.0.1:1/", "", "", "not one address"},
		{"empty prefix, longer key", "", "services/fs/127.0.0.1:1", "", "", "not one address"},
		{"bad service", "services/", "services/-fs/127.0.0.1:1", "", "", "character '-' not allowed"},
		{"address without port", "services/", "services/fs/instance-2", "", "", "missing port"},
		{"unspecified address", "services/", "services/fs/0.0.0.0:1", "", "", "unspecified"},
		{"port 0", "services/", "services/fs/127.0.0.1:0", "", "", "port must be"},
		{"space in host", "services/", "services/fs/a b:1", "", "", "bad host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc, addr, err := naming.ParseKey(tc.prefix, tc.key)
			if tc.wantErr != "" {
				if !errors.Is(err, naming.ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseKey(%q, %q): have %v, want an error wrapping ErrInvalid with %q", tc.prefix, tc.key, err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.key) {
					t.Errorf("error %q does not name the key", err)
				}
				if svc != "" || addr != "" {
					t.Errorf("on error: have %q, %q, want empty results", svc, addr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseKey(%q, %q): have %v, want nil", tc.prefix, tc.key, err)
			}
			if svc != tc.wantService || addr != tc.wantAddr {
				t.Fatalf("ParseKey(%q, %q): have %q, %q, want %q, %q", tc.prefix, tc.key, svc, addr, tc.wantService, tc.wantAddr)
			}
		})
	}
}

// FuzzParseKey checks that ParseKey inverts Key for every valid service and
// address, and that whatever it accepts re-encodes to the same key.
func FuzzParseKey(f *testing.F) {
	for _, s := range [][4]string{
		{"services/", "fileserver", "127.0.0.1:50051", "services/fileserver/127.0.0.1:50051"},
		{"services/", "svc-a", "[::1]:443", "services/svc-a-admin/127.0.0.1:1"},
		{"", "fs", "h:1", "fs/h:1"},
		{"prod/services/", "fs", "h:1", "services/fs/h:1"},
		{"services", "fs", "h:1", "servicesfs/h:1"},
		{"services/", "fs", "h:0", "services//h:1"},
		{"services/", "fs", "0.0.0.0:1", "services/fs/"},
		{"services/", "a/b", "h:1/x", "services/fs/v2/h:1"},
		{"services/", "-x", ":80", "services/fs/instance-2"},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	f.Fuzz(func(t *testing.T, prefix, service, addr, key string) {
		if naming.ValidatePrefix(prefix) == nil && naming.ValidateService(service) == nil && naming.ValidateAddr(addr) == nil {
			k := naming.Key(prefix, service, addr)
			svc, a, err := naming.ParseKey(prefix, k)
			if err != nil || svc != service || a != addr {
				t.Fatalf("ParseKey(%q, Key(%q, %q, %q)) = %q, %q, %v", prefix, prefix, service, addr, svc, a, err)
			}
			if sib := service + "-admin"; naming.ValidateService(sib) == nil {
				if svc, _, err := naming.ParseKey(prefix, naming.Key(prefix, sib, addr)); err != nil || svc != sib {
					t.Fatalf("sibling %q parsed as %q, %v", sib, svc, err)
				}
			}
		}
		svc, a, err := naming.ParseKey(prefix, key)
		if err != nil {
			if !errors.Is(err, naming.ErrInvalid) {
				t.Fatalf("ParseKey(%q, %q): error %v does not wrap ErrInvalid", prefix, key, err)
			}
			if svc != "" || a != "" {
				t.Fatalf("ParseKey(%q, %q): error %v with results %q, %q", prefix, key, err, svc, a)
			}
			return
		}
		if k := naming.Key(prefix, svc, a); k != key {
			t.Fatalf("ParseKey(%q, %q) = %q, %q, which re-encode to %q", prefix, key, svc, a, k)
		}
		if err := naming.ValidatePrefix(prefix); err != nil {
			t.Fatalf("ParseKey(%q, %q) accepted an invalid prefix: %v", prefix, key, err)
		}
		if err := naming.ValidateService(svc); err != nil {
			t.Fatalf("ParseKey(%q, %q) returned an invalid service: %v", prefix, key, err)
		}
		if err := naming.ValidateAddr(a); err != nil {
			t.Fatalf("ParseKey(%q, %q) returned an invalid address: %v", prefix, key, err)
		}
	})
}

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		target string
		want   string // "" for an error
	}{
		{"etcd:///services/fileserver", "services/fileserver/"},
		{"etcd:///services/fileserver/", "services/fileserver/"},
		{"etcd:///fileserver", "fileserver/"},
		{"etcd://authority/services/fs", "services/fs/"},
		{"etcd:services/fs", "services/fs/"},
		{"etcd:///prod/services/fs", "prod/services/fs/"},
		{"etcd:///", ""},
		{"etcd:////", ""},
		{"etcd://authority", ""},
	} {
		u, err := url.Parse(tc.target)
		if err != nil {
			t.Fatalf("url %q: %v", tc.target, err)
		}
		have, err := naming.ParseTarget(resolver.Target{URL: *u})
		if tc.want == "" {
			if !errors.Is(err, naming.ErrInvalid) {
				t.Errorf("ParseTarget(%q): have %q, %v, want an error wrapping ErrInvalid", tc.target, have, err)
			}
			continue
		}
		if err != nil || have != tc.want {
			t.Errorf("ParseTarget(%q): have %q, %v, want %q", tc.target, have, err, tc.want)
		}
	}
}

// FuzzParseTarget checks that a target's watched prefix is a clean key
// prefix, and that for a target naming a valid prefix and service it holds
// exactly the keys Key writes for that service.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{
		"etcd:///services/fileserver", "etcd:///services/fileserver/", "etcd:///fs", "etcd://a/services/fs",
		"etcd:services/fs", "etcd:///", "etcd:////", "etcd://a", "etcd:///a//b", "etcd:///%2F", "etcd:///a%2Fb",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		u, err := url.Parse(target)
		if err != nil {
			return // gRPC refuses it before any resolver sees it.
		}
		prefix, err := naming.ParseTarget(resolver.Target{URL: *u})
		if err != nil {
			if !errors.Is(err, naming.ErrInvalid) {
				t.Fatalf("ParseTarget(%q): error %v does not wrap ErrInvalid", target, err)
			}
			return
		}
		if len(prefix) < 2 || !strings.HasSuffix(prefix, "/") || strings.HasPrefix(prefix, "/") || strings.HasSuffix(prefix, "//") {
			t.Fatalf("ParseTarget(%q) = %q, want a non-empty path and one trailing '/'", target, prefix)
		}
		// <keyPrefix><service>/ as Dial writes it.
		path := strings.TrimSuffix(prefix, "/")
		i := strings.LastIndex(path, "/")
		keyPrefix, service := path[:i+1], path[i+1:]
		if naming.ValidatePrefix(keyPrefix) != nil || naming.ValidateService(service) != nil {
			return
		}
		const addr = "127.0.0.1:1"
		if k := naming.Key(keyPrefix, service, addr); !strings.HasPrefix(k, prefix) {
			t.Fatalf("ParseTarget(%q) = %q does not hold key %q", target, prefix, k)
		}
		if sib := naming.Key(keyPrefix, service+"-admin", addr); strings.HasPrefix(sib, prefix) {
			t.Fatalf("ParseTarget(%q) = %q holds sibling key %q", target, prefix, sib)
		}
		if svc, a, err := naming.ParseKey(keyPrefix, prefix+addr); err != nil || svc != service || a != addr {
			t.Fatalf("ParseKey(%q, %q) = %q, %q, %v, want %q, %q", keyPrefix, prefix+addr, svc, a, err, service, addr)
		}
	})
}

func TestServiceOfKey(t *testing.T) {
	for key, want := range map[string]string{
		"services/fs/127.0.0.1:1":       "fs",
		"services/interop-b/instance-2": "interop-b", // endpoints.Manager's free-form key
		"services/fs/v2/127.0.0.1:1":    "fs",
		"services/fs-admin/127.0.0.1:1": "fs-admin",
		"services/fs/":                  "",
		"services/fs":                   "",
		"services//127.0.0.1:1":         "",
		"services/Bad Name/127.0.0.1:1": "",
		"other/fs/127.0.0.1:1":          "",
	} {
		svc, err := naming.ServiceOfKey("services/", key)
		if svc != want || (want == "") != (err != nil) {
			t.Errorf("ServiceOfKey(%q) = %q, %v; want %q", key, svc, err, want)
		}
		if err != nil && !errors.Is(err, naming.ErrInvalid) {
			t.Errorf("ServiceOfKey(%q): %v does not wrap ErrInvalid", key, err)
		}
	}
}
