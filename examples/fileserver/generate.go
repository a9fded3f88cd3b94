// Package fileserver is FileSrv, svckit's example service: files under one
// root directory, served over gRPC by framework.App and used through
// framework.Dial, written go-kit style (service, endpoints, transport).
package fileserver

//go:generate go run ../../cmd/protogen -root proto fileserver/v1/fileserver.proto
