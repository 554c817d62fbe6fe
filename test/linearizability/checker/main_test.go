package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(t *testing.T, stdin string, args ...string) (code int, report Report, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, strings.NewReader(stdin), &out, &errOut)
	if out.Len() > 0 {
		if err := json.Unmarshal(out.Bytes(), &report); err != nil {
			t.Fatalf("stdout is not a report: %v\n%s", err, out.String())
		}
	}
	return code, report, errOut.String()
}

// The checker is only worth something if the bad histories fail: each file in
// not-linearizable/ is one anomaly a broken replication layer produces.
func TestHistoryFiles(t *testing.T) {
	for _, dir := range []struct {
		name string
		code int
		ok   bool
	}{{"linearizable", exitOk, true}, {"not-linearizable", exitIllegal, false}} {
		paths, err := filepath.Glob(filepath.Join("testdata", dir.name, "*.json"))
		if err != nil || len(paths) == 0 {
			t.Fatalf("no histories in testdata/%s: %v", dir.name, err)
		}
		for _, path := range paths {
			path := path
			t.Run(dir.name+"/"+strings.TrimSuffix(filepath.Base(path), ".json"), func(t *testing.T) {
				code, report, stderr := runCLI(t, "", path)
				if code != dir.code || report.Ok != dir.ok {
					t.Fatalf("exit %d, report %+v; want exit %d\n%s", code, report, dir.code, stderr)
				}
			})
		}
	}
}

func TestReportCountsOperationsAndKeysAndReadsStdin(t *testing.T) {
	history, err := os.ReadFile("testdata/linearizable/unknown-write-not-applied.json")
	if err != nil {
		t.Fatal(err)
	}
	code, report, stderr := runCLI(t, string(history), "-timeout", "5s")
	want := Report{Ok: true, Operations: 7, Partitions: 2, Result: "Ok", TimeoutMs: 5000}
	if code != exitOk || report != want {
		t.Fatalf("exit %d, report %+v; want %+v\n%s", code, report, want, stderr)
	}
	if !strings.Contains(stderr, "1 gets with unknown outcome dropped") {
		t.Errorf("stderr does not mention the dropped get: %s", stderr)
	}
}

func TestIllegalNamesKeysAndWritesVisualization(t *testing.T) {
	history := `{"operations": [
		{"clientId": 0, "kind": "put", "key": "good", "value": "a", "call": 0, "return": 10, "output": {"ok": true}},
		{"clientId": 1, "kind": "get", "key": "good", "call": 20, "return": 30, "output": {"value": "a"}},
		{"clientId": 0, "kind": "put", "key": "bad", "value": "a", "call": 0, "return": 10, "output": {"ok": true}},
		{"clientId": 1, "kind": "get", "key": "bad", "call": 20, "return": 30, "output": {"value": null}}
	]}`
	viz := filepath.Join(t.TempDir(), "viz.html")
	code, report, stderr := runCLI(t, history, "-viz", viz)
	if code != exitIllegal || report.Result != "Illegal" || report.Partitions != 2 {
		t.Fatalf("exit %d, report %+v\n%s", code, report, stderr)
	}
	if !strings.Contains(stderr, "not linearizable on keys: bad\n") {
		t.Errorf("stderr does not name exactly the key at fault: %s", stderr)
	}
	html, err := os.ReadFile(viz)
	if err != nil || !bytes.Contains(html, []byte(`get(\"bad\") -\u003e null`)) {
		t.Errorf("visualization missing or without the operation: %v", err)
	}
}

func TestBadInputExitsTwoNamingTheField(t *testing.T) {
	put := `{"clientId": 0, "kind": "put", "key": "k", "value": "v", "call": 0, "return": 1, "output": {"ok": true}}`
	for _, tc := range []struct{ name, history, want string }{
		{"not JSON", `{"operations": [`, "history: unexpected end of JSON input"},
		{"no operations", `{}`, "operations: missing"},
		{"unknown kind", `{"operations": [` + put + `, {"clientId": 0, "kind": "pt", "key": "k", "call": 0, "return": 1, "output": {"ok": true}}]}`,
			`operations[1].kind: unknown kind "pt"`},
		{"unknown field", `{"operations": [{"clientId": 0, "kind": "get", "key": "k", "call": 0, "retrun": 1, "output": {"value": null}}]}`,
			`operations[0]: json: unknown field "retrun"`},
		{"put without value", `{"operations": [{"clientId": 0, "kind": "put", "key": "k", "call": 0, "return": 1, "output": {"ok": true}}]}`,
			"operations[0].value: missing"},
		{"cas without expected", `{"operations": [{"clientId": 0, "kind": "cas", "key": "k", "value": "v", "call": 0, "return": 1, "output": {"ok": true}}]}`,
			"operations[0].expected: missing (use null for absent)"},
		{"fractional time", `{"operations": [{"clientId": 0, "kind": "get", "key": "k", "call": 0.5, "return": 1, "output": {"value": null}}]}`,
			"operations[0].call: want a non-negative integer, got 0.5"},
		{"return before call", `{"operations": [{"clientId": 0, "kind": "get", "key": "k", "call": 5, "return": 1, "output": {"value": null}}]}`,
			"operations[0].return: 1 is before call 5"},
		{"known outcome without return", `{"operations": [{"clientId": 0, "kind": "get", "key": "k", "call": 5, "return": null, "output": {"value": null}}]}`,
			"operations[0].return: want a non-negative integer, got null"},
		{"missing output", `{"operations": [{"clientId": 0, "kind": "get", "key": "k", "call": 5, "return": 6}]}`,
			"operations[0].output: missing (use null for an unknown outcome)"},
		{"failed put", `{"operations": [{"clientId": 0, "kind": "put", "key": "k", "value": "v", "call": 0, "return": 1, "output": {"ok": false}}]}`,
			"operations[0].output.ok: put must be ok: true"},
		{"cas without ok", `{"operations": [{"clientId": 0, "kind": "cas", "key": "k", "value": "v", "expected": null, "call": 0, "return": 1, "output": {}}]}`,
			"operations[0].output.ok: missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, tc.history)
			if code != exitBadInput || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want exit 2 and %q", code, stderr, tc.want)
			}
		})
	}
}

func TestBadUsageExitsTwo(t *testing.T) {
	for _, args := range [][]string{{"-timeout", "soon"}, {"a.json", "b.json"}, {"testdata/does-not-exist.json"}} {
		if code, _, stderr := runCLI(t, "", args...); code != exitBadInput {
			t.Errorf("%v: exit %d; want 2\n%s", args, code, stderr)
		}
	}
}

// Proving this history illegal means trying every order of 24 concurrent puts, far more
// than fits in 100ms, so the verdict is Unknown and the exit code 3.
func TestTimeoutExitsThreeWithUnknown(t *testing.T) {
	var ops []string
	for i := 0; i < 24; i++ {
		ops = append(ops, fmt.Sprintf(`{"clientId": %d, "kind": "put", "key": "k", "value": "v%d", "call": 0, "return": 100, "output": {"ok": true}}`, i, i))
	}
	ops = append(ops, `{"clientId": 0, "kind": "get", "key": "k", "call": 200, "return": 300, "output": {"value": "never written"}}`)
	history := `{"operations": [` + strings.Join(ops, ",") + `]}`
	code, report, stderr := runCLI(t, history, "-timeout", "100ms")
	want := Report{Ok: false, Operations: 25, Partitions: 1, Result: "Unknown", TimeoutMs: 100}
	if code != exitTimeout || report != want {
		t.Fatalf("exit %d, report %+v; want %+v\n%s", code, report, want, stderr)
	}
}

// simulatedHistory runs clients against an atomic store in which every operation takes effect
// at one instant between its call and its return, so the history it records is linearizable
// by construction. Some writes take effect but are recorded as unknown, some are recorded as
// unknown and never take effect, and some gets fail and are recorded as unknown.
func simulatedHistory(rng *rand.Rand) []map[string]interface{} {
	store := map[string]string{}
	values := 0
	var ops []map[string]interface{}
	now := int64(0)
	for i := 0; i < 300; i++ {
		now += rng.Int63n(5)
		call := now
		effect := call + 1 + rng.Int63n(40)
		ret := effect + 1 + rng.Int63n(40)
		key := fmt.Sprintf("vm-%d", rng.Intn(3))
		op := map[string]interface{}{"clientId": i % 8, "key": key, "call": call, "return": ret}
		values++
		value := fmt.Sprintf("v%d", values)
		current, present := store[key]
		var output map[string]interface{}
		switch rng.Intn(4) {
		case 0:
			op["kind"], op["value"] = "put", value
			store[key] = value
			output = map[string]interface{}{"ok": true}
		case 1:
			op["kind"] = "get"
			if present {
				output = map[string]interface{}{"value": current}
			} else {
				output = map[string]interface{}{"value": nil}
			}
		case 2:
			op["kind"], op["value"] = "cas", value
			if rng.Intn(2) == 0 && present {
				op["expected"] = current
			} else if rng.Intn(2) == 0 {
				op["expected"] = nil
			} else {
				op["expected"] = "v0"
			}
			swaps := (op["expected"] == nil && !present) || (present && op["expected"] == current)
			if swaps {
				store[key] = value
			}
			output = map[string]interface{}{"ok": swaps}
		case 3:
			op["kind"] = "delete"
			delete(store, key)
			output = map[string]interface{}{"ok": true}
		}
		op["output"] = output
		if rng.Intn(10) == 0 {
			op["output"], op["return"] = nil, nil
		}
		ops = append(ops, op)
		now = effect
	}
	// Unknown writes that never took effect.
	for i := 0; i < 10; i++ {
		ops = append(ops, map[string]interface{}{
			"clientId": 8, "kind": "put", "key": fmt.Sprintf("vm-%d", rng.Intn(3)), "value": "lost",
			"call": rng.Int63n(now), "return": nil, "output": nil,
		})
	}
	return ops
}

func TestSimulatedHistories(t *testing.T) {
	for seed := int64(1); seed <= 20; seed++ {
		ops := simulatedHistory(rand.New(rand.NewSource(seed)))
		doc, err := json.Marshal(map[string]interface{}{"operations": ops})
		if err != nil {
			t.Fatal(err)
		}
		if code, report, stderr := runCLI(t, string(doc)); code != exitOk {
			t.Fatalf("seed %d: linearizable history: exit %d, report %+v\n%s", seed, code, report, stderr)
		}

		// One read that reports a value nobody wrote must make it illegal.
		for _, op := range ops {
			if op["kind"] == "get" && op["output"] != nil {
				op["output"] = map[string]interface{}{"value": "phantom"}
				break
			}
		}
		doc, err = json.Marshal(map[string]interface{}{"operations": ops})
		if err != nil {
			t.Fatal(err)
		}
		if code, report, stderr := runCLI(t, string(doc)); code != exitIllegal {
			t.Fatalf("seed %d: history with a phantom read: exit %d, report %+v\n%s", seed, code, report, stderr)
		}
	}
}
