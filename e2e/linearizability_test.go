package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// The linearizability check of a history of single-key reads and writes,
// with porcupine: a register per key, and porcupine's partitioned model so
// that each key is checked on its own.
//
// Every write puts a value no other write puts, so a read says which write
// it saw. What the clients could not learn is encoded as porcupine
// expects:
//   - a write whose outcome is unknown may have taken effect at any time
//     after its call, or never: its return time is the end of the history
//     (after every other operation), so it may be ordered anywhere later;
//   - such a write that no read ever returned is left out: ordered last it
//     changes nothing, so the history is linearizable with it exactly when
//     it is without it, and leaving it out spares the search;
//   - a read whose outcome is unknown tells nothing and is left out.

// kvInput is a porcupine operation's input.
type kvInput struct {
	Key   string
	Write bool
	Value string // the value written
}

// kvOutput is a porcupine operation's output.
type kvOutput struct {
	Value   string // the value read; "" for an absent key
	Unknown bool   // a write with no answer
	Node    string // whose kvapp was asked, for the visualisation
}

// kvModel is a register per key: a read returns the last value written,
// or "" before any write.
var kvModel = porcupine.Model{
	Partition: func(ops []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range ops {
			k := op.Input.(kvInput).Key
			byKey[k] = append(byKey[k], op)
		}
		keys := make([]string, 0, len(byKey))
		for k := range byKey {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in := input.(kvInput)
		if in.Write {
			return true, in.Value
		}
		return output.(kvOutput).Value == state.(string), state
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(kvInput), output.(kvOutput)
		if in.Write {
			if out.Unknown {
				return fmt.Sprintf("write(%s, %s) ? via %s", in.Key, in.Value, out.Node)
			}
			return fmt.Sprintf("write(%s, %s) via %s", in.Key, in.Value, out.Node)
		}
		return fmt.Sprintf("read(%s) → %s via %s", in.Key, describeValue(out.Value), out.Node)
	},
	DescribeState: func(state any) string { return describeValue(state.(string)) },
}

func describeValue(v string) string {
	if v == "" {
		return "(absent)"
	}
	return v
}

// porcupineHistory converts a history for the checker (see the rules
// above) and says how many operations it left out.
func porcupineHistory(ops []historyOp) (out []porcupine.Operation, unknownReads, unreadWrites int) {
	read := map[string]bool{} // key + value, for every value some read returned
	end := int64(0)
	for _, op := range ops {
		if op.Kind == opRead && op.Outcome == outcomeOK && op.Value != "" {
			read[op.Key+"\x00"+op.Value] = true
		}
		end = max(end, op.Return)
	}
	for _, op := range ops {
		in := kvInput{Key: op.Key, Write: op.Kind == opWrite}
		o := porcupine.Operation{ClientId: op.Client, Input: in, Call: op.Call, Return: op.Return}
		switch {
		case op.Kind == opRead && op.Outcome == outcomeOK:
			o.Output = kvOutput{Value: op.Value, Node: op.Node}
		case op.Kind == opRead:
			unknownReads++
			continue
		case op.Outcome == outcomeOK:
			in.Value = op.Value
			o.Input, o.Output = in, kvOutput{Node: op.Node}
		case !read[op.Key+"\x00"+op.Value]:
			unreadWrites++
			continue
		default:
			in.Value = op.Value
			o.Input, o.Output, o.Return = in, kvOutput{Unknown: true, Node: op.Node}, end+1
		}
		out = append(out, o)
	}
	return out, unknownReads, unreadWrites
}

// linearizabilityResult is the outcome of checkLinearizable.
type linearizabilityResult struct {
	Result porcupine.CheckResult
	// Checked is how many operations went to the checker; UnknownReads and
	// UnreadWrites how many were left out (see porcupineHistory).
	Checked, UnknownReads, UnreadWrites int
	// BadKeys are the keys whose history is not linearizable.
	BadKeys []string
	info    porcupine.LinearizationInfo
	ops     []porcupine.Operation
}

// checkLinearizable checks ops per key within timeout. On a timeout the
// result is porcupine.Unknown, which is no pass.
func checkLinearizable(ops []historyOp, timeout time.Duration) linearizabilityResult {
	pops, unknownReads, unreadWrites := porcupineHistory(ops)
	res := linearizabilityResult{Checked: len(pops), UnknownReads: unknownReads, UnreadWrites: unreadWrites, ops: pops}
	res.Result, res.info = porcupine.CheckOperationsVerbose(kvModel, pops, timeout)
	if res.Result == porcupine.Illegal {
		// Name the keys: each is checked alone, which is quick next to the
		// verbose run above.
		for _, keyOps := range kvModel.Partition(pops) {
			if porcupine.CheckOperationsTimeout(kvModel, keyOps, timeout) == porcupine.Illegal {
				res.BadKeys = append(res.BadKeys, keyOps[0].Input.(kvInput).Key)
			}
		}
	}
	return res
}

// visualize writes porcupine's HTML view of the check, with the faults
// drawn next to the clients' operations.
func (r linearizabilityResult) visualize(path string, faults []faultRecord) error {
	var notes []porcupine.Annotation
	for _, f := range faults {
		notes = append(notes, porcupine.Annotation{
			Tag:             "faults",
			Start:           f.Start,
			End:             f.End,
			Description:     string(f.Kind) + " " + strings.Join(f.Nodes, ","),
			Details:         f.Detail,
			BackgroundColor: "#f4c7c3",
		})
	}
	r.info.AddAnnotations(notes)
	return porcupine.VisualizePath(kvModel, r.info, path)
}

// explainKey describes where key's history stops being linearizable: the
// operations of the longest linearizable prefix porcupine found end
// somewhere, and the first operation (by call time) that no linearization
// could take is shown with the operations that overlap it and the last ones
// that precede it. A hint for the reader of the HTML, not a proof.
func (r linearizabilityResult) explainKey(key string) string {
	var keyOps []porcupine.Operation
	for _, op := range r.ops {
		if op.Input.(kvInput).Key == key {
			keyOps = append(keyOps, op)
		}
	}
	slices.SortStableFunc(keyOps, func(a, b porcupine.Operation) int { return int(a.Call - b.Call) })
	longest := map[int]bool{}
	for _, part := range r.info.PartialLinearizationsOperations() {
		if len(part) == 0 || len(part[0]) == 0 || part[0][0].Input.(kvInput).Key != key {
			continue
		}
		for _, lin := range part {
			if len(lin) > len(longest) {
				longest = map[int]bool{}
				for _, op := range lin {
					longest[indexOf(keyOps, op)] = true
				}
			}
		}
	}
	first := -1
	for i := range keyOps {
		if !longest[i] && !keyOps[i].Output.(kvOutput).Unknown {
			first = i
			break
		}
	}
	if first < 0 {
		return "(no single operation stands out)"
	}
	bad := keyOps[first]
	var b strings.Builder
	fmt.Fprintf(&b, "first operation no linearization can take: %s\n", describeOp(bad))
	fmt.Fprintf(&b, "the last operations on %s completed before it, and those overlapping it:\n", key)
	var before []int
	for i, op := range keyOps {
		if op.Return < bad.Call && !op.Output.(kvOutput).Unknown {
			before = append(before, i)
		}
	}
	shown := map[int]bool{}
	for _, i := range before[max(0, len(before)-5):] {
		shown[i] = true
	}
	for i, op := range keyOps {
		if i != first && op.Call <= bad.Return && (op.Return >= bad.Call || op.Output.(kvOutput).Unknown) {
			shown[i] = true
		}
	}
	for i, op := range keyOps {
		if shown[i] {
			fmt.Fprintf(&b, "  %s\n", describeOp(op))
		}
	}
	return b.String()
}

func indexOf(ops []porcupine.Operation, op porcupine.Operation) int {
	for i, o := range ops {
		if o.ClientId == op.ClientId && o.Call == op.Call && o.Input == op.Input {
			return i
		}
	}
	return -1
}

func describeOp(op porcupine.Operation) string {
	ret := fmt.Sprintf("%.3f s", time.Duration(op.Return).Seconds())
	if op.Output.(kvOutput).Unknown {
		ret = "unknown"
	}
	return fmt.Sprintf("[%.3f s, %s] client %d %s", time.Duration(op.Call).Seconds(), ret, op.ClientId,
		kvModel.DescribeOperation(op.Input, op.Output))
}

// TestTheLinearizabilityCheckFindsAStaleRead: the checker that judges the
// chaos runs is itself checked on small histories whose verdict is known,
// written as the clients would record them.
func TestTheLinearizabilityCheckFindsAStaleRead(t *testing.T) {
	ms := func(n int) int64 { return int64(time.Duration(n) * time.Millisecond) }
	w := func(client int, key, value string, call, ret int, outcome opOutcome) historyOp {
		return historyOp{Client: client, Node: "node1", Key: key, Kind: opWrite, Value: value, Call: ms(call), Return: ms(ret), Outcome: outcome}
	}
	r := func(client int, key, value string, call, ret int, outcome opOutcome) historyOp {
		return historyOp{Client: client, Node: "node2", Key: key, Kind: opRead, Value: value, Call: ms(call), Return: ms(ret), Outcome: outcome}
	}
	cases := []struct {
		name string
		ops  []historyOp
		want porcupine.CheckResult
		bad  []string
	}{
		{"reads see the last acknowledged write", []historyOp{
			w(0, "k1", "c0-1", 0, 10, outcomeOK), r(1, "k1", "c0-1", 20, 30, outcomeOK),
			w(0, "k1", "c0-2", 40, 50, outcomeOK), r(1, "k1", "c0-2", 60, 70, outcomeOK),
		}, porcupine.Ok, nil},
		{"a read after an acknowledged write returns the older value (stale read)", []historyOp{
			w(0, "k1", "c0-1", 0, 10, outcomeOK), w(0, "k1", "c0-2", 20, 30, outcomeOK),
			r(1, "k1", "c0-1", 40, 50, outcomeOK), w(2, "k2", "c2-1", 0, 10, outcomeOK),
		}, porcupine.Illegal, []string{"k1"}},
		{"a write with no answer may take effect much later", []historyOp{
			w(0, "k1", "c0-1", 0, 10, outcomeOK), w(0, "k1", "c0-2", 20, 30, outcomeUnknown),
			r(1, "k1", "c0-1", 40, 50, outcomeOK), r(1, "k1", "c0-2", 900, 910, outcomeOK),
		}, porcupine.Ok, nil},
		{"a value once read is lost again (the write with no answer went back)", []historyOp{
			w(0, "k1", "c0-1", 0, 10, outcomeOK), w(0, "k1", "c0-2", 20, 30, outcomeUnknown),
			r(1, "k1", "c0-2", 40, 50, outcomeOK), r(1, "k1", "c0-1", 60, 70, outcomeOK),
		}, porcupine.Illegal, []string{"k1"}},
		{"an acknowledged write is never read again", []historyOp{
			w(0, "k3", "c0-1", 0, 10, outcomeOK), w(0, "k3", "c0-2", 20, 30, outcomeOK),
			r(1, "k3", "c0-1", 40, 50, outcomeOK), r(1, "k3", "", 35, 45, outcomeUnknown),
		}, porcupine.Illegal, []string{"k3"}},
		{"a read of a value nobody wrote", []historyOp{r(1, "k1", "c9-9", 0, 10, outcomeOK)}, porcupine.Illegal, []string{"k1"}},
		{"reads that failed tell nothing", []historyOp{
			w(0, "k1", "c0-1", 0, 10, outcomeOK), r(1, "k1", "", 20, 30, outcomeUnknown),
		}, porcupine.Ok, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := checkLinearizable(tc.ops, 10*time.Second)
			if res.Result != tc.want || !slices.Equal(res.BadKeys, tc.bad) {
				t.Fatalf("got %s on keys %v, want %s on %v", res.Result, res.BadKeys, tc.want, tc.bad)
			}
			if tc.want == porcupine.Illegal {
				path := t.TempDir() + "/check.html"
				if err := res.visualize(path, nil); err != nil {
					t.Fatalf("visualisation: %v", err)
				}
				if !strings.Contains(res.explainKey(tc.bad[0]), "first operation") {
					t.Fatalf("no explanation for %s: %s", tc.bad[0], res.explainKey(tc.bad[0]))
				}
			}
		})
	}
}
