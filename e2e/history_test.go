package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// A history is what the clients of a chaos run did and saw: every operation
// with the times it was invoked and returned, and every fault with the time
// it was injected and healed. Times are nanoseconds on the monotonic clock
// since the history began, so that they order operations of different
// clients correctly whatever the wall clock does.

// opKind is what a client asked for.
type opKind string

const (
	opRead  opKind = "read"
	opWrite opKind = "write"
)

// opOutcome is what the client learned.
type opOutcome string

const (
	// outcomeOK: a write was acknowledged (204), or a read answered 200
	// (the value) or 404 (the key absent).
	outcomeOK opOutcome = "ok"
	// outcomeUnknown: no answer, a timeout, a connection error or an
	// error status. A write may or may not have taken effect; a read
	// tells nothing.
	outcomeUnknown opOutcome = "unknown"
)

// historyOp is one client operation.
type historyOp struct {
	Client int    `json:"client"`
	Node   string `json:"node"` // whose kvapp the client asked
	Key    string `json:"key"`
	Kind   opKind `json:"kind"`
	// Value is the value written, or the value a read returned ("" when
	// the key was absent).
	Value   string    `json:"value"`
	Call    int64     `json:"call_ns"`
	Return  int64     `json:"return_ns"`
	Outcome opOutcome `json:"outcome"`
	// Error is why the outcome is unknown: the transport error or the
	// status and body of the answer.
	Error string `json:"error,omitempty"`
}

// faultRecord is one injected fault, from its injection to its repair.
type faultRecord struct {
	Kind   faultKind `json:"kind"`
	Nodes  []string  `json:"nodes"`
	Detail string    `json:"detail"`
	Start  int64     `json:"start_ns"`
	End    int64     `json:"end_ns"`
	// Converged is how long after End the cluster had converged again;
	// zero if it did not within the bound.
	Converged time.Duration `json:"converged_ns"`
}

// history is safe for concurrent use by the clients and the fault loop.
type history struct {
	start time.Time

	mu     sync.Mutex
	ops    []historyOp
	faults []faultRecord
}

func newHistory() *history { return &history{start: time.Now()} }

// now is the time since the history began, on the monotonic clock.
func (h *history) now() int64 { return int64(time.Since(h.start)) }

func (h *history) record(op historyOp) {
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
}

func (h *history) recordFault(f faultRecord) {
	h.mu.Lock()
	h.faults = append(h.faults, f)
	h.mu.Unlock()
}

// operations returns the operations recorded so far, ordered by call time.
func (h *history) operations() []historyOp {
	h.mu.Lock()
	ops := slices.Clone(h.ops)
	h.mu.Unlock()
	slices.SortStableFunc(ops, func(a, b historyOp) int { return int(a.Call - b.Call) })
	return ops
}

func (h *history) faultRecords() []faultRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.faults)
}

// counts returns how many operations of each kind had each outcome.
func (h *history) counts() map[opKind]map[opOutcome]int {
	out := map[opKind]map[opOutcome]int{opRead: {}, opWrite: {}}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, op := range h.ops {
		out[op.Kind][op.Outcome]++
	}
	return out
}

// writeFile writes the whole history as JSON: the seed that produced it,
// the faults and the operations.
func (h *history) writeFile(path string, seed uint64) error {
	b, err := json.MarshalIndent(struct {
		Seed       uint64        `json:"seed"`
		Start      time.Time     `json:"start"`
		Faults     []faultRecord `json:"faults"`
		Operations []historyOp   `json:"operations"`
	}{seed, h.start, h.faultRecords(), h.operations()}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// availability summarises, per fault, the operations invoked from its
// injection until the cluster had converged again, and those invoked
// outside any fault: how many, and how many got no answer. A figure for
// the log, not an assertion: the clients' patience (clientTimeout) and the
// kvapp's retry budget shape it as much as the agents do.
func (h *history) availability() string {
	faults := h.faultRecords()
	type tally struct{ ops, unknown int }
	per := make([]tally, len(faults))
	var outside tally
	for _, op := range h.operations() {
		t := &outside
		for i, f := range faults {
			if op.Call >= f.Start && op.Call <= f.End+int64(f.Converged) {
				t = &per[i]
				break
			}
		}
		t.ops++
		if op.Outcome != outcomeOK {
			t.unknown++
		}
	}
	var b strings.Builder
	for i, f := range faults {
		fmt.Fprintf(&b, "\n  %-50s %5d ops, %4d without answer", f.Detail, per[i].ops, per[i].unknown)
	}
	fmt.Fprintf(&b, "\n  %-50s %5d ops, %4d without answer", "outside faults", outside.ops, outside.unknown)
	return b.String()
}

// faultsByKind counts the faults of each kind, e.g. "3 kill-node, 2 leave".
func (h *history) faultsByKind() string {
	count := map[faultKind]int{}
	for _, f := range h.faultRecords() {
		count[f.Kind]++
	}
	var parts []string
	for _, k := range allFaults {
		if count[k] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", count[k], k))
		}
	}
	return strings.Join(parts, ", ")
}
