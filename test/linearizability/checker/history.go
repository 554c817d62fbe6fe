package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"

	"github.com/anishathalye/porcupine"
)

// InputError is a history that does not follow the format; its message names the field.
type InputError struct{ msg string }

func (e *InputError) Error() string { return e.msg }

func inputErrorf(format string, args ...interface{}) error {
	return &InputError{msg: fmt.Sprintf(format, args...)}
}

// rawOperation keeps nullable fields as raw JSON so that a missing field and null differ.
type rawOperation struct {
	ClientID json.RawMessage `json:"clientId"`
	Kind     json.RawMessage `json:"kind"`
	Key      json.RawMessage `json:"key"`
	Value    json.RawMessage `json:"value"`
	Expected json.RawMessage `json:"expected"`
	Call     json.RawMessage `json:"call"`
	Return   json.RawMessage `json:"return"`
	Output   json.RawMessage `json:"output"`
}

type rawOutput struct {
	Ok    json.RawMessage `json:"ok"`
	Value json.RawMessage `json:"value"`
}

// ParseHistory reads a history document and turns it into porcupine operations. Unknown-outcome
// writes get Return = MaxInt64 (they may take effect at any time after their call); reads with
// an unknown outcome observed nothing and are dropped. dropped counts those reads.
func ParseHistory(r io.Reader) (ops []porcupine.Operation, dropped int, err error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, 0, fmt.Errorf("reading history: %w", err)
	}
	var doc struct {
		Operations *[]json.RawMessage `json:"operations"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, 0, inputErrorf("history: %v", err)
	}
	if doc.Operations == nil {
		return nil, 0, inputErrorf("operations: missing (expected an array)")
	}
	for i, raw := range *doc.Operations {
		op, keep, err := parseOperation(raw)
		if err != nil {
			return nil, 0, inputErrorf("operations[%d]%s", i, err.Error())
		}
		if keep {
			ops = append(ops, op)
		} else {
			dropped++
		}
	}
	return ops, dropped, nil
}

// parseOperation returns errors as ".field: problem" (or ": problem") for the caller to prefix.
func parseOperation(raw json.RawMessage) (porcupine.Operation, bool, error) {
	var r rawOperation
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return porcupine.Operation{}, false, fmt.Errorf(": %v", err)
	}

	clientID, err := integer("clientId", r.ClientID)
	if err != nil {
		return porcupine.Operation{}, false, err
	}
	if clientID > math.MaxInt32 {
		return porcupine.Operation{}, false, fmt.Errorf(".clientId: %d is too large", clientID)
	}
	kindText, err := str("kind", r.Kind)
	if err != nil {
		return porcupine.Operation{}, false, err
	}
	in := Input{Kind: Kind(kindText)}
	switch in.Kind {
	case KindPut, KindGet, KindCas, KindDelete:
	default:
		return porcupine.Operation{}, false, fmt.Errorf(".kind: unknown kind %q (want put, get, cas or delete)", kindText)
	}
	if in.Key, err = str("key", r.Key); err != nil {
		return porcupine.Operation{}, false, err
	}
	if in.Kind == KindPut || in.Kind == KindCas {
		v, err := str("value", r.Value)
		if err != nil {
			return porcupine.Operation{}, false, err
		}
		in.Value = Some(v)
	} else if r.Value != nil {
		return porcupine.Operation{}, false, fmt.Errorf(".value: %s takes no value", in.Kind)
	}
	if in.Kind == KindCas {
		if in.Expected, err = nullableStr("expected", r.Expected); err != nil {
			return porcupine.Operation{}, false, err
		}
	} else if r.Expected != nil {
		return porcupine.Operation{}, false, fmt.Errorf(".expected: only cas takes expected")
	}

	call, err := integer("call", r.Call)
	if err != nil {
		return porcupine.Operation{}, false, err
	}

	if r.Output == nil {
		return porcupine.Operation{}, false, fmt.Errorf(".output: missing (use null for an unknown outcome)")
	}
	if isNull(r.Output) {
		// The client gave up without learning the outcome. A write may still be applied later
		// (it can sit in the Raft log), so whatever return time was recorded is not an upper bound.
		if r.Return != nil && !isNull(r.Return) {
			if _, err := integer("return", r.Return); err != nil {
				return porcupine.Operation{}, false, err
			}
		}
		if in.Kind == KindGet {
			return porcupine.Operation{}, false, nil
		}
		return porcupine.Operation{
			ClientId: int(clientID), Input: in, Call: call,
			Output: Output{Unknown: true}, Return: math.MaxInt64,
		}, true, nil
	}

	ret, err := integer("return", r.Return)
	if err != nil {
		return porcupine.Operation{}, false, err
	}
	if ret < call {
		return porcupine.Operation{}, false, fmt.Errorf(".return: %d is before call %d", ret, call)
	}
	out, err := parseOutput(in.Kind, r.Output)
	if err != nil {
		return porcupine.Operation{}, false, err
	}
	return porcupine.Operation{ClientId: int(clientID), Input: in, Call: call, Output: out, Return: ret}, true, nil
}

func parseOutput(kind Kind, raw json.RawMessage) (Output, error) {
	var r rawOutput
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Output{}, fmt.Errorf(".output: %v", err)
	}
	var ok *bool
	if r.Ok != nil {
		var b bool
		if err := json.Unmarshal(r.Ok, &b); err != nil {
			return Output{}, fmt.Errorf(".output.ok: want true or false, got %s", r.Ok)
		}
		ok = &b
	}
	switch kind {
	case KindGet:
		if ok != nil && !*ok {
			return Output{}, fmt.Errorf(".output.ok: a get that failed has an unknown outcome: record output null")
		}
		v, err := nullableStr("output.value", r.Value)
		return Output{Value: v}, err
	case KindCas:
		if ok == nil {
			return Output{}, fmt.Errorf(".output.ok: missing (cas reports whether it swapped)")
		}
		if r.Value != nil {
			return Output{}, fmt.Errorf(".output.value: cas returns no value")
		}
		return Output{Ok: *ok}, nil
	default:
		if ok == nil || !*ok {
			return Output{}, fmt.Errorf(".output.ok: %s must be ok: true; a failed write has an unknown outcome: record output null", kind)
		}
		if r.Value != nil {
			return Output{}, fmt.Errorf(".output.value: %s returns no value", kind)
		}
		return Output{Ok: true}, nil
	}
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

func integer(field string, raw json.RawMessage) (int64, error) {
	if raw == nil {
		return 0, fmt.Errorf(".%s: missing", field)
	}
	n, err := strconv.ParseInt(string(bytes.TrimSpace(raw)), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf(".%s: want a non-negative integer, got %s", field, raw)
	}
	return n, nil
}

func str(field string, raw json.RawMessage) (string, error) {
	if raw == nil {
		return "", fmt.Errorf(".%s: missing", field)
	}
	var s string
	if isNull(raw) || json.Unmarshal(raw, &s) != nil {
		return "", fmt.Errorf(".%s: want a string, got %s", field, raw)
	}
	return s, nil
}

func nullableStr(field string, raw json.RawMessage) (Value, error) {
	if raw == nil {
		return Absent, fmt.Errorf(".%s: missing (use null for absent)", field)
	}
	if isNull(raw) {
		return Absent, nil
	}
	s, err := str(field, raw)
	return Some(s), err
}
