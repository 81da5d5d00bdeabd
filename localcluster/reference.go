package localcluster

import (
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// ReferenceMember is one member of a cluster of the reference program of
// e2e/reference/serf: Serf v0.10.2 or memberlist alone, which the
// detection benchmark runs next to Steward's agents. It runs on 127.0.0.1
// as the caller's user, on a port of its own for gossip (TCP and UDP), and
// prints its member events as JSON lines, which Events reads back.
type ReferenceMember struct {
	Process

	// Bin is the reference program's binary (built from
	// e2e/reference/serf).
	Bin string
	// Mode is what it runs: "serf" or "memberlist".
	Mode string
	// Profile is the memberlist configuration: "local" or "lan".
	Profile string
	// Name is its node name.
	Name string
	// Port is its gossip port, chosen by NewReferenceMember.
	Port int
}

// NewReferenceMember declares a member on a fresh port; it is not started.
func NewReferenceMember(bin, mode, profile, name string) (*ReferenceMember, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	return &ReferenceMember{Bin: bin, Mode: mode, Profile: profile, Name: name, Port: port}, nil
}

// Addr is the member's gossip address, what another member joins.
func (r *ReferenceMember) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.Port))
}

// Start runs the member, joining the member at join (empty: it starts the
// cluster), with its output appended to logPath.
func (r *ReferenceMember) Start(join, logPath string) error {
	args := []string{"-mode", r.Mode, "-profile", r.Profile, "-name", r.Name, "-bind", "127.0.0.1", "-port", strconv.Itoa(r.Port)}
	if join != "" {
		args = append(args, "-join", join)
	}
	if err := r.start(r.Name, exec.Command(r.Bin, args...), logPath); err != nil {
		return fmt.Errorf("starting reference member %s: %w", r.Name, err)
	}
	return nil
}

// ReferenceEvent is one member event the reference program printed.
type ReferenceEvent struct {
	// UnixNano is when the event reached the program (time.Now().UnixNano()
	// there: the same clock as the caller's on this machine).
	UnixNano int64 `json:"unix_nano"`
	// Node is the member that printed it.
	Node string `json:"node"`
	// Event is Serf's event type (member-join, member-failed, ...) or, for
	// memberlist alone, member-join, member-update, member-dead or
	// member-left.
	Event string `json:"event"`
	// Member is the member the event is about.
	Member string `json:"member"`
}

// Time is when the event reached the program.
func (e ReferenceEvent) Time() time.Time { return time.Unix(0, e.UnixNano) }

// Events returns the events the current run has printed so far, in order.
// Lines that are not events (the libraries' logs, on the same output) are
// skipped; so is a last line still being written.
func (r *ReferenceMember) Events() []ReferenceEvent {
	var events []ReferenceEvent
	for _, line := range strings.Split(r.Log(), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var e ReferenceEvent
		if err := json.Unmarshal([]byte(line), &e); err == nil && e.Event != "" {
			events = append(events, e)
		}
	}
	return events
}
