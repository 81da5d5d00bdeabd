package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/steward-dev/steward/agent"
	"github.com/steward-dev/steward/failover"
)

// cmdResource is `agent resource create|list|delete|set-rf|set-target-size|
// set-zones|set-nodes`: named resources, each with its own partitions,
// replication factor and placement.
func cmdResource(args []string, stdout, stderr io.Writer) error {
	const usage = "resource: say create NAME -partitions N -replication-factor R [-target-size BYTES] [-zones spread|none|strict] [-nodes k=v,...], list, delete NAME, set-rf NAME R, set-target-size NAME BYTES, set-zones NAME spread|none|strict, or set-nodes NAME k=v,... (\"\" for every node)"
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return usagef(usage)
	}
	verb, args := args[0], args[1:]
	var positional []string
	for len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		positional, args = append(positional, args[0]), args[1:]
	}
	fs := newFlagSet("resource "+verb, stderr)
	var cf clientFlags
	cf.register(fs)
	partitions := fs.Int("partitions", 0, "number of partitions of the new resource (create)")
	rf := fs.Int("replication-factor", 0, "copies of each partition, primary included (create)")
	targetSize := fs.Int64("target-size", 0, "bytes above which a partition is split automatically, ±20% (create; 0: never)")
	zones := fs.String("zones", "spread", "zones rule (create): spread (copies in distinct zones as far as there are zones), none (zones ignored) or strict (never two copies in one zone)")
	nodes := fs.String("nodes", "", "node selector (create): only nodes whose -tags hold every k=v given hold copies (empty: every node)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("resource %s: unexpected argument %q", verb, fs.Arg(0))
	}
	if err := cf.resolve(); err != nil {
		return err
	}
	want := map[string]int{"create": 1, "list": 0, "delete": 1, "set-rf": 2, "set-target-size": 2, "set-zones": 2, "set-nodes": 2}
	n, known := want[verb]
	if !known {
		return usagef(usage)
	}
	if len(positional) != n {
		return usagef("resource %s takes %d argument(s), got %d (%s)", verb, n, len(positional), usage)
	}
	switch verb {
	case "list":
		return resourceList(cf, stdout)
	case "create":
		if *partitions < 1 || *rf < 1 {
			return usagef("resource create: give -partitions N and -replication-factor R")
		}
		if *targetSize < 0 {
			return usagef("resource create: -target-size must not be negative")
		}
		if _, err := failover.ParseZonesRule(*zones); err != nil {
			return usagef("resource create: -zones: %s", strings.TrimPrefix(err.Error(), "failover: "))
		}
		if _, err := failover.ParseNodeSelector(*nodes); err != nil {
			return usagef("resource create: -nodes: %s", strings.TrimPrefix(err.Error(), "failover: "))
		}
		body := failover.Resource{Name: positional[0], Partitions: *partitions, ReplicationFactor: *rf, TargetSize: *targetSize, Zones: failover.ZonesRule(*zones), Nodes: *nodes}
		var out failover.Resource
		if err := cf.post("/v1/resources", body, &out); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "resource %s created: %d partitions, replication factor %d, zones %s, nodes %s\n", out.Name, out.Partitions, out.ReplicationFactor, zonesText(out.Zones), nodesText(out.Nodes))
	case "delete":
		var out struct {
			Retired int `json:"partitions_retired"`
		}
		if _, err := cf.do(http.MethodDelete, "/v1/resources/"+url.PathEscape(positional[0]), []byte("{}"), &out, 60*time.Second); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "resource %s deleted: %d partitions released\n", positional[0], out.Retired)
	case "set-rf":
		r, err := strconv.Atoi(positional[1])
		if err != nil {
			return usagef("resource set-rf: %q is not a whole number", positional[1])
		}
		body, _ := json.Marshal(map[string]int{"replication_factor": r})
		if _, err := cf.do(http.MethodPatch, "/v1/resources/"+url.PathEscape(positional[0]), body, nil, 60*time.Second); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "resource %s: replication factor %d (copies are added or dropped as the planner gets to them)\n", positional[0], r)
	case "set-target-size":
		size, err := strconv.ParseInt(positional[1], 10, 64)
		if err != nil || size < 0 {
			return usagef("resource set-target-size: %q is not a number of bytes", positional[1])
		}
		body, _ := json.Marshal(map[string]int64{"target_size_bytes": size})
		if _, err := cf.do(http.MethodPatch, "/v1/resources/"+url.PathEscape(positional[0]), body, nil, 60*time.Second); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "resource %s: target size %d bytes (0: no automatic splits)\n", positional[0], size)
	case "set-zones", "set-nodes":
		field, value := "zones", positional[1]
		if verb == "set-nodes" {
			field = "nodes"
			if _, err := failover.ParseNodeSelector(value); err != nil {
				return usagef("resource set-nodes: %s", strings.TrimPrefix(err.Error(), "failover: "))
			}
		} else if _, err := failover.ParseZonesRule(value); err != nil || value == "" {
			return usagef("resource set-zones: say spread, none or strict, got %q", value)
		}
		body, _ := json.Marshal(map[string]string{field: value})
		var out failover.Resource
		if _, err := cf.do(http.MethodPatch, "/v1/resources/"+url.PathEscape(positional[0]), body, &out, 60*time.Second); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "resource %s: zones %s, nodes %s (copies that no longer fit move, add before remove, as the planner gets to them)\n", positional[0], zonesText(out.Zones), nodesText(out.Nodes))
	}
	return nil
}

func zonesText(z failover.ZonesRule) string {
	if z == "" {
		return string(failover.ZonesSpread)
	}
	return string(z)
}

// nodesText shows a node selector, "all" for the empty one.
func nodesText(sel string) string {
	if sel == "" {
		return "all"
	}
	return sel
}

func resourceList(cf clientFlags, stdout io.Writer) error {
	var resp agent.ResourcesView
	raw, err := cf.get("/v1/resources", &resp)
	if err != nil {
		return err
	}
	if cf.json {
		_, err = stdout.Write(raw)
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RESOURCE\tPARTITIONS\tREPLICATION FACTOR\tUNDER-REPLICATED\tTARGET SIZE\tZONES\tNODES")
	for _, r := range resp.Resources {
		target := "-"
		if r.TargetSize > 0 {
			target = strconv.FormatInt(r.TargetSize, 10)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\t%s\n", r.Name, r.ActivePartitions, r.ReplicationFactor, r.UnderReplicated, target, zonesText(r.Zones), nodesText(r.Nodes))
	}
	return tw.Flush()
}

// cmdSplit is `agent split RESOURCE P`: cut partition P of RESOURCE in two.
func cmdSplit(args []string, stdout, stderr io.Writer) error {
	var positional []string
	for len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		positional, args = append(positional, args[0]), args[1:]
	}
	cf, err := parseClientFlags("split", args, stderr)
	if err != nil {
		return err
	}
	if len(positional) != 2 {
		return usagef("split: name the resource and the partition (agent split RESOURCE P [flags])")
	}
	id, err := strconv.Atoi(positional[1])
	if err != nil || id < 0 {
		return usagef("split: %q is not a partition ID", positional[1])
	}
	body, _ := json.Marshal(map[string]string{"resource": positional[0]})
	var out struct {
		Children []failover.SplitChild `json:"children"`
	}
	raw, err := cf.do(http.MethodPost, "/v1/partitions/"+strconv.Itoa(id)+"/split", body, &out, 60*time.Second)
	if err != nil {
		return err
	}
	if cf.json {
		_, err = stdout.Write(raw)
		return err
	}
	fmt.Fprintf(stdout, "split of %s partition %d started:", positional[0], id)
	for _, c := range out.Children {
		fmt.Fprintf(stdout, " partition %d keys [%d, %d)", c.Partition, c.KeyStart, c.KeyEnd)
	}
	fmt.Fprintln(stdout, "; they take over once the primary's app has split the data")
	return nil
}
