// Command agent is the Steward sidecar: one runs next to each process of a
// partitioned application and, together, the agents keep its cluster
// healthy. See README.md for the sub-commands and flags.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/steward-dev/steward/agent"
)

const usageText = `Usage: agent <command> [flags]

Commands:
  run         run the sidecar agent
  dev         run one agent with all defaults and a temporary data dir
  demo        run a local cluster with the example app and show a failure,
              a failover, a rejoin and a graceful leave
  members     list the cluster's members
  status      show this agent's raft and cluster status
  partitions  show the partition table (-resource NAME: one resource's)
  resource    create, list or delete resources, or change one's
              replication factor or placement (create NAME -partitions N
              -replication-factor R [-target-size BYTES] [-zones RULE]
              [-nodes k=v,...] | list | delete NAME | set-rf NAME R |
              set-target-size NAME BYTES | set-zones NAME spread|none|strict
              | set-nodes NAME k=v,...)
  split       split partition P of RESOURCE in two (split RESOURCE P)
  leave       make the agent leave the cluster gracefully, showing progress
  restart     planned restart: hand primaries over, keep copies, exit 0
  rolling-restart
              restart every member, one after the other, led by the leader
  maintenance freeze (on) or resume (off) automatic removals and balance
              moves cluster-wide
  force-leave forget a member that is gone for good (failed or departed)
  replace     move every copy of a node to another (add before remove), then
              the old node leaves: agent replace OLD NEW
  move        pin a partition on a node (or as primary), or unpin it:
              agent move P NODE [-primary], agent move P [NODE] -unpin
  keygen      print a new gossip encryption key
  keyring     list, install, use or remove gossip keys on one agent (rotation)
  tls         make a test CA and node certificates for raft mutual TLS
  version     print the version, module version and VCS revision (-json)

Run "agent <command> -h" for the flags of a command.
`

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// realMain runs one sub-command and returns the exit status: 0 success,
// 1 failure, 2 a bad command line or configuration (usageError,
// agent.ConfigError), always with one line saying what is wrong.
func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return 2
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "run":
		err = cmdRun(rest, stderr, false)
	case "dev":
		err = cmdRun(rest, stderr, true)
	case "demo":
		err = cmdDemo(rest, stdout, stderr)
	case "members":
		err = cmdMembers(rest, stdout, stderr)
	case "status":
		err = cmdStatus(rest, stdout, stderr)
	case "partitions":
		err = cmdPartitions(rest, stdout, stderr)
	case "resource":
		err = cmdResource(rest, stdout, stderr)
	case "split":
		err = cmdSplit(rest, stdout, stderr)
	case "leave":
		err = cmdLeave(rest, stdout, stderr)
	case "restart":
		err = cmdRestart(rest, stdout, stderr)
	case "rolling-restart":
		err = cmdRollingRestart(rest, stdout, stderr)
	case "maintenance":
		err = cmdMaintenance(rest, stdout, stderr)
	case "force-leave":
		err = cmdForceLeave(rest, stdout, stderr)
	case "replace":
		err = cmdReplace(rest, stdout, stderr)
	case "move":
		err = cmdMove(rest, stdout, stderr)
	case "keyring":
		err = cmdKeyring(rest, stdout, stderr)
	case "tls":
		err = cmdTLS(rest, stdout, stderr)
	case "keygen":
		err = cmdKeygen(rest, stdout, stderr)
	case "version", "-version", "--version":
		err = cmdVersion(rest, stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usageText)
		return 0
	default:
		msg := fmt.Sprintf("agent: unknown command %q", cmd)
		if near := nearest(cmd, commandNames()); near != "" {
			msg += "; did you mean " + near + "?"
		}
		fmt.Fprintln(stderr, msg+` ("agent -h" lists the commands)`)
		return 2
	}
	return exitStatus(err, stderr)
}

// exitStatus prints err, if any, as one line and maps it to an exit status.
func exitStatus(err error, stderr io.Writer) int {
	var ue *usageError
	var ce *agent.ConfigError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "agent: %s\n", ue.msg)
		return 2
	case errors.As(err, &ce):
		fmt.Fprintf(stderr, "agent: %s\n", ce.Msg)
		return 2
	default:
		fmt.Fprintf(stderr, "agent: %v\n", err)
		return 1
	}
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("agent "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func newLogger(cfg agent.Config, out io.Writer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       "steward",
		Level:      hclog.LevelFromString(cfg.LogLevel),
		JSONFormat: cfg.LogJSON,
		Output:     out,
	})
}

// cmdRun is `agent run` and, with dev set, `agent dev`: start the agent and
// run until a signal. SIGTERM or SIGINT leaves the cluster gracefully within
// -leave-timeout and exits 0 (with -on-sigterm restart: a planned restart,
// then exit 0); a second signal exits at once. A restart requested through
// the API (agent restart, a rolling restart) also ends in exit 0, for the
// supervisor to start the agent again.
func cmdRun(args []string, stderr io.Writer, dev bool) error {
	fs := newFlagSet(map[bool]string{false: "run", true: "dev"}[dev], stderr)
	var cfg agent.Config
	var err error
	if dev {
		cfg, err = devConfig(fs, args)
	} else {
		cfg, err = loadConfig(fs, args, os.Getenv)
	}
	if err != nil {
		return err
	}
	if dev {
		// The temporary data dir goes with the agent, however it ends.
		defer os.RemoveAll(cfg.DataDir)
	}
	logger := newLogger(cfg, stderr)
	a, err := agent.New(cfg, logger)
	if err != nil {
		return err
	}
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(signals)
	if err := a.Start(); err != nil {
		return err
	}
	if dev {
		fmt.Fprintf(stderr, "agent dev: node %q, data dir %s, API http://%s\n", cfg.NodeID, cfg.DataDir, a.HTTPAddr())
	}
	force, restart := false, false
	select {
	case sig := <-signals:
		if dev {
			logger.Info("signal received; stopping", "signal", sig.String())
			break
		}
		restart = cfg.OnSigterm == agent.OnSigtermRestart
		logger.Info("signal received", "signal", sig.String(), "on_sigterm", cfg.OnSigterm, "timeout", cfg.LeaveTimeout.String())
	case force = <-a.LeaveRequests():
		logger.Info("leave requested through the API", "force", force, "leave_timeout", cfg.LeaveTimeout.String())
	case <-a.RestartRequests():
		restart = true
		logger.Info("planned restart requested through the API", "restart_grace", cfg.RestartGrace.String())
	}
	done := make(chan error, 1)
	if restart {
		go func() {
			if err := a.Restart(context.Background()); err != nil {
				// Refused (quorum, another member away) or cut short: the
				// process stops all the same, and the node comes back as
				// after a crash.
				logger.Error("planned restart", "error", err)
			}
			done <- a.Shutdown()
		}()
		return waitShutdown(done, signals, logger)
	}
	go func() {
		var err error
		// agent dev is a cluster of one whose data dir goes with it: there
		// is nobody to hand anything over to, so it stops without leaving
		// (a leave would be refused as losing the last copies).
		if !dev {
			err = a.Leave(context.Background(), force)
		}
		switch {
		case errors.Is(err, agent.ErrLeaveRefused):
			// A refused leave (last copy, quorum) still stops the process:
			// the node stays a member and comes back as a restart.
			logger.Warn("stopping without leaving the cluster", "reason", err)
		case err != nil:
			logger.Error("leaving the cluster", "error", err)
		}
		done <- a.Shutdown()
	}()
	return waitShutdown(done, signals, logger)
}

// waitShutdown waits for the leave or restart and the shutdown to finish
// (exit 0), or for a second signal (exit at once, 1).
func waitShutdown(done <-chan error, signals <-chan os.Signal, logger hclog.Logger) error {
	select {
	case err := <-done:
		if err != nil {
			logger.Warn("shutdown finished with an error", "error", err)
		}
		return nil
	case sig := <-signals:
		logger.Warn("second signal; exiting now", "signal", sig.String())
		return errors.New("interrupted during leave or restart")
	}
}

// devConfig is `agent dev`: one agent, a temporary data dir, a fresh gossip
// key, free gossip and raft ports, the API on its usual address.
func devConfig(fs *flag.FlagSet, args []string) (agent.Config, error) {
	cfg := agent.DefaultConfig()
	cfg.NodeID = "dev"
	cfg.BootstrapExpect = 1
	cfg.GossipPort = 0
	cfg.RaftPort = 0
	cfg.Profile = "local"
	fs.StringVar(&cfg.HTTPAddr, "http-addr", cfg.HTTPAddr, "host:port of the HTTP API")
	fs.IntVar(&cfg.Partitions, "partitions", agent.DefaultPartitions, "number of partitions")
	fs.StringVar(&cfg.WebhookURL, "webhook-url", "", "the app's webhook endpoint")
	fs.StringVar(&cfg.AppAddr, "app-addr", "", "the app's data address (required with -webhook-url)")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "trace, debug, info, warn or error")
	if err := parseFlags(fs, args); err != nil {
		return agent.Config{}, err
	}
	if fs.NArg() > 0 {
		return agent.Config{}, usagef("unexpected argument %q (flags only)", fs.Arg(0))
	}
	dir, err := os.MkdirTemp("", "steward-dev-")
	if err != nil {
		return agent.Config{}, err
	}
	cfg.DataDir = dir
	key, err := newGossipKey()
	if err != nil {
		return agent.Config{}, err
	}
	cfg.Encrypt = key
	if err := cfg.Validate(); err != nil {
		os.RemoveAll(dir)
		return agent.Config{}, err
	}
	return cfg, nil
}

// cmdVersion is `agent version [-json]`: the agent's version, the module
// version and the VCS revision the binary was built from, as the Go
// toolchain stamped them (agent.Build).
func cmdVersion(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", stderr)
	asJSON := fs.Bool("json", false, "print the build information as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("version: unexpected argument %q", fs.Arg(0))
	}
	b := agent.Build()
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(b)
	}
	fmt.Fprintf(stdout, "steward agent %s\nmodule version %s\nrevision %s\nbuilt with %s\n", b.Version, b.ModuleVersion, b.Revision, b.GoVersion)
	return nil
}

func cmdKeygen(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("keygen", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	key, err := newGossipKey()
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, key)
	return nil
}
