package raftctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"github.com/steward-dev/steward/failover"
)

// A forwarded write: the request is an encoded command (EncodeCommand), at
// most MaxCommandSize bytes; the answer is a forwardResponse in JSON. A
// command that does not decode is answered with the decoding error and
// never reaches the log.

// maxForwardAnswer bounds a forwardResponse: its largest part is the list
// of changed partitions, at most failover.MaxPartitions numbers of up to
// six characters, under half a megabyte.
const maxForwardAnswer = 1 << 20

// ErrNoLeader is returned by ApplyForwarded when this server knows of no
// leader (an election is under way, or the cluster has no quorum).
var ErrNoLeader = errors.New("raftctl: no leader")

// forwardResponse is the leader's answer to a forwarded command.
type forwardResponse struct {
	// Result is what Apply returned.
	Result failover.Result `json:"result"`
	// Error is the text of Apply's error; empty on success.
	Error string `json:"error,omitempty"`
	// Is names the sentinel errors (forwardSentinels) that Error wraps, so
	// that errors.Is works on the follower too.
	Is []string `json:"is,omitempty"`
}

// forwardSentinels are the errors a forwarded command's error can be
// matched against on the follower. The names are the wire format: keep
// them stable; an unknown name is ignored.
var forwardSentinels = []struct {
	name string
	err  error
}{
	{"not_leader", ErrNotLeader},
	{"already_bootstrapped", failover.ErrAlreadyBootstrapped},
	{"unknown_member", failover.ErrUnknownMember},
	{"empty_command", ErrEmptyCommand},
	{"unknown_encoding", ErrUnknownEncoding},
	{"command_too_large", ErrCommandTooLarge},
	{"restart_refused", failover.ErrRestartRefused},
	{"rolling_stale", failover.ErrRollingStale},
}

// sentinelNames lists the forwardSentinels err wraps. A leader that is
// shutting down is, for the follower, a server that is not leader: it
// should look for the next one, not believe itself shut down.
func sentinelNames(err error) []string {
	var names []string
	for _, s := range forwardSentinels {
		if errors.Is(err, s.err) || (s.err == ErrNotLeader && errors.Is(err, ErrShutdown)) {
			names = append(names, s.name)
		}
	}
	return names
}

// forwardedError is an error the leader returned for a forwarded command:
// its text unchanged, and the sentinels it wrapped there.
type forwardedError struct {
	msg string
	is  []error
}

func (e *forwardedError) Error() string   { return e.msg }
func (e *forwardedError) Unwrap() []error { return e.is }

func (r *forwardResponse) err() error {
	if r.Error == "" {
		return nil
	}
	e := &forwardedError{msg: r.Error}
	for _, name := range r.Is {
		for _, s := range forwardSentinels {
			if s.name == name {
				e.is = append(e.is, s.err)
			}
		}
	}
	return e
}

// running reports whether this node serves: not shut down, and raft not
// stopped on its own (as it does when the server is removed from the

// ApplyForwarded applies cmd wherever the leader is: here if this server
// leads (exactly Apply), otherwise on the leader named by Leader, over the
// raft port (mutual TLS when configured), one connection per call. It
// returns the leader's Result and error; an error from the state machine
// keeps its text, and errors.Is matches it against ErrNotLeader,
// failover.ErrAlreadyBootstrapped, failover.ErrUnknownMember,
// ErrEmptyCommand and ErrUnknownEncoding as on the leader.
//
// Apply keeps its meaning (ErrNotLeader on a follower), so callers that
// must not leave this server, such as the leader's own control loop, still
// can; ApplyForwarded is what a follower's writes use.
//
// With no leader known it returns ErrNoLeader at once. If the server it
// reached says it is no longer leader (or this server lost leadership while
// applying), it waits within ctx for another leader to be known and tries
// once more; if none appears it returns ErrNoLeader wrapping ctx's error.
// A retried command may have committed the first time (leadership lost
// after the append): Steward's commands are compare-and-set on epochs or
// idempotent, so it then applies as stale or reports
// failover.ErrAlreadyBootstrapped or failover.ErrUnknownMember.
//
// ctx bounds the exchange with the leader; without a deadline,
// ApplyTimeout plus twice TransportTimeout does. An I/O error (leader
// unreachable, connection lost before the answer) is returned as is and
// not retried: the command may or may not have applied.
func (n *Node) ApplyForwarded(ctx context.Context, cmd failover.Command) (failover.Result, error) {
	data, err := EncodeCommand(cmd)
	if err != nil {
		return failover.Result{}, err
	}
	var refused string // address of the server that said it is not leader
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if err := n.waitOtherLeader(ctx, refused); err != nil {
				return failover.Result{}, err
			}
		}
		var res failover.Result
		var target string
		if n.raft.State() == raft.Leader {
			target = n.Addr()
			res, err = n.apply(data)
		} else {
			if !n.running() {
				return failover.Result{}, ErrShutdown
			}
			_, target = n.forwardTarget()
			if target == "" {
				return failover.Result{}, ErrNoLeader
			}
			res, err = n.forward(ctx, target, data)
		}
		if attempt > 0 || !errors.Is(err, ErrNotLeader) {
			return res, err
		}
		refused = target
	}
}

// waitOtherLeader waits until this server leads or knows of a leader at
// another address than refused.
func (n *Node) waitOtherLeader(ctx context.Context, refused string) error {
	tick := time.NewTicker(waitPollInterval)
	defer tick.Stop()
	for {
		if n.raft.State() == raft.Leader {
			return nil
		}
		if !n.running() {
			return ErrShutdown
		}
		if _, addr := n.forwardTarget(); addr != "" && addr != refused {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s is not leader and no other leader appeared: %w", ErrNoLeader, refused, ctx.Err())
		case <-n.shutdownCh:
			return ErrShutdown
		case <-tick.C:
		}
	}
}

// forward sends an encoded command to the server at addr and returns its
// answer.
func (n *Node) forward(ctx context.Context, addr string, data []byte) (failover.Result, error) {
	body, err := n.exchange(ctx, addr, kindForward, data, n.cfg.ApplyTimeout+2*n.cfg.TransportTimeout)
	if err != nil {
		return failover.Result{}, fmt.Errorf("raftctl: forward to leader at %s: %w", addr, err)
	}
	var resp forwardResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		return failover.Result{}, fmt.Errorf("raftctl: forward to leader at %s: bad answer: %w", addr, err)
	}
	return resp.Result, resp.err()
}

// serveForward applies a command forwarded by a follower and answers with
// the result. Refused commands (not leader, undecodable, too large, refused
// by the model) are answered too: the follower deserves the reason.
// ApplyEncoded bounds the wait to enqueue by ApplyTimeout, and raft's commit
// ends when it commits, loses leadership or shuts down.
func (n *Node) serveForward(remote string, data []byte) ([]byte, error) {
	res, err := n.ApplyEncoded(data)
	resp := forwardResponse{Result: res}
	if err != nil {
		resp.Error = err.Error()
		resp.Is = sentinelNames(err)
	}
	body, err := json.Marshal(resp)
	if err != nil {
		n.logger.Error("cannot encode the answer to a forwarded command", "remote", remote, "error", err)
		return nil, fmt.Errorf("cannot encode the answer: %w", err)
	}
	return body, nil
}
