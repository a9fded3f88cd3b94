package naming

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DefaultPrefix is the etcd key prefix under which services register.
const DefaultPrefix = "services/"

const (
	// MaxRecordBytes bounds an encoded record. The Registrar refuses larger
	// metadata; the resolver skips larger values as malformed.
	MaxRecordBytes = 8 << 10
	// maxNameLen bounds a service name (a DNS name's limit).
	maxNameLen = 253
	// maxWeight bounds Metadata.Weight.
	maxWeight = 1_000_000
)

// ErrInvalid is wrapped by every error about an invalid service name,
// address, prefix, metadata or record.
var ErrInvalid = errors.New("invalid")

// Metadata is what an instance publishes about itself beside its address. It
// holds what balancers and operators need, never secrets.
type Metadata struct {
	// InstanceID tells instances apart across restarts on the same address.
	InstanceID string `json:"instance_id,omitempty"`
	// Version is the build version of the instance.
	Version string `json:"version,omitempty"`
	// Zone is the failure domain (e.g. a data centre zone) of the instance.
	Zone string `json:"zone,omitempty"`
	// Weight is the instance's relative capacity for weighted balancing; 0
	// means the default weight, 1.
	Weight uint32 `json:"weight,omitempty"`
	// StartTime is when the instance started.
	StartTime time.Time `json:"start_time,omitzero"`
	// Services lists the full names of the gRPC services the instance serves.
	Services []string `json:"services,omitempty"`
	// Labels are free-form operator labels. Keys that look like secrets
	// (password, token, …) are refused.
	Labels map[string]string `json:"labels,omitempty"`
}

// Equal reports whether o is a Metadata equal to m. gRPC compares attribute
// values with it; Metadata holds a slice and a map, so == would panic.
func (m Metadata) Equal(o any) bool {
	om, ok := o.(Metadata)
	if !ok {
		return false
	}
	return m.InstanceID == om.InstanceID && m.Version == om.Version && m.Zone == om.Zone &&
		m.Weight == om.Weight && m.StartTime.Equal(om.StartTime) &&
		slices.Equal(m.Services, om.Services) && maps.Equal(m.Labels, om.Labels)
}

// Record is one instance's registration: the value stored at
// <prefix><service>/<addr>, in the JSON of etcd's naming/endpoints package:
// {"Op":0,"Addr":"127.0.0.1:50051","Metadata":{…}}.
type Record struct {
	Addr     string
	Metadata Metadata
}

// wireRecord is the JSON layout of etcd's internal endpoints.Update.
type wireRecord struct {
	Op       uint8
	Addr     string
	Metadata json.RawMessage `json:",omitempty"`
}

// fastRecord decodes a record whose metadata is an object in one pass.
type fastRecord struct {
	Op       uint8
	Addr     string
	Metadata Metadata
}

// Key returns the etcd key of an instance of service at addr:
// <prefix><service>/<addr>. ParseKey is its inverse.
func Key(prefix, service, addr string) string {
	return prefix + service + "/" + addr
}

// ParseKey splits a key written by Key under prefix into its service and
// address: ParseKey("services/", "services/fileserver/127.0.0.1:50051")
// returns "fileserver" and "127.0.0.1:50051". It refuses an invalid prefix,
// a key outside prefix, a key without a service or an address, an address
// holding a further '/', and a service or address that ValidateService or
// ValidateAddr refuses. Every error wraps ErrInvalid.
//
// A service name holds no '/', so a key of a sibling service such as
// "services/fileserver-admin/…" never parses as "fileserver".
func ParseKey(prefix, key string) (service, addr string, err error) {
	if err := checkPrefix(prefix); err != nil {
		return "", "", fmt.Errorf("naming: key %q: %w", key, err)
	}
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return "", "", fmt.Errorf("naming: key %q is not under prefix %q: %w", key, prefix, ErrInvalid)
	}
	service, addr, ok = strings.Cut(rest, "/")
	switch {
	case service == "":
		return "", "", fmt.Errorf("naming: key %q names no service after prefix %q: %w", key, prefix, ErrInvalid)
	case !ok || addr == "":
		return "", "", fmt.Errorf("naming: key %q names no address after service %q: %w", key, service, ErrInvalid)
	case strings.Contains(addr, "/"):
		return "", "", fmt.Errorf("naming: key %q: %q after service %q is not one address (keys are <prefix><service>/<addr>): %w",
			key, addr, service, ErrInvalid)
	}
	if err := checkService(service); err != nil {
		return "", "", fmt.Errorf("naming: key %q: %w", key, err)
	}
	if err := checkAddr(addr); err != nil {
		return "", "", fmt.Errorf("naming: key %q: %w", key, err)
	}
	return service, addr, nil
}

// ServiceOfKey returns the service of a record's key under prefix. Keys
// svckit writes are <prefix><service>/<addr>; keys written by etcd's
// endpoints.Manager may end in any name (the record holds the address), so
// only the service part must be valid, and something must follow it. Every
// error wraps ErrInvalid.
func ServiceOfKey(prefix, key string) (string, error) {
	svc, _, err := ParseKey(prefix, key)
	if err == nil {
		return svc, nil
	}
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok || ValidatePrefix(prefix) != nil {
		return "", err
	}
	svc, name, _ := strings.Cut(rest, "/")
	if name == "" || ValidateService(svc) != nil {
		return "", err
	}
	return svc, nil
}

// Encode validates r and returns its JSON.
func (r Record) Encode() ([]byte, error) {
	if err := ValidateAddr(r.Addr); err != nil {
		return nil, err
	}
	if err := r.Metadata.validate(); err != nil {
		return nil, err
	}
	md, err := json.Marshal(r.Metadata)
	if err != nil {
		return nil, fmt.Errorf("naming: metadata: %w: %w", ErrInvalid, err)
	}
	b, err := json.Marshal(wireRecord{Op: 0, Addr: r.Addr, Metadata: md})
	if err != nil {
		return nil, fmt.Errorf("naming: record: %w: %w", ErrInvalid, err)
	}
	if len(b) > MaxRecordBytes {
		return nil, fmt.Errorf("naming: record of %d bytes exceeds %d: %w", len(b), MaxRecordBytes, ErrInvalid)
	}
	return b, nil
}

// DecodeRecord parses a record value. It accepts what etcd's endpoints.Manager
// writes, including metadata that is not an object (kept as no metadata), and
// refuses values that are not records: not JSON, too large, an operation
// other than Add, a missing or invalid address, or metadata fields of the
// wrong type.
func DecodeRecord(value []byte) (Record, error) {
	if len(value) > MaxRecordBytes {
		return Record{}, fmt.Errorf("naming: record of %d bytes exceeds %d: %w", len(value), MaxRecordBytes, ErrInvalid)
	}
	// Fast path: one pass for a record whose metadata is an object (or
	// absent), as svckit writes it.
	var f fastRecord
	if err := json.Unmarshal(value, &f); err == nil {
		if f.Op != 0 {
			return Record{}, fmt.Errorf("naming: record op %d is not Add: %w", f.Op, ErrInvalid)
		}
		if err := ValidateAddr(f.Addr); err != nil {
			return Record{}, err
		}
		if f.Metadata.Weight > maxWeight {
			return Record{}, fmt.Errorf("naming: record weight %d exceeds %d: %w", f.Metadata.Weight, maxWeight, ErrInvalid)
		}
		return Record{Addr: f.Addr, Metadata: f.Metadata}, nil
	}
	var w wireRecord
	if err := json.Unmarshal(value, &w); err != nil {
		return Record{}, fmt.Errorf("naming: record: %w: %w", ErrInvalid, err)
	}
	if w.Op != 0 {
		return Record{}, fmt.Errorf("naming: record op %d is not Add: %w", w.Op, ErrInvalid)
	}
	if err := ValidateAddr(w.Addr); err != nil {
		return Record{}, err
	}
	r := Record{Addr: w.Addr}
	if md := bytes.TrimSpace(w.Metadata); len(md) > 0 && md[0] == '{' {
		if err := json.Unmarshal(md, &r.Metadata); err != nil {
			return Record{}, fmt.Errorf("naming: record metadata: %w: %w", ErrInvalid, err)
		}
		if r.Metadata.Weight > maxWeight {
			return Record{}, fmt.Errorf("naming: record weight %d exceeds %d: %w", r.Metadata.Weight, maxWeight, ErrInvalid)
		}
	}
	return r, nil
}

// ValidateService reports whether name can name a service: 1 to 253
// characters of letters, digits, '.', '-' and '_', starting with a letter or
// digit.
func ValidateService(name string) error {
	if err := checkService(name); err != nil {
		return fmt.Errorf("naming: %w", err)
	}
	return nil
}

// ValidatePrefix reports whether prefix can prefix service keys: empty, or
// ending in '/'.
func ValidatePrefix(prefix string) error {
	if err := checkPrefix(prefix); err != nil {
		return fmt.Errorf("naming: %w", err)
	}
	return nil
}

// ValidateAddr reports whether addr is an address clients can dial: host:port
// with a port from 1 to 65535 and a host that is not empty and not an
// unspecified address such as 0.0.0.0.
func ValidateAddr(addr string) error {
	if err := checkAddr(addr); err != nil {
		return fmt.Errorf("naming: %w", err)
	}
	return nil
}

// checkService, checkPrefix and checkAddr are the validators without the
// package's "naming: " prefix, for callers that add their own context.

func checkService(name string) error {
	if name == "" {
		return fmt.Errorf("empty service name: %w", ErrInvalid)
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("service name of %d characters exceeds %d: %w", len(name), maxNameLen, ErrInvalid)
	}
	for i, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			i > 0 && (c == '.' || c == '-' || c == '_')
		if !ok {
			return fmt.Errorf("service name %q: character %q not allowed: %w", name, c, ErrInvalid)
		}
	}
	return nil
}

func checkPrefix(prefix string) error {
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		return fmt.Errorf("prefix %q must end in '/': %w", prefix, ErrInvalid)
	}
	return nil
}

func checkAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w: %w", addr, ErrInvalid, err)
	}
	if host == "" {
		return fmt.Errorf("address %q has no host: %w", addr, ErrInvalid)
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsUnspecified() {
		return fmt.Errorf("address %q is unspecified; advertise a reachable one: %w", addr, ErrInvalid)
	}
	if strings.ContainsAny(host, "/ \t\r\n\x00") {
		return fmt.Errorf("address %q: bad host: %w", addr, ErrInvalid)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return fmt.Errorf("address %q: port must be 1 to 65535: %w", addr, ErrInvalid)
	}
	return nil
}

// secretWords are label key fragments that suggest a secret.
func secretWords() []string {
	return []string{"password", "passwd", "secret", "token", "apikey", "api_key", "api-key", "credential", "private_key", "privatekey"}
}

func (m Metadata) validate() error {
	if m.Weight > maxWeight {
		return fmt.Errorf("naming: weight %d exceeds %d: %w", m.Weight, maxWeight, ErrInvalid)
	}
	for k := range m.Labels {
		lk := strings.ToLower(k)
		for _, w := range secretWords() {
			if strings.Contains(lk, w) {
				return fmt.Errorf("naming: label %q looks like a secret; records are readable by every client: %w", k, ErrInvalid)
			}
		}
	}
	return nil
}
