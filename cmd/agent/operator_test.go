package main

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// agent move and agent replace against a real agent of one node: a pin
// shows in agent partitions until unpinned, and every refusal carries the
// agent's reason or a usage error, changing nothing.
func TestMoveAndReplaceCommandsTalkToAnAgent(t *testing.T) {
	a := startSoloAgent(t, nil)
	run := func(cmd func([]string, io.Writer, io.Writer) error, args ...string) (string, error) {
		var out bytes.Buffer
		err := cmd(append(args, "-http-addr", a.HTTPAddr()), &out, io.Discard)
		return out.String(), err
	}
	if out, err := run(cmdMove, "2", "solo", "-primary"); err != nil || !strings.Contains(out, "pinned on solo as primary") {
		t.Fatalf("agent move 2 solo -primary: %v %q", err, out)
	}
	if out, err := run(cmdPartitions); err != nil || !strings.Contains(out, "solo (primary)") {
		t.Fatalf("agent partitions does not show the pin: %v\n%s", err, out)
	}
	if out, err := run(cmdMove, "2", "-unpin"); err != nil || !strings.Contains(out, "unpinned") {
		t.Fatalf("agent move 2 -unpin: %v %q", err, out)
	}
	if out, err := run(cmdPartitions); err != nil || strings.Contains(out, "solo (primary)") {
		t.Fatalf("agent partitions still shows the pin: %v\n%s", err, out)
	}

	var ue *usageError
	for _, args := range [][]string{{"x", "solo"}, {"2"}, {"2", "solo", "-primary", "-unpin"}} {
		if _, err := run(cmdMove, args...); !errors.As(err, &ue) {
			t.Errorf("agent move %v: %v, want a usage error", args, err)
		}
	}
	for _, args := range [][]string{{"solo"}, {"solo", "a", "b"}} {
		if _, err := run(cmdReplace, args...); !errors.As(err, &ue) {
			t.Errorf("agent replace %v: %v, want a usage error", args, err)
		}
	}
	for _, c := range []struct {
		cmd  func([]string, io.Writer, io.Writer) error
		args []string
		want string
	}{
		{cmdMove, []string{"2", "nobody"}, `unknown member "nobody"`},
		{cmdMove, []string{"9", "solo"}, "no partition 9"},
		{cmdReplace, []string{"solo", "nobody"}, `unknown member "nobody"`},
		{cmdReplace, []string{"solo", "solo"}, "cannot replace itself"},
		{cmdReplace, []string{"solo", "-cancel"}, "not being replaced"},
	} {
		if _, err := run(c.cmd, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want the agent's reason %q", c.args, err, c.want)
		}
	}
	if out, err := run(cmdMembers); err != nil || strings.Contains(out, "replaced by") {
		t.Fatalf("a refused replacement shows in agent members: %v\n%s", err, out)
	}
}
