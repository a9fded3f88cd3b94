// Package fileserver is FileSrv, svckit's example service: files under one
// root directory, served over gRPC by framework.App and used through a
// client.Client, written go-kit style (service, endpoints, transport).
package fileserver

//go:generate go run ../../cmd/protogen -root proto fileserver/v1/fileserver.proto
