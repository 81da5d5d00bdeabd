// Command kvapp is a small partitioned HTTP key-value store that runs next
// to a Steward agent and obeys its webhooks: it holds the partitions its
// agent assigns, in the role and at the epoch given, copies a partition from
// the named source when told, drops it on release, forwards every request
// to the key's primary, and acknowledges a write only once every current
// copy has it on disk. Data lives in bbolt under --data-dir and survives a
// restart; at every start the app tells its agent which partitions that
// dir holds. See README.md.
//
//	kvapp --addr 127.0.0.1:7001 --agent http://127.0.0.1:8501 --data-dir /var/lib/kvapp --webhook-secret whsec_... [--api-token T]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/steward-dev/steward/hooks"
)

// shutdownTimeout bounds the graceful part of a shutdown.
const shutdownTimeout = 10 * time.Second

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// errUsage marks a command-line error (exit status 2).
var errUsage = errors.New("kvapp: usage")

// parseFlags turns the command line into a Config.
func parseFlags(args []string, stderr io.Writer) (Config, error) {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("kvapp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var secret string
	fs.StringVar(&cfg.Addr, "addr", "", "host:port to serve on; also the address given to peers (the agent's -app-addr) (required)")
	fs.StringVar(&cfg.AgentURL, "agent", "", "base URL of the co-located agent's HTTP API, e.g. http://127.0.0.1:8500 (required)")
	fs.StringVar(&cfg.DataDir, "data-dir", "", "directory of the app's data (kvapp.db); created if missing (required)")
	fs.StringVar(&secret, "webhook-secret", "", "the agent's -webhook-secret, whsec_ + base64 (required)")
	fs.StringVar(&cfg.APIToken, "api-token", "", "the agent's -api-token, for acknowledging copies and reporting holdings")
	fs.DurationVar(&cfg.RetryBudget, "retry-budget", cfg.RetryBudget, "how long a client request retries while the cluster changes")
	fs.DurationVar(&cfg.PeerTimeout, "peer-timeout", cfg.PeerTimeout, "timeout of one request to a peer or the agent")
	fs.DurationVar(&cfg.LoadInterval, "load-interval", cfg.LoadInterval, "how often the app reports its load and disk to the agent")
	fs.Int64Var(&cfg.DiskCapacity, "disk-capacity", 0, "simulate a disk of this many bytes in the load reports (0: report the data dir's file system)")
	fs.Int64Var(&cfg.DiskReserved, "disk-reserved", 0, "bytes the simulated disk holds besides the data (with --disk-capacity)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, err
		}
		return cfg, fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if cfg.Addr == "" || cfg.AgentURL == "" || secret == "" || cfg.DataDir == "" {
		return cfg, fmt.Errorf("%w: --addr, --agent, --data-dir and --webhook-secret are required", errUsage)
	}
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		return cfg, fmt.Errorf("%w: --addr %q: %v", errUsage, cfg.Addr, err)
	}
	if !strings.HasPrefix(cfg.AgentURL, "http://") && !strings.HasPrefix(cfg.AgentURL, "https://") {
		return cfg, fmt.Errorf("%w: --agent %q: want an http:// or https:// URL", errUsage, cfg.AgentURL)
	}
	key, err := hooks.ParseSecret(secret)
	if err != nil {
		return cfg, fmt.Errorf("%w: --webhook-secret: %v", errUsage, err)
	}
	cfg.WebhookSecret = key
	if cfg.RetryBudget <= 0 || cfg.PeerTimeout <= 0 || cfg.LoadInterval <= 0 {
		return cfg, fmt.Errorf("%w: --retry-budget, --peer-timeout and --load-interval must be positive", errUsage)
	}
	if cfg.DiskCapacity < 0 || cfg.DiskReserved < 0 || cfg.DiskReserved > cfg.DiskCapacity {
		return cfg, fmt.Errorf("%w: --disk-reserved must be between 0 and --disk-capacity", errUsage)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return cfg, fmt.Errorf("%w: --log-level: %v", errUsage, err)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	return cfg, nil
}

// run is main without the exit, for tests: 0 after a clean shutdown, 1 on
// a runtime error, 2 on a command-line error.
func run(args []string, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		fmt.Fprintln(stderr, "kvapp:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := serve(ctx, cfg, ln); err != nil {
		cfg.Logger.Error("kvapp stopped", "err", err)
		return 1
	}
	return 0
}

// serve runs the app on ln until ctx ends, then shuts down in order: stop
// taking requests and finish those in flight, then stop the copies.
func serve(ctx context.Context, cfg Config, ln net.Listener) error {
	s, err := newServer(cfg)
	if err != nil {
		ln.Close()
		return err
	}
	defer s.Close()
	hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	s.log.Info("kvapp serving", "addr", ln.Addr().String(), "agent", cfg.AgentURL, "data_dir", cfg.DataDir)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	s.log.Info("kvapp shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err = hs.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}
