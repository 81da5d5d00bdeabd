// Command serf-reference runs one member of a gossip cluster with what
// Steward's failure detection is compared against in docs/benchmarks.md:
// Serf v0.10.2 (-mode serf) or memberlist alone (-mode memberlist), each
// with the memberlist configuration it ships with (-profile local or lan).
// e2e's BenchmarkDetectionReference starts five of these next to five
// Steward agents in the same run and times, from the SIGKILL of one, the
// failure events the survivors print.
//
// It is a module of its own so that Serf never becomes a dependency of the
// main module (docs/dependencies.md): the agent does not use it, and `go
// build ./...` at the repository root does not see it.
//
// Every membership event is printed to stdout as one JSON line, for
// example
//
//	{"unix_nano":1796000000000000000,"node":"node1","event":"member-failed","member":"node3"}
//
// unix_nano is time.Now().UnixNano() when the event reached this program.
// In serf mode the events are Serf's own (member-join, member-leave,
// member-failed, member-update, member-reap); in memberlist mode they are
// memberlist's EventDelegate calls: member-join, member-update, and
// NotifyLeave as member-dead (the node was declared dead: a failure) or
// member-left (it left gracefully). Logs go to stderr. SIGTERM or SIGINT
// shuts the member down without a graceful leave and exits 0.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
)

// joinTimeout is how long a member retries joining: the benchmark starts
// the five members together, so the first may not listen yet when the
// others first try.
const joinTimeout = 30 * time.Second

func main() {
	mode := flag.String("mode", "serf", "what to run: serf (Serf v0.10.2) or memberlist (memberlist alone)")
	name := flag.String("name", "", "this member's node name (required)")
	bind := flag.String("bind", "127.0.0.1", "address to bind and advertise")
	port := flag.Int("port", 0, "gossip port, TCP and UDP (required)")
	join := flag.String("join", "", "host:port of a member to join; empty starts a new cluster")
	profile := flag.String("profile", "lan", "memberlist configuration: local (DefaultLocalConfig) or lan (DefaultLANConfig)")
	flag.Parse()
	if err := run(*mode, *name, *bind, *port, *join, *profile); err != nil {
		fmt.Fprintln(os.Stderr, "serf-reference:", err)
		os.Exit(1)
	}
}

func run(mode, name, bind string, port int, join, profile string) error {
	if name == "" {
		return errors.New("-name is required")
	}
	if port <= 0 || port > 65535 {
		return fmt.Errorf("-port %d: want a port in 1-65535", port)
	}
	mlConfig, err := memberlistConfig(profile)
	if err != nil {
		return err
	}
	mlConfig.Name = name
	mlConfig.BindAddr, mlConfig.BindPort = bind, port
	mlConfig.AdvertiseAddr, mlConfig.AdvertisePort = bind, port

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	out := &eventPrinter{enc: json.NewEncoder(os.Stdout), node: name}
	switch mode {
	case "serf":
		return runSerf(ctx, mlConfig, join, out)
	case "memberlist":
		return runMemberlist(ctx, mlConfig, join, out)
	default:
		return fmt.Errorf("-mode %q: want serf or memberlist", mode)
	}
}

// memberlistConfig is the configuration each profile names, unchanged:
// memberlist's own defaults, which is what Serf v0.10 runs (its
// DefaultConfig takes DefaultLANConfig as it is).
func memberlistConfig(profile string) (*memberlist.Config, error) {
	switch profile {
	case "local":
		return memberlist.DefaultLocalConfig(), nil
	case "lan":
		return memberlist.DefaultLANConfig(), nil
	default:
		return nil, fmt.Errorf("-profile %q: want local or lan", profile)
	}
}

// runSerf runs a Serf member with serf.DefaultConfig and the given
// memberlist configuration until ctx ends, printing Serf's member events.
func runSerf(ctx context.Context, mlConfig *memberlist.Config, join string, out *eventPrinter) error {
	events := make(chan serf.Event, 256)
	conf := serf.DefaultConfig()
	conf.NodeName = mlConfig.Name
	conf.MemberlistConfig = mlConfig
	conf.EventCh = events
	conf.LogOutput = os.Stderr
	s, err := serf.Create(conf)
	if err != nil {
		return fmt.Errorf("starting serf: %w", err)
	}
	defer s.Shutdown()
	if join != "" {
		if err := retryJoin(ctx, func() error { _, err := s.Join([]string{join}, false); return err }); err != nil {
			return err
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.ShutdownCh():
			return errors.New("serf shut down by itself")
		case e := <-events:
			if me, ok := e.(serf.MemberEvent); ok {
				for _, m := range me.Members {
					out.print(me.Type.String(), m.Name)
				}
			}
		}
	}
}

// runMemberlist runs memberlist alone with the given configuration until
// ctx ends, printing its EventDelegate calls.
func runMemberlist(ctx context.Context, mlConfig *memberlist.Config, join string, out *eventPrinter) error {
	mlConfig.Events = memberlistEvents{out}
	mlConfig.LogOutput = os.Stderr
	m, err := memberlist.Create(mlConfig)
	if err != nil {
		return fmt.Errorf("starting memberlist: %w", err)
	}
	defer m.Shutdown()
	if join != "" {
		if err := retryJoin(ctx, func() error { _, err := m.Join([]string{join}); return err }); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return nil
}

// retryJoin calls join every 100 ms until it succeeds, ctx ends or
// joinTimeout passes.
func retryJoin(ctx context.Context, join func() error) error {
	deadline := time.Now().Add(joinTimeout)
	for {
		err := join()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("joining for %s: %w", joinTimeout, err)
		}
		log.Printf("join: %v; again in 100 ms", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// memberlistEvents prints memberlist's EventDelegate calls. memberlist
// calls them from its own goroutines, one at a time per event, and expects
// them not to block for long: printing one line does not.
type memberlistEvents struct{ out *eventPrinter }

func (d memberlistEvents) NotifyJoin(n *memberlist.Node)   { d.out.print("member-join", n.Name) }
func (d memberlistEvents) NotifyUpdate(n *memberlist.Node) { d.out.print("member-update", n.Name) }

// NotifyLeave is called for a node declared dead and for one that left
// gracefully; the node's state tells which.
func (d memberlistEvents) NotifyLeave(n *memberlist.Node) {
	if n.State == memberlist.StateLeft {
		d.out.print("member-left", n.Name)
		return
	}
	d.out.print("member-dead", n.Name)
}

// event is one line of output.
type event struct {
	UnixNano int64  `json:"unix_nano"`
	Node     string `json:"node"`
	Event    string `json:"event"`
	Member   string `json:"member"`
}

// eventPrinter writes events as JSON lines; the mutex keeps lines whole
// when memberlist calls the delegate from several goroutines.
type eventPrinter struct {
	mu   sync.Mutex
	enc  *json.Encoder
	node string
}

func (p *eventPrinter) print(kind, member string) {
	e := event{UnixNano: time.Now().UnixNano(), Node: p.node, Event: kind, Member: member}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.enc.Encode(e); err != nil {
		// stdout gone: nothing to report to; the benchmark sees no event.
		fmt.Fprintln(os.Stderr, "serf-reference: printing an event:", err)
	}
}
