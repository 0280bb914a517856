// Package api holds the protobuf definitions of package tempo.fastpay.v1
// (api/proto) and their generated Go code (api/fastpayv1).
//
// Regenerate after editing a .proto file (tools come from the Go module proxy):
//
//	go install github.com/bufbuild/buf/cmd/buf@v1.75.0
//	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//	go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
//	go generate ./api/
package api

//go:generate sh -c "cd .. && buf generate"
