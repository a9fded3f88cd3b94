package naming

import (
	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/resolver"
)

// Attribute keys that the resolver sets on every resolver.Endpoint. Keys are
// plain strings so that balancers can read them without importing this
// package; every value is comparable.
const (
	// AttrWeight holds the instance weight as a uint32, at least 1.
	AttrWeight = "svckit.weight"
	// AttrZone holds the instance zone as a string.
	AttrZone = "svckit.zone"
	// AttrMetadata holds the whole Metadata (which implements Equal):
	// version, instance id, services, labels. Read it with MetadataOf.
	AttrMetadata = "svckit.metadata"
	// AttrKey holds the record's etcd key as a string: with ParseKey, the
	// service an endpoint belongs to when a resolver watches a whole
	// prefix (etcd:///services). Read it with KeyOf.
	AttrKey = "svckit.key"
)

// endpointOf builds the resolver endpoint of a record.
func endpointOf(key string, r Record) resolver.Endpoint {
	w := r.Metadata.Weight
	if w == 0 {
		w = 1
	}
	// Each WithValue copies the map: keep the set small.
	a := attributes.New(AttrWeight, w).
		WithValue(AttrZone, r.Metadata.Zone).
		WithValue(AttrMetadata, r.Metadata).
		WithValue(AttrKey, key)
	return resolver.Endpoint{Addresses: []resolver.Address{{Addr: r.Addr}}, Attributes: a}
}

// MetadataOf returns the metadata the resolver attached to ep.
func MetadataOf(ep resolver.Endpoint) (Metadata, bool) {
	md, ok := ep.Attributes.Value(AttrMetadata).(Metadata)
	return md, ok
}

// KeyOf returns the etcd key of the record ep was resolved from.
func KeyOf(ep resolver.Endpoint) (string, bool) {
	k, ok := ep.Attributes.Value(AttrKey).(string)
	return k, ok
}
