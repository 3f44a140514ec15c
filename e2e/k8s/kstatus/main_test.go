package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// cluster is a PostgresCluster as `kubectl get postgrescluster NAME -o json`
// prints it, with the given metadata/status additions (raw JSON fragments).
func cluster(generation, observedGeneration int, extraMeta, conditions string) string {
	meta := `"name":"pg","namespace":"db","uid":"0b6f8a0e-1f1c-4f5e-9d55-5c1b7f4a2a10","generation":` + itoa(generation)
	if extraMeta != "" {
		meta += "," + extraMeta
	}
	return `{
  "apiVersion": "pgmetal.io/v1alpha1",
  "kind": "PostgresCluster",
  "metadata": {` + meta + `},
  "spec": {"postgresVersion": 17, "hosts": [{"name": "db1"}]},
  "status": {"observedGeneration": ` + itoa(observedGeneration) + `, "conditions": [` + conditions + `]}
}`
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func cond(typ, st, reason, msg string) string {
	b, _ := json.Marshal(map[string]interface{}{
		"type": typ, "status": st, "reason": reason, "message": msg,
		"lastTransitionTime": "2025-01-01T00:00:00Z", "observedGeneration": 2,
	})
	return string(b)
}

// settled: the conditions of a converged cluster.
var settled = strings.Join([]string{
	cond("Ready", "True", "Converged", "all members healthy"),
	cond("Progressing", "False", "Converged", "nothing to do"),
	cond("Degraded", "False", "Healthy", "no problem"),
	cond("Reconciling", "False", "Converged", "nothing to do"),
	cond("Stalled", "False", "Healthy", "no problem"),
}, ",")

func TestPostgresCluster(t *testing.T) {
	cases := []struct {
		name, in, status, msgHas string
	}{
		{"generation not observed",
			cluster(2, 1, "", settled),
			"InProgress", "PostgresCluster generation is 2, but latest observed generation is 1"},
		{"Reconciling=True",
			cluster(2, 2, "", strings.Join([]string{
				cond("Ready", "False", "Converging", "converging"),
				cond("Reconciling", "True", "Converging", "installing patroni on db1"),
				cond("Stalled", "False", "Healthy", ""),
			}, ",")),
			"InProgress", "installing patroni on db1"},
		{"Stalled=True",
			cluster(2, 2, "", strings.Join([]string{
				cond("Ready", "False", "SshSecretMissing", "no secret"),
				cond("Reconciling", "False", "Stalled", "stalled"),
				cond("Stalled", "True", "SshSecretMissing", "Secret db/ssh not found"),
			}, ",")),
			"Failed", "Secret db/ssh not found"},
		{"settled",
			cluster(2, 2, "", settled),
			"Current", ""},
		{"Reconciling=False, Stalled=False, no Ready condition",
			cluster(3, 3, "", strings.Join([]string{
				cond("Reconciling", "False", "Converged", ""),
				cond("Stalled", "False", "Healthy", ""),
			}, ",")),
			"Current", ""},
		// kstatus falls back to the Ready condition when neither Reconciling nor
		// Stalled is True: Ready=False alone reads as InProgress.
		{"Ready=False, Reconciling=False, Stalled=False",
			cluster(2, 2, "", strings.Join([]string{
				cond("Ready", "False", "MemberDown", "db2 is down"),
				cond("Reconciling", "False", "Converged", ""),
				cond("Stalled", "False", "Healthy", ""),
			}, ",")),
			"InProgress", "db2 is down"},
		{"deletionTimestamp set",
			cluster(2, 1, `"deletionTimestamp":"2025-01-01T00:00:00Z","finalizers":["pgmetal.io/cleanup"]`, settled),
			"Terminating", "Resource scheduled for deletion"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(nil, strings.NewReader(c.in), &out, &errOut)
			if code != 0 {
				t.Fatalf("exit %d, stderr %q", code, errOut.String())
			}
			if errOut.Len() != 0 {
				t.Errorf("stderr %q, want empty", errOut.String())
			}
			line := out.String()
			if strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") {
				t.Errorf("stdout %q is not one line", line)
			}
			var got result
			dec := json.NewDecoder(strings.NewReader(line))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&got); err != nil {
				t.Fatalf("stdout %q: %v", line, err)
			}
			if got.Status != c.status {
				t.Errorf("status %q (message %q), want %q", got.Status, got.Message, c.status)
			}
			if !strings.Contains(got.Message, c.msgHas) {
				t.Errorf("message %q does not contain %q", got.Message, c.msgHas)
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	good := cluster(1, 1, "", settled)
	cases := []struct {
		name   string
		args   []string
		in     string
		errHas string
	}{
		{"argument", []string{"pg"}, good, "usage"},
		{"empty", nil, "", "no input"},
		{"blank", nil, " \n\t", "no input"},
		{"not JSON", nil, "kind: PostgresCluster\n", "not JSON"},
		{"truncated", nil, good[:len(good)/2], "not JSON"},
		{"array", nil, "[" + good + "]", "not a JSON object"},
		{"string", nil, `"PostgresCluster"`, "not a JSON object"},
		{"two objects", nil, good + "\n" + good, "more than one JSON value"},
		{"List", nil, `{"apiVersion":"v1","kind":"List","metadata":{},"items":[` + good + `]}`, "got a List of 1 items"},
		{"no kind", nil, `{"metadata":{"name":"x"}}`, "no kind"},
		{"observedGeneration a string", nil, strings.Replace(good, `"observedGeneration": 1`, `"observedGeneration": "1"`, 1), "status.observedGeneration"},
		{"generation a fraction", nil, strings.Replace(good, `"generation":1`, `"generation":1.5`, 1), "metadata.generation"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(c.args, strings.NewReader(c.in), &out, &errOut)
			if code != 2 {
				t.Errorf("exit %d, want 2 (stdout %q)", code, out.String())
			}
			if out.Len() != 0 {
				t.Errorf("stdout %q, want empty", out.String())
			}
			if !strings.Contains(errOut.String(), c.errHas) {
				t.Errorf("stderr %q does not contain %q", errOut.String(), c.errHas)
			}
		})
	}
}

// Integral numbers must reach kstatus as int64: decoded with encoding/json they
// would be float64 and the generation check would fail or be skipped.
func TestLargeGeneration(t *testing.T) {
	var out, errOut bytes.Buffer
	in := cluster(9007199254740993, 9007199254740992, "", settled)
	if code := run(nil, strings.NewReader(in), &out, &errOut); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
	if !strings.Contains(out.String(), `"status":"InProgress"`) ||
		!strings.Contains(out.String(), "generation is 9007199254740993, but latest observed generation is 9007199254740992") {
		t.Errorf("stdout %q", out.String())
	}
}
