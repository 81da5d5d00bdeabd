package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/steward-dev/steward/agent"
	"github.com/steward-dev/steward/client"
	"github.com/steward-dev/steward/gossip"
)

// clientFlags are the flags every client sub-command takes.
type clientFlags struct {
	httpAddr  string
	token     string
	tokenFile string
	json      bool
}

// register declares the client flags on fs, with their environment
// defaults.
func (cf *clientFlags) register(fs *flag.FlagSet) {
	cf.httpAddr = agent.DefaultConfig().HTTPAddr
	if v := os.Getenv("STEWARD_HTTP_ADDR"); v != "" {
		cf.httpAddr = v
	}
	cf.token = os.Getenv("STEWARD_API_TOKEN")
	fs.StringVar(&cf.httpAddr, "http-addr", cf.httpAddr, "host:port of the agent's HTTP API (env STEWARD_HTTP_ADDR)")
	fs.StringVar(&cf.token, "api-token", cf.token, "API token (env STEWARD_API_TOKEN)")
	fs.StringVar(&cf.tokenFile, "api-token-file", os.Getenv("STEWARD_API_TOKEN_FILE"), "file holding the API token (env STEWARD_API_TOKEN_FILE)")
	fs.BoolVar(&cf.json, "json", false, "print the raw JSON answer")
}

// resolve reads the token file, if one was given.
func (cf *clientFlags) resolve() error {
	if cf.tokenFile == "" {
		return nil
	}
	b, err := os.ReadFile(cf.tokenFile)
	if err != nil {
		return usagef("-api-token-file: %v", err)
	}
	cf.token = strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
	return nil
}

func parseClientFlags(name string, args []string, stderr io.Writer) (clientFlags, error) {
	fs := newFlagSet(name, stderr)
	var cf clientFlags
	cf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return cf, err
	}
	if fs.NArg() > 0 {
		return cf, usagef("unexpected argument %q", fs.Arg(0))
	}
	return cf, cf.resolve()
}

// get fetches path from the agent; out receives the decoded JSON and raw
// the bytes.
func (cf clientFlags) get(path string, out any) ([]byte, error) {
	return cf.do(http.MethodGet, path, nil, out, 10*time.Second)
}

// post sends a JSON body to path and decodes the answer into out (if not
// nil).
func (cf clientFlags) post(path string, body any, out any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	_, err = cf.do(http.MethodPost, path, data, out, 60*time.Second)
	return err
}

// do sends one request to the agent's API with the token (through package
// client), and turns a non-2xx answer into an error carrying the agent's
// message.
func (cf clientFlags) do(method, path string, body []byte, out any, timeout time.Duration) ([]byte, error) {
	cfg := client.DefaultConfig()
	cfg.Addresses, cfg.Token, cfg.RequestTimeout = []string{cf.httpAddr}, cf.token, timeout
	c, err := client.New(cfg)
	if err != nil {
		return nil, usagef("-http-addr: %v", err)
	}
	var payload any
	if body != nil {
		payload = json.RawMessage(body)
	}
	raw, _, err := c.Do(context.Background(), method, path, payload, out)
	var refusal *client.Error
	switch {
	case errors.As(err, &refusal):
		return nil, fmt.Errorf("%d %s: %s", refusal.StatusCode, http.StatusText(refusal.StatusCode), refusal.Message)
	case err != nil && raw == nil:
		return nil, fmt.Errorf("cannot reach the agent at %s: %w", cf.httpAddr, err)
	}
	return raw, err
}

// cmdLeave is `agent leave [-force]`: ask the agent to leave gracefully and
// show its progress until it has gone.
func cmdLeave(args []string, stdout, stderr io.Writer) error {
	force := false
	var rest []string
	for _, a := range args {
		if a == "-force" || a == "--force" {
			force = true
			continue
		}
		rest = append(rest, a)
	}
	cf, err := parseClientFlags("leave", rest, stderr)
	if err != nil {
		return err
	}
	path := "/v1/leave"
	if force {
		path += "?force=true"
	}
	var p agent.LeaveProgress
	if err := cf.post(path, map[string]bool{}, &p); err != nil {
		return err
	}
	last := ""
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		line := fmt.Sprintf("%s: %d copies remaining, %d primaries", p.Phase, p.CopiesRemaining, p.Primaries)
		if line != last {
			fmt.Fprintln(stdout, line)
			last = line
		}
		if p.Phase == agent.LeaveDone {
			break
		}
		if p.Phase == agent.LeaveFailed {
			return fmt.Errorf("leave failed: %s", p.Error)
		}
		time.Sleep(200 * time.Millisecond)
		if _, err := cf.get("/v1/leave", &p); err != nil {
			// The agent exits once it has left.
			break
		}
	}
	fmt.Fprintln(stdout, "left the cluster")
	return nil
}

// cmdMaintenance is `agent maintenance on|off`: freeze or resume automatic
// removals and balance moves cluster-wide.
func cmdMaintenance(args []string, stdout, stderr io.Writer) error {
	var mode string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		mode, args = args[0], args[1:]
	}
	cf, err := parseClientFlags("maintenance", args, stderr)
	if err != nil {
		return err
	}
	if mode != "on" && mode != "off" {
		return usagef("maintenance: say on or off (agent maintenance on|off [flags])")
	}
	if err := cf.post("/v1/maintenance", map[string]bool{"enabled": mode == "on"}, nil); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "maintenance %s: automatic removals and balance moves are %s\n", mode, map[string]string{"on": "frozen", "off": "resumed"}[mode])
	return nil
}

// cmdForceLeave is `agent force-leave NODE`: forget a member that is gone
// for good, now rather than after -reap-after.
func cmdForceLeave(args []string, stdout, stderr io.Writer) error {
	var node string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		node, args = args[0], args[1:]
	}
	cf, err := parseClientFlags("force-leave", args, stderr)
	if err != nil {
		return err
	}
	if node == "" {
		return usagef("force-leave: name the node (agent force-leave NODE [flags])")
	}
	var out agent.ForgetOutcome
	raw, err := cf.do(http.MethodPost, "/v1/members/"+url.PathEscape(node)+"/force-leave", []byte("{}"), &out, 60*time.Second)
	if err != nil {
		return err
	}
	if cf.json {
		_, err = stdout.Write(raw)
		return err
	}
	if out.Forgotten {
		fmt.Fprintf(stdout, "%s forgotten\n", node)
	} else {
		fmt.Fprintf(stdout, "%s marked left; it is forgotten once its %d copies are re-created elsewhere\n", node, out.CopiesRemaining)
	}
	return nil
}

// show is the common part of the read-only client commands: parse the
// client flags, fetch path into out, and with -json print the agent's
// answer as it is (done is then true: nothing more to print).
func show(name, path string, args []string, stdout, stderr io.Writer, out any) (done bool, err error) {
	cf, err := parseClientFlags(name, args, stderr)
	if err != nil {
		return false, err
	}
	raw, err := cf.get(path, out)
	if err != nil {
		return false, err
	}
	if cf.json {
		_, err = stdout.Write(raw)
		return true, err
	}
	return false, nil
}

func cmdStatus(args []string, stdout, stderr io.Writer) error {
	var st agent.Status
	if done, err := show("status", "/v1/status", args, stdout, stderr, &st); done || err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "node_id\t%s\n", st.NodeID)
	fmt.Fprintf(tw, "leader_id\t%s\n", st.LeaderID)
	fmt.Fprintf(tw, "raft_state\t%s\n", st.RaftState)
	fmt.Fprintf(tw, "voter\t%v\n", st.Voter)
	fmt.Fprintf(tw, "term\t%d\n", st.Term)
	fmt.Fprintf(tw, "applied_index\t%d\n", st.AppliedIndex)
	fmt.Fprintf(tw, "commit_index\t%d\n", st.CommitIndex)
	fmt.Fprintf(tw, "ready\t%v\n", st.Ready)
	fmt.Fprintf(tw, "quorum\t%s\n", st.Quorum)
	fmt.Fprintf(tw, "maintenance\t%v\n", st.Maintenance)
	if size := st.Cluster.Size; size.Desired > 0 {
		fmt.Fprintf(tw, "cluster.size\tdesired %d, alive %d\n", size.Desired, size.Alive)
		if st.Cluster.ProvisionRequests > 0 {
			fmt.Fprintf(tw, "provisioning\t%d missing %v, %d requests, last: %s\n", size.Missing, size.Zones, st.Cluster.ProvisionRequests, st.Cluster.LastProvision)
		}
	} else {
		fmt.Fprintf(tw, "cluster.size\talive %d (no -desired-nodes)\n", size.Alive)
	}
	fmt.Fprintf(tw, "clock_skew_seconds\t%g\n", st.ClockSkewSeconds)
	if st.RemovalsFrozen != "" {
		fmt.Fprintf(tw, "removals_frozen\t%s\n", st.RemovalsFrozen)
	}
	if st.RaftState == "leader" {
		fmt.Fprintf(tw, "failures_at_once\t%d\n", st.FailuresAtOnce)
	}
	if len(st.DataLost) > 0 {
		fmt.Fprintf(tw, "data_lost\tpartitions %v: their last copy was lost, they have no primary\n", st.DataLost)
	}
	if st.Restarting != "" {
		fmt.Fprintf(tw, "restarting\t%s\n", st.Restarting)
	}
	if st.RollingRestart != nil {
		fmt.Fprintf(tw, "rolling_restart\t%s\n", st.RollingRestart.Summary)
	}
	fmt.Fprintf(tw, "members\t%d\n", st.Members)
	fmt.Fprintf(tw, "partitions\t%d\n", st.Partitions)
	fmt.Fprintf(tw, "version\t%s\n", st.Version)
	return tw.Flush()
}

func cmdMembers(args []string, stdout, stderr io.Writer) error {
	var resp struct {
		Members []agent.MemberView `json:"members"`
	}
	if done, err := show("members", "/v1/members", args, stdout, stderr, &resp); done || err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tVOTER\tAPP\tZONE\tTAGS\tPRIMARIES\tCOPIES\tGOSSIP\tRAFT\tAPI")
	for _, m := range resp.Members {
		status := m.Status
		if m.ReplacedBy != "" {
			status += " (replaced by " + m.ReplacedBy + ")"
		}
		// APP: a member whose app is unhealthy, or has not caught up after
		// a rejoin, is given no primary.
		app := "healthy"
		if !m.AppHealthy {
			app = "not-ready"
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", m.ID, status, m.Voter, app, dash(m.Zone),
			dash(tagsText(m.Tags)), m.Primaries, m.Copies, dash(m.GossipAddr), dash(m.RaftAddr), dash(m.APIAddr))
	}
	return tw.Flush()
}

// tagsText is a member's tags as -tags takes them: k=v pairs sorted by
// key, comma-separated.
func tagsText(tags map[string]string) string {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + tags[k]
	}
	return strings.Join(parts, ",")
}

func cmdPartitions(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("partitions", stderr)
	var cf clientFlags
	cf.register(fs)
	resource := fs.String("resource", "", "show only this resource's partitions")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	if err := cf.resolve(); err != nil {
		return err
	}
	path := "/v1/partitions"
	if *resource != "" {
		path += "?resource=" + url.QueryEscape(*resource)
	}
	var resp agent.PartitionsView
	raw, err := cf.get(path, &resp)
	if err != nil {
		return err
	}
	if cf.json {
		_, err = stdout.Write(raw)
		return err
	}
	// The apps' figures live on the leader; without them (no report, no
	// leader) the size and load columns show "-".
	var load agent.LoadView
	if _, err := cf.get("/v1/load", &load); err != nil {
		load = agent.LoadView{}
	}
	nodeLoad := map[string]agent.NodeLoadView{}
	for _, n := range load.Nodes {
		nodeLoad[n.Node] = n
	}
	partLoad := map[int]agent.PartitionLoadView{}
	for _, p := range load.Partitions {
		partLoad[p.Partition] = p
	}
	active := map[string]int{}
	for _, p := range resp.Partitions {
		active[p.ResourceName()]++
	}
	for _, r := range resp.Resources {
		if *resource == "" || r.Name == *resource {
			fmt.Fprintf(stdout, "resource %s: %d partitions, replication factor %d\n", r.Name, active[r.Name], r.ReplicationFactor)
		}
	}
	fmt.Fprintln(stdout)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tPRIMARIES\tCOPIES\tLOAD\tDISK")
	for _, b := range resp.Balance {
		loadCol, diskCol := "-", "-"
		if n, ok := nodeLoad[b.Node]; ok {
			loadCol = strconv.FormatFloat(n.Load, 'f', 1, 64)
			if n.DiskCapacityBytes > 0 {
				diskCol = fmt.Sprintf("%.1f%%", n.DiskUsedPct)
				if n.Over != "" {
					diskCol += " (over " + n.Over + ")"
				}
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", b.Node, b.Primaries, b.Copies, loadCol, diskCol)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "PARTITION\tRESOURCE\tEPOCH\tPRIMARY\tREPLICAS\tMIGRATING TO\tPINNED\tSIZE\tLOAD")
	for _, p := range resp.Partitions {
		var targets, pins []string
		for _, m := range p.Migrations {
			targets = append(targets, m.Target)
		}
		for _, pin := range p.Pins {
			if pin.Primary {
				pins = append(pins, pin.Node+" (primary)")
			} else {
				pins = append(pins, pin.Node)
			}
		}
		primary := dash(p.Primary)
		if p.DataLost && p.Primary == "" {
			primary = "DATA LOST"
		}
		sizeCol, loadCol := "-", "-"
		if pl, ok := partLoad[p.ID]; ok {
			sizeCol, loadCol = humanBytes(pl.SizeBytes), strconv.FormatFloat(pl.Load, 'f', 1, 64)
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", p.ID, p.ResourceName(), p.Epoch, primary, dash(strings.Join(p.Replicas, ",")), dash(strings.Join(targets, ",")), dash(strings.Join(pins, ",")), sizeCol, loadCol)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// newGossipKey returns a new base64 gossip key.
func newGossipKey() (string, error) {
	key, err := gossip.GenerateKey()
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(key), nil
}

// humanBytes prints a size with a binary unit.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, u := float64(n), 0
	for v >= unit && u < 4 {
		v /= unit
		u++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGT"[u-1])
}
