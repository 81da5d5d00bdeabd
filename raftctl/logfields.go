package raftctl

import (
	"fmt"
	"reflect"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Log fields of one type each. hashicorp/raft logs some fields as values
// of its own types: "peer" as a raft.Server struct, "node", "leader" and
// "follower" as the *raft.Raft itself, "from" as a server address on one
// line and a log index on another. In JSON logs those become objects (an
// empty one for *raft.Raft) or change type from line to line, where the
// agent's own lines carry strings, which breaks typed log pipelines. And
// raft's "node" (itself) replaces the agent's "node" (its node ID) in a
// JSON line. scalarFields sits between raft and the agent's logger and
// fixes both.

// serverFields name a server in raft's lines: always strings.
var serverFields = map[string]bool{
	"node": true, "peer": true, "leader": true, "follower": true, "candidate": true,
	"from": true, "id": true, "address": true, "server": true, "voter": true,
}

// scalarFields is an hclog.Logger that passes every line on to the logger
// it wraps with each field value a string, number, bool, duration or
// time, server fields always as strings, and the fields that would hide
// one of the wrapped logger's own (such as "node") renamed "raft-<name>".
type scalarFields struct{ hclog.Logger }

// withScalarFields wraps l (see scalarFields).
func withScalarFields(l hclog.Logger) hclog.Logger {
	if _, done := l.(scalarFields); done {
		return l
	}
	return scalarFields{l}
}

func (l scalarFields) fix(args []any) []any {
	own := map[string]bool{}
	implied := l.Logger.ImpliedArgs()
	for i := 0; i+1 < len(implied); i += 2 {
		own[fmt.Sprint(implied[i])] = true
	}
	out := make([]any, len(args))
	copy(out, args)
	for i := 0; i+1 < len(out); i += 2 {
		key := fmt.Sprint(out[i])
		out[i+1] = scalar(key, out[i+1])
		if own[key] {
			out[i] = "raft-" + key
		}
	}
	return out
}

// scalar is v as a value of one JSON type for key.
func scalar(key string, v any) any {
	if serverFields[key] {
		return fmt.Sprint(v)
	}
	switch v.(type) {
	case nil, string, bool, error, time.Duration, time.Time, hclog.Format:
		return v
	}
	switch reflect.ValueOf(v).Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64, reflect.Bool:
		return v
	}
	return fmt.Sprint(v)
}

func (l scalarFields) Log(level hclog.Level, msg string, args ...any) {
	l.Logger.Log(level, msg, l.fix(args)...)
}
func (l scalarFields) Trace(msg string, args ...any) { l.Logger.Trace(msg, l.fix(args)...) }
func (l scalarFields) Debug(msg string, args ...any) { l.Logger.Debug(msg, l.fix(args)...) }
func (l scalarFields) Info(msg string, args ...any)  { l.Logger.Info(msg, l.fix(args)...) }
func (l scalarFields) Warn(msg string, args ...any)  { l.Logger.Warn(msg, l.fix(args)...) }
func (l scalarFields) Error(msg string, args ...any) { l.Logger.Error(msg, l.fix(args)...) }

func (l scalarFields) With(args ...any) hclog.Logger {
	return scalarFields{l.Logger.With(l.fix(args)...)}
}
func (l scalarFields) Named(name string) hclog.Logger { return scalarFields{l.Logger.Named(name)} }
func (l scalarFields) ResetNamed(name string) hclog.Logger {
	return scalarFields{l.Logger.ResetNamed(name)}
}
