// Command kstatus prints the kstatus of one Kubernetes object: the status that
// sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute gives it, which is what Flux's
// health checks and other kstatus-based tools (cli-utils' apply/wait, kpt) read.
// Argo CD does not use kstatus: it needs a health check of its own for a custom
// resource. pgmetal's operator end-to-end test pipes a PostgresCluster into it
// (`kubectl get postgrescluster NAME -o json | kstatus`) to assert that the
// operator's status conditions and observedGeneration read as intended.
//
// Input: exactly one JSON object on stdin, as printed by `kubectl get ... -o json`
// (not a List). Output: one line of JSON on stdout,
//
//	{"status":"InProgress","message":"..."}
//
// where status is one of InProgress, Current, Failed, Terminating, NotFound,
// Unknown. Exit code 0 on success; 2 with a message on stderr on bad input
// (arguments given, no JSON, not one object, a List, fields of the wrong type).
//
// Built by `e2e/lab-k8s build` into the lab's binary cache, beside helm.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

// result is the line printed on stdout.
type result struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is main without the process: the exit code it returns is main's.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintln(stderr, "usage: kubectl get KIND NAME -o json | kstatus")
		fmt.Fprintln(stderr, "prints {\"status\":...,\"message\":...} as computed by sigs.k8s.io/cli-utils kstatus")
		return 2
	}
	res, err := compute(stdin)
	if err != nil {
		fmt.Fprintf(stderr, "kstatus: %v\n", err)
		return 2
	}
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(res); err != nil {
		fmt.Fprintf(stderr, "kstatus: writing the result: %v\n", err)
		return 1
	}
	return 0
}

// compute reads one object from r and runs kstatus on it.
func compute(r io.Reader) (result, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return result{}, fmt.Errorf("reading stdin: %w", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return result{}, errors.New("no input: expected one JSON object on stdin")
	}
	// Exactly one JSON value, and it must be an object.
	dec := json.NewDecoder(bytes.NewReader(data))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return result{}, fmt.Errorf("stdin is not JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return result{}, errors.New("stdin holds more than one JSON value: expected one object")
	}
	if raw[0] != '{' {
		return result{}, errors.New("stdin is not a JSON object")
	}
	// apimachinery's json turns integral numbers into int64, as unstructured
	// objects need them: with encoding/json, metadata.generation would be a
	// float64 and kstatus could not read it.
	m := map[string]interface{}{}
	if err := utiljson.Unmarshal(raw, &m); err != nil {
		return result{}, fmt.Errorf("stdin is not a JSON object: %w", err)
	}
	u := &unstructured.Unstructured{Object: m}
	if items, isList := m["items"]; isList && strings.HasSuffix(u.GetKind(), "List") {
		n := 0
		if s, ok := items.([]interface{}); ok {
			n = len(s)
		}
		return result{}, fmt.Errorf("got a %s of %d items: expected one object (kubectl get KIND NAME -o json)", u.GetKind(), n)
	}
	if u.GetKind() == "" {
		return result{}, errors.New("the object has no kind")
	}
	res, err := status.Compute(u)
	if err != nil {
		return result{}, fmt.Errorf("kstatus cannot read the %s: %w", u.GetKind(), err)
	}
	return result{Status: res.Status.String(), Message: res.Message}, nil
}
