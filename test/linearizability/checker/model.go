package main

import (
	"fmt"
	"hash/fnv"

	"github.com/anishathalye/porcupine"
)

// Kind is the operation a client invoked on the replicated key-value store.
type Kind string

const (
	KindPut    Kind = "put"
	KindGet    Kind = "get"
	KindCas    Kind = "cas"
	KindDelete Kind = "delete"
)

// Value is a key's value, or its absence. It is a comparable struct (not a *string) so that
// porcupine can compare states with ==.
type Value struct {
	Present bool
	Data    string
}

// Absent is the value of a key that was never written or was deleted.
var Absent = Value{}

// Some is a present value.
func Some(data string) Value { return Value{Present: true, Data: data} }

func (v Value) String() string {
	if !v.Present {
		return "null"
	}
	return fmt.Sprintf("%q", v.Data)
}

// Input is what the client asked for. Value is the value written by put and cas; Expected is
// the value cas compares against (Absent: the key must be absent).
type Input struct {
	Kind     Kind
	Key      string
	Value    Value
	Expected Value
}

// Output is what the client was told. Unknown marks a write whose outcome the client never
// learned (timeout, dropped connection): the model accepts any result for it.
type Output struct {
	Unknown bool
	Ok      bool  // cas: whether it swapped
	Value   Value // get: what it read
}

// kvModel is the sequential specification of one key: the per-partition state is that key's
// Value, because a history is linearizable iff its restriction to every key is.
var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		return partitionByKey(history, func(op porcupine.Operation) string { return op.Input.(Input).Key })
	},
	PartitionEvent: func(history []porcupine.Event) [][]porcupine.Event {
		// Return events carry an Output, not the key: take it from the matching call.
		keys := map[int]string{}
		return partitionByKey(history, func(ev porcupine.Event) string {
			if ev.Kind == porcupine.CallEvent {
				keys[ev.Id] = ev.Value.(Input).Key
			}
			return keys[ev.Id]
		})
	},
	Init: func() interface{} { return Absent },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		return step(state.(Value), input.(Input), output.(Output))
	},
	Equal: func(a, b interface{}) bool { return a.(Value) == b.(Value) },
	Hash: func(state interface{}) uint64 {
		v := state.(Value)
		if !v.Present {
			return 0
		}
		h := fnv.New64a()
		h.Write([]byte(v.Data))
		return h.Sum64() | 1
	},
	DescribeOperation: func(input, output interface{}) string {
		return describe(input.(Input), output.(Output))
	},
	DescribeState: func(state interface{}) string { return state.(Value).String() },
}

// step applies one operation to one key's state. An unknown-outcome write is accepted whatever
// the state: it takes effect as its kind dictates if it is linearized before a later observer,
// and porcupine may also linearize it after every completed operation, where its effect is
// never observed, which covers the case in which it never happened.
func step(state Value, in Input, out Output) (bool, Value) {
	switch in.Kind {
	case KindPut:
		return true, in.Value
	case KindDelete:
		return true, Absent
	case KindGet:
		return out.Unknown || out.Value == state, state
	case KindCas:
		swaps := state == in.Expected
		if !out.Unknown && out.Ok != swaps {
			return false, state
		}
		if swaps {
			return true, in.Value
		}
		return true, state
	}
	return false, state
}

func partitionByKey[T any](history []T, keyOf func(T) string) [][]T {
	index := map[string]int{}
	var partitions [][]T
	for _, item := range history {
		key := keyOf(item)
		i, seen := index[key]
		if !seen {
			i = len(partitions)
			index[key] = i
			partitions = append(partitions, nil)
		}
		partitions[i] = append(partitions[i], item)
	}
	return partitions
}

func describe(in Input, out Output) string {
	var call string
	switch in.Kind {
	case KindPut:
		call = fmt.Sprintf("put(%q, %s)", in.Key, in.Value)
	case KindGet:
		call = fmt.Sprintf("get(%q)", in.Key)
	case KindCas:
		call = fmt.Sprintf("cas(%q, %s, %s)", in.Key, in.Expected, in.Value)
	case KindDelete:
		call = fmt.Sprintf("delete(%q)", in.Key)
	}
	switch {
	case out.Unknown:
		return call + " -> ?"
	case in.Kind == KindGet:
		return call + " -> " + out.Value.String()
	case in.Kind == KindCas:
		return fmt.Sprintf("%s -> %t", call, out.Ok)
	}
	return call + " -> ok"
}
