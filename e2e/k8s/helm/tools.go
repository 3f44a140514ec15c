//go:build tools

// Package tools pins the helm main package so that `go mod tidy` records
// every module it needs in go.mod and go.sum.
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
