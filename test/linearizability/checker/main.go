// Command lincheck checks that a history recorded against the replicated key-value state of
// the control plane is linearizable, using porcupine with a key-value model partitioned by key.
//
// Usage:
//
//	lincheck [-timeout 60s] [-viz out.html] [history.json]
//
// The history is read from the named file, or from stdin when no file (or "-") is given:
//
//	{ "operations": [
//	    { "clientId": 0, "kind": "put", "key": "vm-1", "value": "a",
//	      "call": 100, "return": 250, "output": { "ok": true } },
//	    { "clientId": 1, "kind": "get", "key": "vm-1",
//	      "call": 120, "return": 300, "output": { "value": "a" } },
//	    { "clientId": 2, "kind": "cas", "key": "vm-1", "expected": null, "value": "b",
//	      "call": 130, "return": 310, "output": { "ok": false } },
//	    { "clientId": 0, "kind": "delete", "key": "vm-1",
//	      "call": 400, "return": null, "output": null }
//	] }
//
// Fields: clientId is a non-negative integer (a lane in the visualization). kind is put, get,
// cas or delete. put and cas need value (a string); cas needs expected (a string, or null for
// "the key must be absent"). call and return are non-negative integers in one unit (ns or ms)
// from one clock; intervals are closed, so equal timestamps count as concurrent.
//
// output is what the client was told: put and delete {"ok": true}; get {"value": "..."} or
// {"value": null} for an absent key; cas {"ok": true|false}. output null means the outcome is
// unknown (timeout, lost connection). Such a write may have taken effect at any time after its
// call, even after the client gave up, so its return time is taken as +infinity whatever was
// recorded; such a get observed nothing and is dropped.
//
// stdout gets one JSON object:
//
//	{"ok":true,"operations":4,"partitions":1,"result":"Ok","timeoutMs":60000}
//
// operations counts the operations checked (after dropping unknown gets). Exit codes: 0
// linearizable, 1 not linearizable (the keys at fault and the -viz file are named on stderr),
// 2 bad input or usage (stderr names the field, e.g. `operations[12].kind: unknown kind "pt"`),
// 3 the check timed out (result Unknown). -timeout 0 means no limit.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

const (
	exitOk       = 0
	exitIllegal  = 1
	exitBadInput = 2
	exitTimeout  = 3
)

// Report is the JSON object written to stdout.
type Report struct {
	Ok         bool                  `json:"ok"`
	Operations int                   `json:"operations"`
	Partitions int                   `json:"partitions"`
	Result     porcupine.CheckResult `json:"result"`
	TimeoutMs  int64                 `json:"timeoutMs"`
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("lincheck", flag.ContinueOnError)
	flags.SetOutput(stderr)
	timeout := flags.Duration("timeout", 60*time.Second, "give up after this long and report Unknown (0: no limit)")
	vizPath := flags.String("viz", "", "when the history is not linearizable, write porcupine's HTML visualization here")
	flags.Usage = func() {
		fmt.Fprintln(stderr, "usage: lincheck [-timeout 60s] [-viz out.html] [history.json]   (stdin when no file)")
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		return exitBadInput
	}
	if flags.NArg() > 1 || *timeout < 0 {
		flags.Usage()
		return exitBadInput
	}

	input := stdin
	source := "stdin"
	if path := flags.Arg(0); path != "" && path != "-" {
		f, err := os.Open(path)
		if err != nil {
			fmt.Fprintf(stderr, "lincheck: %v\n", err)
			return exitBadInput
		}
		defer f.Close()
		input, source = f, path
	}
	ops, dropped, err := ParseHistory(input)
	if err != nil {
		var inputErr *InputError
		if errors.As(err, &inputErr) {
			fmt.Fprintf(stderr, "lincheck: %s: %v\n", source, err)
		} else {
			fmt.Fprintf(stderr, "lincheck: %v\n", err)
		}
		return exitBadInput
	}

	partitions := kvModel.Partition(ops)
	started := time.Now()
	var result porcupine.CheckResult
	var info porcupine.LinearizationInfo
	if *vizPath != "" {
		result, info = porcupine.CheckOperationsVerbose(kvModel, ops, *timeout)
	} else {
		result = porcupine.CheckOperationsTimeout(kvModel, ops, *timeout)
	}
	elapsed := time.Since(started)

	report := Report{
		Ok:         result == porcupine.Ok,
		Operations: len(ops),
		Partitions: len(partitions),
		Result:     result,
		TimeoutMs:  timeout.Milliseconds(),
	}
	if err := json.NewEncoder(stdout).Encode(report); err != nil {
		fmt.Fprintf(stderr, "lincheck: writing report: %v\n", err)
	}

	summary := fmt.Sprintf("lincheck: %s: %d operations on %d keys", result, len(ops), len(partitions))
	if dropped > 0 {
		summary += fmt.Sprintf(" (%d gets with unknown outcome dropped)", dropped)
	}
	summary += fmt.Sprintf(", checked in %s", elapsed.Round(time.Millisecond))
	switch result {
	case porcupine.Ok:
		fmt.Fprintln(stderr, summary+": linearizable")
		return exitOk
	case porcupine.Unknown:
		fmt.Fprintf(stderr, "%s: no verdict within -timeout %s\n", summary, *timeout)
		return exitTimeout
	}
	fmt.Fprintln(stderr, summary+": NOT linearizable")
	if keys := illegalKeys(partitions, *timeout, elapsed); len(keys) > 0 {
		fmt.Fprintf(stderr, "lincheck: not linearizable on keys: %s\n", strings.Join(keys, ", "))
	}
	if *vizPath != "" {
		if err := porcupine.VisualizePath(kvModel, info, *vizPath); err != nil {
			fmt.Fprintf(stderr, "lincheck: writing visualization: %v\n", err)
		} else {
			fmt.Fprintf(stderr, "lincheck: visualization written to %s\n", *vizPath)
		}
	}
	return exitIllegal
}

// illegalKeys re-checks each key on its own, within what is left of the time budget, to tell
// the reader where to look: porcupine's verdict covers the whole history.
func illegalKeys(partitions [][]porcupine.Operation, timeout, used time.Duration) []string {
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout - used)
	}
	var keys []string
	for _, partition := range partitions {
		var left time.Duration // 0: no limit
		if timeout > 0 {
			if left = time.Until(deadline); left <= 0 {
				break
			}
		}
		if porcupine.CheckOperationsTimeout(kvModel, partition, left) == porcupine.Illegal {
			keys = append(keys, partition[0].Input.(Input).Key)
		}
	}
	sort.Strings(keys)
	return keys
}
