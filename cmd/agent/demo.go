package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
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
	"github.com/steward-dev/steward/localcluster"
)

// `agent demo` runs a local cluster of real agent processes (this binary)
// on 127.0.0.1, each with the example kvapp when one is found, and walks
// through a failure, the failover, a rejoin and a graceful leave, printing
// what happens as it happens. Everything lives in a temporary directory
// that is removed at the end.

// demoNode is one node of the demo: an agent and, when a kvapp binary is
// found, its app.
type demoNode struct {
	agent *localcluster.Agent
	app   *localcluster.KVApp // nil without a kvapp
}

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
	if err := parseFlags(fs, args); err != nil {
		return err
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
		id := fmt.Sprintf("node%d", i)
		a, err := localcluster.NewAgent(d.self, id, filepath.Join(d.dir, id), localcluster.DefaultPlacement, "-partitions", "32")
		if err != nil {
			return err
		}
		a.GossipKey, a.Profile = d.key, "local"
		n := &demoNode{agent: a}
		if d.kvapp != "" {
			if n.app, err = localcluster.NewKVApp(d.kvapp, localcluster.DefaultPlacement, d.secret); err != nil {
				return err
			}
			a.Args = append(a.Args, n.app.AgentFlags(n.app.WebhookURL())...)
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
	d.say("cluster formed: leader %s; UI at http://%s/ui", leader, d.nodes[0].agent.APIAddr())
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
	d.say("SIGKILL %s (agent and app), the node with the most primaries", victim.agent.ID)
	killed := time.Now()
	d.kill(victim)
	rest := d.without(victim)
	if err := d.waitStatus(ctx, rest[0], victim.agent.ID, "failed"); err != nil {
		return err
	}
	d.say("%s declared failed by the cluster %.2fs after the kill; its primaries were promoted", victim.agent.ID, time.Since(killed).Seconds())
	d.printEvents(rest, 3)
	if err := d.waitSettled(ctx, rest); err != nil {
		return err
	}
	d.say("replication factor restored on %d nodes %.2fs after the kill", len(rest), time.Since(killed).Seconds())
	if keys > 0 {
		d.say("read back %d of %d keys through the survivors", d.readAll(rest, keys), keys)
	}

	// A rejoin.
	d.say("restarting %s with its old data dirs (agent and app): a rejoin", victim.agent.ID)
	if err := d.start(victim, false); err != nil {
		return err
	}
	if err := d.waitStatus(ctx, rest[0], victim.agent.ID, "alive"); err != nil {
		return err
	}
	// The rebalance that gives it copies again is planned a moment after
	// it is alive: a settled table before that is not the end of the rejoin.
	if err := d.poll(ctx, "waiting for "+victim.agent.ID+" to hold copies again", func() error {
		ms, err := rest[0].agent.MembersByID()
		if err != nil {
			return err
		}
		if ms[victim.agent.ID].Copies == 0 {
			return fmt.Errorf("%s holds nothing yet", victim.agent.ID)
		}
		return nil
	}); err != nil {
		return err
	}
	if err := d.waitSettled(ctx, d.nodes); err != nil {
		return err
	}
	d.say("%s is back and has its share again", victim.agent.ID)
	d.printMembers()

	// A graceful leave.
	leaver := d.nodes[len(d.nodes)-1]
	if leaver == victim {
		leaver = d.nodes[len(d.nodes)-2]
	}
	d.say("SIGTERM %s: a graceful leave", leaver.agent.ID)
	left := time.Now()
	_ = leaver.agent.StopWith(syscall.SIGTERM)
	d.say("%s exited %.2fs after SIGTERM, its partitions moved away first", leaver.agent.ID, time.Since(left).Seconds())
	d.stopApp(leaver)
	rest = d.without(leaver)
	if err := d.waitStatus(ctx, rest[0], leaver.agent.ID, "left"); err != nil {
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

// start starts n's app (unless it runs) and agent; first says the agent
// is one of the cluster's first (-bootstrap-expect).
func (d *demo) start(n *demoNode, first bool) error {
	if n.app != nil && !n.app.Running() {
		// The app keeps its data beside the agent's: a restarted node has
		// both back.
		if err := n.app.Start(n.agent.APIAddr(), n.agent.DataDir); err != nil {
			return err
		}
	}
	args := []string{"-join", d.nodes[0].agent.GossipAddr()}
	if first {
		args = append(args, "-bootstrap-expect", strconv.Itoa(len(d.nodes)))
	}
	return n.agent.Start(args...)
}

// kill SIGKILLs n's app and agent, as a machine loss does.
func (d *demo) kill(n *demoNode) {
	if n.app != nil {
		n.app.Kill()
	}
	n.agent.Kill()
}

func (d *demo) stopApp(n *demoNode) {
	if n.app != nil {
		n.app.StopApp(syscall.SIGTERM)
	}
}

func (d *demo) stopAll() {
	for _, n := range d.nodes {
		d.kill(n)
	}
}

// without is the running nodes other than gone.
func (d *demo) without(gone *demoNode) []*demoNode {
	var out []*demoNode
	for _, n := range d.nodes {
		if n != gone && n.agent.Running() {
			out = append(out, n)
		}
	}
	return out
}

func agentsOf(nodes []*demoNode) []*localcluster.Agent {
	out := make([]*localcluster.Agent, len(nodes))
	for i, n := range nodes {
		out[i] = n.agent
	}
	return out
}

// poll runs cond every 100 ms until it succeeds, ctx ends or a minute
// passes.
func (d *demo) poll(ctx context.Context, what string, cond func() error) error {
	if _, err := localcluster.Poll(ctx, localcluster.DefaultInterval, time.Minute, cond); err != nil {
		return fmt.Errorf("demo: %s: %w", what, err)
	}
	return nil
}

func (d *demo) waitLeader(ctx context.Context, nodes []*demoNode) (string, error) {
	var leader string
	err := d.poll(ctx, "waiting for a leader", func() error {
		st, err := nodes[0].agent.Status()
		if err != nil {
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

// waitSettled waits until every partition has its copies, no migration is
// in flight, every app has acknowledged its webhooks and the leader plans
// nothing more.
func (d *demo) waitSettled(ctx context.Context, nodes []*demoNode) error {
	return d.poll(ctx, "waiting for the table to settle", func() error {
		if err := localcluster.TableSettled(agentsOf(nodes), min(3, len(nodes))); err != nil {
			return err
		}
		var plan struct {
			Actions []any `json:"actions"`
		}
		if err := nodes[0].agent.GetJSON("/v1/plan", &plan); err != nil {
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
		got, err := via.agent.MemberStatus(id)
		if err != nil {
			return err
		}
		if got != status {
			return fmt.Errorf("%s is %s", id, got)
		}
		return nil
	})
}

func (d *demo) mostPrimaries(leader string) *demoNode {
	ms, _ := d.nodes[0].agent.Members()
	best, most := d.nodes[1], -1
	for _, m := range ms {
		for _, n := range d.nodes {
			if n.agent.ID == m.ID && m.ID != leader && m.Primaries > most {
				best, most = n, m.Primaries
			}
		}
	}
	return best
}

func (d *demo) printMembers() {
	ms, err := d.without(nil)[0].agent.Members()
	if err != nil {
		return
	}
	var lines []string
	for _, m := range ms {
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
		if node.agent.GetJSON("/v1/events", &ev) != nil || len(ev.Events) == 0 {
			continue
		}
		for _, e := range ev.Events {
			if e.Type == "member.failed" {
				d.say("  leader %s: %s", node.agent.ID, e.Summary)
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
	req, _ := http.NewRequest(http.MethodPut, "http://"+n.app.Addr()+"/kv/"+key, bytes.NewBufferString(value))
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
		resp, err := d.client.Get("http://" + nodes[i%len(nodes)].app.Addr() + "/kv/" + fmt.Sprintf("key-%d", i))
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
