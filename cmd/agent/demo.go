package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/steward-dev/steward/agent"
	"github.com/steward-dev/steward/hooks"
)

// `agent demo` runs a local cluster of real agent processes (this binary)
// on 127.0.0.1, each with the example kvapp when one is found, and walks
// through a failure, the failover, a rejoin and a graceful leave, printing
// what happens as it happens. Everything lives in a temporary directory
// that is removed at the end.

type demoNode struct {
	id                         string
	dir                        string
	gossip, raft, http, appPrt int
	agent, app                 *exec.Cmd
}

func (n *demoNode) api() string     { return "127.0.0.1:" + strconv.Itoa(n.http) }
func (n *demoNode) appAddr() string { return "127.0.0.1:" + strconv.Itoa(n.appPrt) }

type demo struct {
	out     io.Writer
	self    string
	kvapp   string
	dir     string
	key     string
	secret  string
	nodes   []*demoNode
	client  *http.Client
	started time.Time
}

func cmdDemo(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", stderr)
	size := fs.Int("nodes", 5, "number of agents (3 to 9)")
	kvapp := fs.String("kvapp", "", "path of the example kvapp binary (default: kvapp next to this binary or on PATH; without it the demo runs without apps)")
	keep := fs.Bool("keep", false, "keep the cluster running at the end until Ctrl-C")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return flagParseError{err}
	}
	if *size < 3 || *size > 9 {
		return usagef("-nodes: %d is not between 3 and 9", *size)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	d := &demo{out: stdout, self: self, kvapp: findKVApp(*kvapp, self), client: &http.Client{Timeout: 5 * time.Second}, started: time.Now()}
	if d.dir, err = os.MkdirTemp("", "steward-demo-"); err != nil {
		return err
	}
	defer os.RemoveAll(d.dir)
	defer d.stopAll()
	if d.key, err = newGossipKey(); err != nil {
		return err
	}
	if d.secret, err = hooks.GenerateSecret(); err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	return d.run(ctx, *size, *keep)
}

// findKVApp looks for the example app.
func findKVApp(flagValue, self string) string {
	if flagValue != "" {
		return flagValue
	}
	if p := filepath.Join(filepath.Dir(self), "kvapp"); fileExists(p) {
		return p
	}
	if p, err := exec.LookPath("kvapp"); err == nil {
		return p
	}
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.out, "[%6.2fs] %s\n", time.Since(d.started).Seconds(), fmt.Sprintf(format, args...))
}

func (d *demo) run(ctx context.Context, size int, keep bool) error {
	if d.kvapp == "" {
		d.say("no kvapp binary found (build it with: go build -o kvapp ./examples/kvapp, next to this binary); running agents without apps")
	}
	for i := 1; i <= size; i++ {
		n := &demoNode{id: fmt.Sprintf("node%d", i), dir: filepath.Join(d.dir, fmt.Sprintf("node%d", i))}
		var err error
		for _, p := range []*int{&n.gossip, &n.raft, &n.http, &n.appPrt} {
			if *p, err = demoFreePort(); err != nil {
				return err
			}
		}
		d.nodes = append(d.nodes, n)
	}
	d.say("starting %d agents on 127.0.0.1 (logs in %s)", size, d.dir)
	for _, n := range d.nodes {
		if err := d.start(n, true); err != nil {
			return err
		}
	}
	leader, err := d.waitLeader(ctx, d.nodes)
	if err != nil {
		return err
	}
	d.say("cluster formed: leader %s; UI at http://%s/ui", leader, d.nodes[0].api())
	if err := d.waitSettled(ctx, d.nodes); err != nil {
		return err
	}
	d.printMembers()
	keys := 0
	if d.kvapp != "" {
		for i := 0; i < 200; i++ {
			if d.put(d.nodes[i%size], fmt.Sprintf("key-%d", i), fmt.Sprintf("value-%d", i)) == nil {
				keys++
			}
		}
		d.say("wrote %d keys through random nodes; every write is on 3 copies", keys)
	}

	// A failure.
	victim := d.mostPrimaries(leader)
	d.say("SIGKILL %s (agent and app), the node with the most primaries", victim.id)
	killed := time.Now()
	d.kill(victim)
	rest := d.without(victim)
	if err := d.waitStatus(ctx, rest[0], victim.id, "failed"); err != nil {
		return err
	}
	d.say("%s declared failed by the cluster %.2fs after the kill; its primaries were promoted", victim.id, time.Since(killed).Seconds())
	d.printEvents(rest, 3)
	if err := d.waitSettled(ctx, rest); err != nil {
		return err
	}
	d.say("replication factor restored on %d nodes %.2fs after the kill", len(rest), time.Since(killed).Seconds())
	if keys > 0 {
		d.say("read back %d of %d keys through the survivors", d.readAll(rest, keys), keys)
	}

	// A rejoin.
	d.say("restarting %s with its old data dirs (agent and app): a rejoin", victim.id)
	if err := d.start(victim, false); err != nil {
		return err
	}
	if err := d.waitStatus(ctx, rest[0], victim.id, "alive"); err != nil {
		return err
	}
	if err := d.waitSettled(ctx, d.nodes); err != nil {
		return err
	}
	d.say("%s is back and has its share again", victim.id)
	d.printMembers()

	// A graceful leave.
	leaver := d.nodes[len(d.nodes)-1]
	if leaver == victim {
		leaver = d.nodes[len(d.nodes)-2]
	}
	d.say("SIGTERM %s: a graceful leave", leaver.id)
	left := time.Now()
	_ = leaver.agent.Process.Signal(syscall.SIGTERM)
	_ = leaver.agent.Wait()
	leaver.agent = nil
	d.say("%s exited %.2fs after SIGTERM, its partitions moved away first", leaver.id, time.Since(left).Seconds())
	d.stopApp(leaver)
	rest = d.without(leaver)
	if err := d.waitStatus(ctx, rest[0], leaver.id, "left"); err != nil {
		return err
	}
	if err := d.waitSettled(ctx, rest); err != nil {
		return err
	}
	d.printMembers()
	if keys > 0 {
		d.say("read back %d of %d keys through every remaining node", d.readAll(rest, keys), keys)
	}
	if keep {
		d.say("the cluster keeps running; Ctrl-C to stop it")
		<-ctx.Done()
	}
	d.say("demo done; stopping the cluster")
	return nil
}

func demoFreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (d *demo) start(n *demoNode, first bool) error {
	if d.kvapp != "" && n.app == nil {
		log, err := os.OpenFile(n.dir+".app.log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		// The app keeps its data beside the agent's: a restarted node has
		// both back.
		n.app = exec.Command(d.kvapp, "--addr", n.appAddr(), "--agent", "http://"+n.api(), "--data-dir", n.dir+".app", "--webhook-secret", d.secret)
		n.app.Stdout, n.app.Stderr = log, log
		if err := n.app.Start(); err != nil {
			return fmt.Errorf("starting kvapp: %w", err)
		}
	}
	args := []string{"run", "-node-id", n.id, "-data-dir", n.dir, "-encrypt", d.key, "-profile", "local",
		"-gossip-port", strconv.Itoa(n.gossip), "-raft-port", strconv.Itoa(n.raft), "-http-addr", n.api(),
		"-partitions", "32", "-join", "127.0.0.1:" + strconv.Itoa(d.nodes[0].gossip)}
	if first {
		args = append(args, "-bootstrap-expect", strconv.Itoa(len(d.nodes)))
	}
	if d.kvapp != "" {
		args = append(args, "-webhook-url", "http://"+n.appAddr()+"/steward/events", "-app-addr", n.appAddr(),
			"-app-health-url", "http://"+n.appAddr()+"/healthz", "-webhook-secret", d.secret)
	}
	log, err := os.OpenFile(n.dir+".log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	n.agent = exec.Command(d.self, args...)
	n.agent.Stdout, n.agent.Stderr = log, log
	return n.agent.Start()
}

func (d *demo) kill(n *demoNode) {
	for _, c := range []*exec.Cmd{n.app, n.agent} {
		if c != nil {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}
	n.app, n.agent = nil, nil
}

func (d *demo) stopApp(n *demoNode) {
	if n.app != nil {
		_ = n.app.Process.Signal(syscall.SIGTERM)
		_ = n.app.Wait()
		n.app = nil
	}
}

func (d *demo) stopAll() {
	for _, n := range d.nodes {
		d.kill(n)
	}
}

func (d *demo) without(gone *demoNode) []*demoNode {
	var out []*demoNode
	for _, n := range d.nodes {
		if n != gone && n.agent != nil {
			out = append(out, n)
		}
	}
	return out
}

func (d *demo) getJSON(n *demoNode, path string, out any) error {
	resp, err := d.client.Get("http://" + n.api() + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// poll runs cond every 100 ms until it succeeds, ctx ends or a minute
// passes.
func (d *demo) poll(ctx context.Context, what string, cond func() error) error {
	deadline := time.Now().Add(time.Minute)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("demo: %s: %v", what, err)
}

func (d *demo) waitLeader(ctx context.Context, nodes []*demoNode) (string, error) {
	var leader string
	err := d.poll(ctx, "waiting for a leader", func() error {
		var st agent.Status
		if err := d.getJSON(nodes[0], "/v1/status", &st); err != nil {
			return err
		}
		if st.LeaderID == "" || !st.Bootstrapped {
			return errors.New("no leader yet")
		}
		leader = st.LeaderID
		return nil
	})
	return leader, err
}

func (d *demo) waitSettled(ctx context.Context, nodes []*demoNode) error {
	return d.poll(ctx, "waiting for the table to settle", func() error {
		var pt agent.PartitionsView
		if err := d.getJSON(nodes[0], "/v1/partitions", &pt); err != nil {
			return err
		}
		for _, p := range pt.Partitions {
			if p.Primary == "" || len(p.Migrations) > 0 || len(p.Holders()) != min(pt.Settings.ReplicationFactor, len(nodes)) {
				return fmt.Errorf("partition %d still moving", p.ID)
			}
		}
		var plan struct {
			Actions []any `json:"actions"`
		}
		if err := d.getJSON(nodes[0], "/v1/plan", &plan); err != nil {
			return err
		}
		if len(plan.Actions) > 0 {
			return fmt.Errorf("%d planned actions", len(plan.Actions))
		}
		return nil
	})
}

func (d *demo) waitStatus(ctx context.Context, via *demoNode, id, status string) error {
	return d.poll(ctx, "waiting for "+id+" to be "+status, func() error {
		var ms struct{ Members []agent.MemberView }
		if err := d.getJSON(via, "/v1/members", &ms); err != nil {
			return err
		}
		for _, m := range ms.Members {
			if m.ID == id && m.Status == status {
				return nil
			}
		}
		return errors.New("not yet")
	})
}

func (d *demo) mostPrimaries(leader string) *demoNode {
	var ms struct{ Members []agent.MemberView }
	_ = d.getJSON(d.nodes[0], "/v1/members", &ms)
	best, most := d.nodes[1], -1
	for _, m := range ms.Members {
		for _, n := range d.nodes {
			if n.id == m.ID && m.ID != leader && m.Primaries > most {
				best, most = n, m.Primaries
			}
		}
	}
	return best
}

func (d *demo) printMembers() {
	var ms struct{ Members []agent.MemberView }
	if err := d.getJSON(d.without(nil)[0], "/v1/members", &ms); err != nil {
		return
	}
	var lines []string
	for _, m := range ms.Members {
		lines = append(lines, fmt.Sprintf("%s=%s(p%d/c%d)", m.ID, m.Status, m.Primaries, m.Copies))
	}
	sort.Strings(lines)
	d.say("members: %s", strings.Join(lines, " "))
}

func (d *demo) printEvents(nodes []*demoNode, n int) {
	for _, node := range nodes {
		var ev struct {
			Events []agent.Event `json:"events"`
		}
		if d.getJSON(node, "/v1/events", &ev) != nil || len(ev.Events) == 0 {
			continue
		}
		for _, e := range ev.Events {
			if e.Type == "member.failed" {
				d.say("  leader %s: %s", node.id, e.Summary)
				for i, a := range e.Actions {
					if i >= n {
						d.say("    ... and %d more", len(e.Actions)-n)
						break
					}
					d.say("    %s partition %d -> %s (epoch %d): %s", a.Kind, a.Partition, a.Node, a.Epoch+1, strings.Join(a.Reasons, "; "))
				}
			}
		}
	}
}

func (d *demo) put(n *demoNode, key, value string) error {
	req, _ := http.NewRequest(http.MethodPut, "http://"+n.appAddr()+"/kv/"+key, bytes.NewBufferString(value))
	resp, err := d.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return errors.New(resp.Status)
	}
	return nil
}

func (d *demo) readAll(nodes []*demoNode, keys int) int {
	ok := 0
	for i := 0; i < keys; i++ {
		resp, err := d.client.Get("http://" + nodes[i%len(nodes)].appAddr() + "/kv/" + fmt.Sprintf("key-%d", i))
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && string(b) == fmt.Sprintf("value-%d", i) {
			ok++
		}
	}
	return ok
}
